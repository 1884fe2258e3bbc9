"""The controller's recommendations published as commits, against a real Git server on loopback: recorded
right-sizing recommendations become kustomize patches on their own branches (evidence and $ in the
message), the same ones again make no new branch, at most the configured new branches an hour, a refused
push is logged and retried later, and the token comes from the environment, never from the config."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from gpufleet.autoscaler.controller.config import ControllerConfig, ControllerConfigError, GitOpsConfig
from gpufleet.autoscaler.controller.publish import Publisher, nodepool_change, target_of, workload_change
from gpufleet.autoscaler.cost.sizing import Size, WorkloadRecommendation
from gpufleet.core.clock import FakeClock
from gpufleet.gitops.bot import CREATED, RATE_LIMITED, UNCHANGED, UPDATED
from gpufleet.gitops.gitserver import GitServer

SECRET = "s3cret-t0ken"


def git(work: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(work), "-c", "user.name=Person", "-c", "user.email=person@example.com",
                           *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def bot_branches(person: Path) -> dict[str, str]:
    git(person, "fetch", "--quiet", "--prune", "origin")
    out = git(person, "for-each-ref", "--format=%(refname:strip=3) %(objectname)", "refs/remotes/origin/")
    return dict(line.split() for line in out.splitlines() if line and not line.startswith("HEAD"))


@pytest.fixture()
def remote(tmp_path: Path) -> Iterator[tuple[GitServer, Path, Path]]:
    """A served config repository with one commit on main, a person's clone, and the bare repository."""
    with GitServer(tmp_path / "server") as server:
        bare = server.create("config")
        person = tmp_path / "person"
        subprocess.run(["git", "clone", "--quiet", server.url("config"), str(person)], check=True, capture_output=True)
        (person / "README.md").write_text("config\n")
        git(person, "add", "-A")
        git(person, "commit", "--quiet", "-m", "initial")
        git(person, "push", "--quiet", "origin", "HEAD:main")
        yield server, person, bare


def recorded(workload: str, milli: int = 250, now: float = 2.0, after: float = 0.5) -> WorkloadRecommendation:
    """A recommendation as CostAccounting.recommendations() returns it."""
    return WorkloadRecommendation(workload, Size("L4", 1, milli, f"L4@{22888}"), "g6.xlarge", False, now, after,
                                  4.6, 0.2, 86400.0, 1440, f"p99 memory 4.6 GiB and p99 activity 20% fit {milli}m")


def publisher(server: GitServer, tmp_path: Path, clock: FakeClock, registry: CollectorRegistry | None = None,
              **kw) -> Publisher:
    config = GitOpsConfig(repo_url=server.url("config"), workdir=str(tmp_path / kw.pop("workdir", "bot")),
                          token_env="GITOPS_TOKEN", **kw)
    return Publisher(config, clock, registry or CollectorRegistry(), env={"GITOPS_TOKEN": SECRET})


RECS = [recorded("ml/ReplicaSet/trainer-7d9f8b6c5d", now=3.0), recorded("ml/StatefulSet/infer", now=2.0),
        recorded("web/Job/batch", now=1.0), recorded("ml/solo-pod"), recorded("ml/Deployment/tiny", now=0.51)]


def test_recommendations_become_one_branch_each_with_a_kustomize_patch_evidence_and_dollars(remote, tmp_path, caplog):
    server, person, _ = remote
    main_before = bot_branches(person)["main"]
    pub = publisher(server, tmp_path, FakeClock(), max_new_branches_per_hour=5)
    caplog.set_level(logging.DEBUG)
    changes = pub.changes(RECS)
    # the bare pod has nothing in Git; $0.01/h saved is under minUsdPerMonth; largest saving first
    assert [c.key for c in changes] == ["workload/ml/Deployment/trainer", "workload/ml/StatefulSet/infer",
                                        "workload/web/Job/batch"]
    outcomes = pub.publish(changes)
    assert [o.action for o in outcomes] == [CREATED] * 3
    branches = bot_branches(person)
    assert branches["main"] == main_before
    first = outcomes[0].branch
    assert git(person, "rev-list", "--count", f"origin/main..origin/{first}") == "1"
    body = git(person, "log", "-1", "--format=%ae%n%B", f"origin/{first}")
    assert body.startswith("gpufleet-bot@") and "Saves about $1,825 per month." in body  # (3 - 0.5) x 730
    assert "1440 samples" in body and "ml/ReplicaSet/trainer-7d9f8b6c5d" in body
    patch = yaml.safe_load(git(person, "show", f"origin/{first}:workloads/ml/deployment-trainer.yaml"))
    assert patch["kind"] == "Deployment" and patch["metadata"] == {"name": "trainer", "namespace": "ml"}
    template = patch["spec"]["template"]
    assert template["metadata"]["annotations"] == {"gpufleet.io/gpu-milli": "250"}
    assert template["spec"]["nodeSelector"]["karpenter.k8s.aws/instance-gpu-name"] == "L4"
    assert SECRET not in caplog.text


def test_the_same_recommendations_again_make_no_new_branch_and_a_changed_one_updates_its_branch(remote, tmp_path):
    server, person, _ = remote
    clock = FakeClock()
    pub = publisher(server, tmp_path, clock, max_new_branches_per_hour=5)
    pub.publish(pub.changes(RECS))
    before = bot_branches(person)
    assert [o.action for o in pub.publish(pub.changes(RECS))] == [UNCHANGED] * 3
    restarted = publisher(server, tmp_path, clock, max_new_branches_per_hour=5, workdir="restarted")
    assert [o.action for o in restarted.publish(restarted.changes(RECS))] == [UNCHANGED] * 3
    assert bot_branches(person) == before
    changed = [recorded("ml/ReplicaSet/trainer-7d9f8b6c5d", milli=300, now=3.0)]
    [outcome] = pub.publish(pub.changes(changed))
    assert outcome.action == UPDATED and bot_branches(person)[outcome.branch] != before[outcome.branch]
    assert len(bot_branches(person)) == len(before)


def test_at_most_the_configured_new_branches_an_hour_the_rest_on_a_later_pass(remote, tmp_path):
    server, person, _ = remote
    clock = FakeClock()
    pub = publisher(server, tmp_path, clock)  # default: 2 an hour
    assert [o.action for o in pub.publish(pub.changes(RECS))] == [CREATED, CREATED, RATE_LIMITED]
    assert len([b for b in bot_branches(person) if b.startswith("gpufleet/")]) == 2
    clock.advance(3601)
    assert [o.action for o in pub.publish(pub.changes(RECS))] == [UNCHANGED, UNCHANGED, CREATED]
    assert len([b for b in bot_branches(person) if b.startswith("gpufleet/")]) == 3


def test_a_refused_push_is_logged_counted_and_retried_later_without_raising(remote, tmp_path, caplog):
    server, person, bare = remote
    hook = bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho refused by policy >&2\nexit 1\n")
    hook.chmod(0o755)
    clock = FakeClock()
    registry = CollectorRegistry()
    pub = publisher(server, tmp_path, clock, registry, retry_s=300.0, publish_every_s=3600.0)
    assert pub.tick(lambda: RECS)
    pub.wait(60)
    assert registry.get_sample_value("gpufleet_gitops_publish_failures_total") >= 1
    assert "refused by policy" in caplog.text and SECRET not in caplog.text
    assert not [b for b in bot_branches(person) if b.startswith("gpufleet/")]
    assert not pub.tick(lambda: RECS)  # not before retry_s
    hook.unlink()
    clock.advance(301)
    assert pub.tick(lambda: RECS)
    assert [o.action for o in pub.wait(60)] == [CREATED, CREATED, RATE_LIMITED]
    clock.advance(301)
    assert not pub.tick(lambda: RECS)  # a good pass waits publish_every_s
    clock.advance(3300)
    assert pub.tick(lambda: RECS)
    pub.wait(60)
    pub.stop()


def test_a_rotated_token_is_used_at_the_next_publish(remote, tmp_path):
    server, _, _ = remote
    config = GitOpsConfig(repo_url=server.url("config"), workdir=str(tmp_path / "bot"), token_file=str(tmp_path / "t"))
    (tmp_path / "t").write_text("first-token\n")
    pub = Publisher(config, FakeClock(), CollectorRegistry(), env={})
    assert [o.action for o in pub.publish(pub.changes(RECS[:1]))] == [CREATED]
    assert "first-token@" in git(tmp_path / "bot", "remote", "get-url", "origin")
    (tmp_path / "t").write_text("second-token\n")
    assert [o.action for o in pub.publish(pub.changes(RECS[:1]))] == [UNCHANGED]
    assert "second-token@" in git(tmp_path / "bot", "remote", "get-url", "origin")


def test_a_missing_token_or_a_failing_source_is_logged_not_raised(remote, tmp_path, caplog):
    server, _, _ = remote
    clock = FakeClock()
    config = GitOpsConfig(repo_url=server.url("config"), workdir=str(tmp_path / "bot"), token_env="UNSET_TOKEN")
    pub = Publisher(config, clock, CollectorRegistry(), env={})
    assert pub.publish(pub.changes(RECS)) == []
    assert "UNSET_TOKEN is empty or unset" in caplog.text

    def broken() -> list[WorkloadRecommendation]:
        raise RuntimeError("ledger unavailable")

    clock.advance(301)
    assert not pub.tick(broken) and "ledger unavailable" in caplog.text
    pub.stop()


def test_a_nodepool_recommendation_commits_the_karpenter_patch(remote, tmp_path):
    server, person, _ = remote
    pub = publisher(server, tmp_path, FakeClock())
    change = nodepool_change({"g6.xlarge:spot": 3, "g5.2xlarge": 1}, 12.0, 7.0, "replayed 14 days of pods",
                             pub.config.nodepool_path)
    assert change is not None and nodepool_change({"g6.xlarge": 1}, 5.0, 6.0, "", "x.yaml") is None
    [outcome] = pub.publish([change])
    assert outcome.action == CREATED and outcome.branch in bot_branches(person)
    pool = yaml.safe_load(git(person, "show", f"origin/{outcome.branch}:nodepools/gpufleet-recommended.yaml"))
    requirements = {r["key"]: r["values"] for r in pool["spec"]["template"]["spec"]["requirements"]}
    assert requirements["node.kubernetes.io/instance-type"] == ["g5.2xlarge", "g6.xlarge"]
    assert requirements["karpenter.sh/capacity-type"] == ["on-demand", "spot"]
    assert "$3,650 per month" in git(person, "log", "-1", "--format=%B", f"origin/{outcome.branch}")


@pytest.mark.parametrize(("workload", "target"), [
    ("ml/ReplicaSet/trainer-7d9f8b6c5d", ("ml", "Deployment", "trainer")),
    ("ml/ReplicaSet/plain", ("ml", "ReplicaSet", "plain")),
    ("ml/StatefulSet/db-0", ("ml", "StatefulSet", "db-0")),
    ("ml/solo-pod", None),
    ("ml/Node/x", None),
])
def test_the_object_in_git_is_found_from_the_workload(workload, target):
    assert target_of(workload) == target


def test_no_change_without_a_size_a_price_or_a_saving():
    base = recorded("ml/StatefulSet/infer")
    assert workload_change(base, "w") is not None
    for rec in (recorded("ml/StatefulSet/infer", now=0.4), WorkloadRecommendation(
            "ml/StatefulSet/infer", None, "", False, 1.0, 0.5, 1, 1, 1, 1, "")):
        assert workload_change(rec, "w") is None


def test_the_gitops_section_is_typed_and_credentials_stay_out_of_the_config():
    config = ControllerConfig.from_dict({"gitops": {"repoUrl": "https://git.example/org/config.git",
                                                    "publishEvery": "30m", "tokenFile": "/var/run/gitops/token"}})
    assert config.gitops.publish_every_s == 1800.0 and config.gitops.max_new_branches_per_hour == 2
    assert ControllerConfig().gitops.repo_url == ""  # off by default
    with pytest.raises(ControllerConfigError) as err:
        ControllerConfig.from_dict({"gitops": {"repoUrl": "https://bot:pw@git.example/c.git", "tokenEnv": "T",
                                               "tokenFile": "/t", "maxNewBranchesPerHour": -1}})
    assert any("must not carry a password" in e for e in err.value.errors)
    assert any("not both" in e for e in err.value.errors)
    assert any("maxNewBranchesPerHour" in e for e in err.value.errors)
    with pytest.raises(ControllerConfigError, match="gitops.token: unknown field"):
        ControllerConfig.from_dict({"gitops": {"repoUrl": "https://git.example/c.git", "token": "abc"}})


def test_only_the_leading_controller_publishes_its_recommendations(remote, tmp_path):
    from gpufleet.autoscaler.controller.app import Controller, Discovery
    from gpufleet.autoscaler.controller.config import LeaseConfig
    from tests.controller.fakes import FakeAPI

    server, person, _ = remote
    api = FakeAPI()
    gitops = GitOpsConfig(repo_url=server.url("config"), workdir=str(tmp_path / "bot"))
    config = ControllerConfig(lease=LeaseConfig(namespace="sys"), gitops=gitops)
    leader, follower = (Controller(api, config, FakeClock(), CollectorRegistry(), name, Discovery())
                        for name in ("c1", "c2"))
    for c in (leader, follower):
        c.costs.recommendations = lambda: RECS  # recorded: the ledger needs agents to have any
    leader.elector.step()
    follower.elector.step()
    assert leader.elector.is_leader() and not follower.elector.is_leader()
    follower.run_pass()
    assert follower.publisher is not None and follower.publisher.wait(60) == []
    leader.run_pass()
    assert [o.action for o in leader.publisher.wait(60)] == [CREATED, CREATED, RATE_LIMITED]
    assert len([b for b in bot_branches(person) if b.startswith("gpufleet/")]) == 2
    assert Controller(api, ControllerConfig(lease=LeaseConfig(namespace="sys")), FakeClock(), CollectorRegistry(),
                      "c3", Discovery()).publisher is None  # off without gitops.repoUrl
    for c in (leader, follower):
        c.publisher.stop()
