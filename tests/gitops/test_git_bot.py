"""The recommendation bot against a real Git server on loopback: one branch per change with the
evidence and dollars in the message, no duplicates, at most 2 new branches an hour, rebased when
main moves, never main, and never a force push over someone else's commit."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpufleet.core.clock import FakeClock
from gpufleet.gitops.bot import (
    CONFLICT,
    CREATED,
    CURRENT,
    FOREIGN,
    RATE_LIMITED,
    REBASED,
    UNCHANGED,
    UPDATED,
    BotConfig,
    GitBot,
    Recommendation,
    branch_name,
)
from gpufleet.gitops.errors import GitOpsError
from gpufleet.gitops.gitserver import GitServer


def git(work: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(work), "-c", "user.name=Person", "-c", "user.email=person@example.com",
                           *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture()
def remote(tmp_path: Path) -> Iterator[tuple[GitServer, Path]]:
    """A served repository with one commit on main, and a person's clone of it."""
    with GitServer(tmp_path / "server") as server:
        server.create("config")
        person = tmp_path / "person"
        subprocess.run(["git", "clone", "--quiet", server.url("config"), str(person)], check=True,
                       capture_output=True)
        (person / "nodepools.yaml").write_text("maxNodes: 10\n")
        (person / "requests.yaml").write_text("cpu: 4\n")
        git(person, "add", "-A")
        git(person, "commit", "--quiet", "-m", "initial")
        git(person, "push", "--quiet", "origin", "HEAD:main")
        yield server, person


def bot(server: GitServer, tmp_path: Path, clock: FakeClock, **kw) -> GitBot:
    return GitBot(BotConfig(server.url("config"), tmp_path / "bot", **kw), clock)


def rec(key: str, content: str = "maxNodes: 6\n", path: str = "nodepools.yaml", usd: float = 1234.0) -> Recommendation:
    return Recommendation(key, f"Shrink {key}", {path: content}, "p95 GPU use 41% over 14 days (n=20160)", usd)


def remote_branches(person: Path) -> dict[str, str]:
    git(person, "fetch", "--quiet", "--prune", "origin")
    out = git(person, "for-each-ref", "--format=%(refname:strip=3) %(objectname)", "refs/remotes/origin/")
    return dict(line.split() for line in out.splitlines() if line and not line.startswith("HEAD"))


def test_a_recommendation_becomes_one_branch_with_evidence_and_dollars_and_main_is_untouched(remote, tmp_path):
    server, person = remote
    main_before = remote_branches(person)["main"]
    outcome = bot(server, tmp_path, FakeClock()).propose(rec("pool-a100"))
    assert outcome.action == CREATED and outcome.branch == branch_name("gpufleet/", "pool-a100")
    branches = remote_branches(person)
    assert branches["main"] == main_before
    body = git(person, "log", "-1", "--format=%an <%ae>%n%B", f"origin/{outcome.branch}")
    assert "Saves about $1,234 per month." in body and "p95 GPU use 41%" in body
    assert git(person, "show", f"origin/{outcome.branch}:nodepools.yaml") == "maxNodes: 6"


def test_the_same_recommendation_again_makes_no_new_commit_and_a_changed_one_replaces_it(remote, tmp_path):
    server, person = remote
    clock = FakeClock()
    the_bot = bot(server, tmp_path, clock)
    first = the_bot.propose(rec("pool-a100"))
    tip = remote_branches(person)[first.branch]
    assert the_bot.propose(rec("pool-a100")).action == UNCHANGED
    assert bot(server, tmp_path / "restarted", clock).propose(rec("pool-a100")).action == UNCHANGED
    assert remote_branches(person)[first.branch] == tip
    assert the_bot.propose(rec("pool-a100", "maxNodes: 5\n")).action == UPDATED
    assert remote_branches(person)[first.branch] != tip
    assert git(person, "rev-list", "--count", f"origin/main..origin/{first.branch}") == "1"
    assert git(person, "show", f"origin/{first.branch}:nodepools.yaml") == "maxNodes: 5"


def test_at_most_two_new_branches_an_hour(remote, tmp_path):
    server, person = remote
    clock = FakeClock()
    the_bot = bot(server, tmp_path, clock)
    actions = [the_bot.propose(rec(f"pool-{i}", path=f"pool-{i}.yaml")).action for i in range(3)]
    assert actions == [CREATED, CREATED, RATE_LIMITED]
    clock.advance(1800)
    assert the_bot.propose(rec("pool-2", path="pool-2.yaml")).action == RATE_LIMITED
    clock.advance(1801)
    assert the_bot.propose(rec("pool-2", path="pool-2.yaml")).action == CREATED
    assert len([b for b in remote_branches(person) if b.startswith("gpufleet/")]) == 3


def test_branches_are_rebased_when_main_moves_and_a_conflict_is_reported_not_forced(remote, tmp_path):
    server, person = remote
    the_bot = bot(server, tmp_path, FakeClock())
    mine = the_bot.propose(rec("pool-a100")).branch
    other = the_bot.propose(rec("requests", "cpu: 2\n", path="requests.yaml")).branch
    assert {o.action for o in the_bot.refresh()} == {CURRENT}
    (person / "README.md").write_text("config\n")
    (person / "requests.yaml").write_text("cpu: 8\n")  # conflicts with the second recommendation
    git(person, "add", "-A")
    git(person, "commit", "--quiet", "-m", "a person's change")
    git(person, "push", "--quiet", "origin", "HEAD:main")
    conflicted_tip = remote_branches(person)[other]
    outcomes = {o.branch: o.action for o in the_bot.refresh()}
    assert outcomes == {mine: REBASED, other: CONFLICT}
    branches = remote_branches(person)
    assert git(person, "merge-base", "origin/main", f"origin/{mine}") == branches["main"]
    assert git(person, "show", f"origin/{mine}:nodepools.yaml") == "maxNodes: 6"
    assert branches[other] == conflicted_tip


def test_a_branch_someone_else_committed_to_is_never_force_pushed(remote, tmp_path):
    server, person = remote
    the_bot = bot(server, tmp_path, FakeClock())
    branch = the_bot.propose(rec("pool-a100")).branch
    git(person, "fetch", "--quiet", "origin")
    git(person, "checkout", "--quiet", "-b", "review", f"origin/{branch}")
    (person / "nodepools.yaml").write_text("maxNodes: 7  # reviewed\n")
    git(person, "commit", "--quiet", "-am", "reviewer tweak")
    git(person, "push", "--quiet", "origin", f"HEAD:{branch}")
    theirs = remote_branches(person)[branch]
    git(person, "checkout", "--quiet", "main")
    (person / "other.yaml").write_text("x: 1\n")
    git(person, "add", "-A")
    git(person, "commit", "--quiet", "-m", "main moves")
    git(person, "push", "--quiet", "origin", "HEAD:main")
    assert [o.action for o in the_bot.refresh()] == [FOREIGN]
    assert the_bot.propose(rec("pool-a100", "maxNodes: 4\n")).action == FOREIGN
    assert remote_branches(person)[branch] == theirs


def test_the_bot_refuses_a_prefix_that_could_name_main(remote, tmp_path):
    server, _ = remote
    with pytest.raises(GitOpsError):
        bot(server, tmp_path, FakeClock(), prefix="")
    with pytest.raises(GitOpsError):
        bot(server, tmp_path, FakeClock(), prefix="main/")
