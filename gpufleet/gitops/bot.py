"""Recommendations as commits: one branch per change in the config repository, for people to merge.

Rules (level-triggered: every decision is re-read from the remote, so a restart changes nothing):

- one branch per recommendation key (``gpufleet/<slug>-<hash>``); the same recommendation again is
  no new commit, a changed one replaces the bot's commit on that branch;
- at most ``max_new_branches_per_hour`` new branches (counted from the ``Gpufleet-Created`` trailer of
  the bot's branches on the remote), the rest wait for a later pass;
- when main moves, the bot's branches are rebased onto it;
- never a push to the base branch, and a force push (``--force-with-lease``) only to a branch whose
  commits since main are all the bot's own; a branch a person touched is left alone.

The commit message carries the evidence and the dollars saved. Git is driven through the ``git``
command in a working clone; the clock is injected.
"""

from __future__ import annotations

import hashlib
import logging
import re
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gpufleet.core.clock import Clock
from gpufleet.gitops.errors import GitOpsError

log = logging.getLogger(__name__)

CREATED, UPDATED, UNCHANGED, RATE_LIMITED, FOREIGN, REBASED, CONFLICT, CURRENT = (
    "created", "updated", "unchanged", "rate-limited", "left-alone", "rebased", "conflict", "current")
KEY_TRAILER, CREATED_TRAILER = "Gpufleet-Recommendation", "Gpufleet-Created"


@dataclass(frozen=True)
class Recommendation:
    """A change to propose: ``files`` maps repository paths to their new content."""

    key: str
    title: str
    files: dict[str, str]
    evidence: str
    usd_saved_per_month: float


@dataclass(frozen=True)
class BotConfig:
    """``max_new_branches_per_hour``: new branches allowed in any hour (default 2); ``base``: the branch
    people merge into (never pushed to); ``prefix``: of the bot's branch names."""

    remote_url: str
    workdir: Path
    base: str = "main"
    prefix: str = "gpufleet/"
    max_new_branches_per_hour: int = 2
    author_name: str = "gpufleet-bot"
    author_email: str = "gpufleet-bot@users.noreply.local"


@dataclass(frozen=True)
class Outcome:
    branch: str
    action: str
    detail: str = ""


def branch_name(prefix: str, key: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-")[:40] or "change"
    return f"{prefix}{slug}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def message(rec: Recommendation, created: datetime) -> str:
    return (f"{rec.title}\n\nSaves about ${rec.usd_saved_per_month:,.0f} per month.\n\nEvidence:\n{rec.evidence.strip()}\n\n"
            f"{KEY_TRAILER}: {rec.key}\n{CREATED_TRAILER}: {created.isoformat()}\n")


class GitBot:
    def __init__(self, config: BotConfig, clock: Clock) -> None:
        if not config.prefix or config.prefix.rstrip("/") == config.base:
            raise GitOpsError(f"branch prefix {config.prefix!r} could name the base branch {config.base!r}")
        self.config = config
        self.clock = clock
        self._work = config.workdir

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.now(), UTC)

    # ---- git -----------------------------------------------------------------------------------

    def _git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env_args = ["-c", f"user.name={self.config.author_name}", "-c", f"user.email={self.config.author_email}"]
        done = subprocess.run(["git", "-C", str(self._work), *env_args, *args], capture_output=True, text=True,
                              check=False)
        if check and done.returncode != 0:
            raise GitOpsError(f"git {' '.join(args)}: {done.stderr.strip()}")
        return done

    def _out(self, *args: str) -> str:
        return self._git(*args).stdout.strip()

    def sync(self) -> None:
        """Clone once, then fetch (pruning branches deleted on the remote)."""
        if not (self._work / ".git").exists():
            self._work.parent.mkdir(parents=True, exist_ok=True)
            done = subprocess.run(["git", "clone", "--quiet", self.config.remote_url, str(self._work)],
                                  capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise GitOpsError(f"cloning {self.config.remote_url}: {done.stderr.strip()}")
        self._git("fetch", "--quiet", "--prune", "origin")

    def _remote_branches(self) -> dict[str, str]:
        refs = self._out("for-each-ref", "--format=%(refname:strip=3) %(objectname)",
                         f"refs/remotes/origin/{self.config.prefix}")
        return dict(line.split() for line in refs.splitlines() if line)

    def _base(self) -> str:
        return self._out("rev-parse", f"origin/{self.config.base}")

    def _own_commits(self, tip: str) -> list[str] | None:
        """The commits of ``tip`` since the base, or None when any is not the bot's."""
        commits = self._out("rev-list", f"origin/{self.config.base}..{tip}").split()
        for commit in commits:
            email = self._out("log", "-1", "--format=%ae", commit)
            body = self._out("log", "-1", "--format=%B", commit)
            if email != self.config.author_email or f"{KEY_TRAILER}:" not in body:
                return None
        return commits

    def _created(self, tip: str) -> datetime | None:
        body = self._out("log", "-1", "--format=%B", tip)
        match = re.search(rf"^{CREATED_TRAILER}: (\S+)$", body, re.M)
        return datetime.fromisoformat(match.group(1)) if match else None

    def _push(self, branch: str, lease: str | None) -> None:
        if branch == self.config.base or not branch.startswith(self.config.prefix):
            raise GitOpsError(f"refusing to push {branch!r}: only the bot's own {self.config.prefix}* branches")
        args = ["push", "--quiet", "origin", f"HEAD:refs/heads/{branch}"]
        if lease is not None:
            args.insert(2, f"--force-with-lease=refs/heads/{branch}:{lease}")
        self._git(*args)

    # ---- decisions -----------------------------------------------------------------------------

    def created_last_hour(self) -> int:
        now = self._now()
        count = 0
        for tip in self._remote_branches().values():
            created = self._created(tip)
            if created is not None and now - created < timedelta(hours=1):
                count += 1
        return count

    def propose(self, rec: Recommendation) -> Outcome:
        """Create or refresh the branch of ``rec``; see the module rules."""
        self.sync()
        branch = branch_name(self.config.prefix, rec.key)
        remote = self._remote_branches()
        tip = remote.get(branch)
        if tip is not None:
            own = self._own_commits(tip)
            if own is None:
                return Outcome(branch, FOREIGN, "someone else committed to this branch")
            if self._same_content(tip, rec):
                return Outcome(branch, UNCHANGED)
            created = self._created(tip) or self._now()
            self._commit(rec, created)
            self._push(branch, lease=tip)
            log.info("branch=%s updated recommendation=%s", branch, rec.key)
            return Outcome(branch, UPDATED)
        if self.created_last_hour() >= self.config.max_new_branches_per_hour:
            return Outcome(branch, RATE_LIMITED,
                           f"{self.config.max_new_branches_per_hour} new branches in the last hour already")
        self._commit(rec, self._now())
        self._push(branch, lease=None)
        log.info("branch=%s created recommendation=%s usd_per_month=%.0f", branch, rec.key, rec.usd_saved_per_month)
        return Outcome(branch, CREATED)

    def _same_content(self, tip: str, rec: Recommendation) -> bool:
        for path, content in rec.files.items():
            shown = self._git("show", f"{tip}:{path}", check=False)
            if shown.returncode != 0 or shown.stdout != content:
                return False
        return True

    def _commit(self, rec: Recommendation, created: datetime) -> None:
        self._git("checkout", "--quiet", "--force", "--detach", f"origin/{self.config.base}")
        for path, content in rec.files.items():
            target = self._work / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            self._git("add", "--", path)
        self._git("commit", "--quiet", "--allow-empty", "-m", message(rec, created))

    def refresh(self) -> list[Outcome]:
        """Rebase every bot branch that is behind the base; leave branches people touched alone."""
        self.sync()
        base = self._base()
        outcomes = []
        for branch, tip in sorted(self._remote_branches().items()):
            own = self._own_commits(tip)
            if own is None:
                outcomes.append(Outcome(branch, FOREIGN, "someone else committed to this branch"))
                continue
            if self._out("merge-base", base, tip) == base:
                outcomes.append(Outcome(branch, CURRENT))
                continue
            self._git("checkout", "--quiet", "--force", "--detach", tip)
            rebased = self._git("rebase", "--quiet", base, check=False)
            if rebased.returncode != 0:
                self._git("rebase", "--abort", check=False)
                outcomes.append(Outcome(branch, CONFLICT, rebased.stderr.strip()[:200]))
                continue
            self._push(branch, lease=tip)
            log.info("branch=%s rebased onto %s", branch, base[:12])
            outcomes.append(Outcome(branch, REBASED))
        return outcomes
