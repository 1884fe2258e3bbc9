"""Recommendations as commits: the controller's right-sizing (and NodePool) recommendations handed to the
Git bot. Glue only: the branch rules (one per change, dedup, hourly limit, rebase, never main, never a
force push over a person's commit) are :mod:`gpufleet.gitops.bot`'s.

Each workload recommendation becomes a kustomize strategic-merge patch of its pod template (the GPU
share annotation and the node selector; the GPU count never changes, sizing keeps it) at
``<workload_dir>/<namespace>/<kind>-<name>.yaml``; a NodePool recommendation becomes the NodePool patch
YAML at ``nodepool_path``. The key of a change is the workload (or the NodePool), so a changed
recommendation replaces the commit on its branch and the same one again makes none. A bare pod (no
owner) has nothing in Git to patch and is skipped. Publishing runs on a worker thread, at most every
``publish_every_s``; a failure is logged and retried after ``retry_s``, never raised into the controller.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import yaml
from prometheus_client import CollectorRegistry, Counter

from gpufleet.autoscaler.controller.config import GitOpsConfig
from gpufleet.autoscaler.cost.recommend import nodepool_patches
from gpufleet.autoscaler.cost.sizing import WorkloadRecommendation
from gpufleet.core.clock import Clock
from gpufleet.gitops.bot import BotConfig, GitBot, Outcome, Recommendation
from gpufleet.gitops.errors import GitOpsError

log = logging.getLogger(__name__)

HOURS_PER_MONTH = 730.0
KINDS = {"Deployment": "apps/v1", "StatefulSet": "apps/v1", "DaemonSet": "apps/v1", "ReplicaSet": "apps/v1",
         "Job": "batch/v1", "CronJob": "batch/v1"}
_HASH = re.compile(r"^(?P<name>.+)-[bcdfghjklmnpqrstvwxz2456789]{6,10}$")  # a pod-template-hash suffix


def _dump(obj: object) -> str:
    return yaml.safe_dump(obj, sort_keys=True, default_flow_style=False)


def target_of(workload: str) -> tuple[str, str, str] | None:
    """(namespace, kind, name) of the object in Git for ``namespace/Kind/name``: a ReplicaSet named like a
    Deployment's (``name-<pod-template-hash>``) is that Deployment; None for a bare pod or unknown kind."""
    parts = workload.split("/")
    if len(parts) != 3 or parts[1] not in KINDS:
        return None
    namespace, kind, name = parts
    match = _HASH.match(name) if kind == "ReplicaSet" else None
    if match:
        kind, name = "Deployment", match.group("name")
    return namespace, kind, name


def workload_change(rec: WorkloadRecommendation, workload_dir: str) -> Recommendation | None:
    """The commit for one right-sizing, or None when there is nothing to propose (no size, unknown price,
    no saving, no object in Git)."""
    target = target_of(rec.workload)
    if rec.size is None or rec.usd_per_hour_now is None or target is None:
        return None
    saved = (rec.usd_per_hour_now - rec.usd_per_hour_after) * HOURS_PER_MONTH
    if not saved > 0:
        return None
    namespace, kind, name = target
    change = rec.patch()
    template: dict = {"spec": {"nodeSelector": change["spec"]["nodeSelector"]}}
    if change["metadata"]["annotations"]:
        template["metadata"] = {"annotations": change["metadata"]["annotations"]}
    spec = {"jobTemplate": {"spec": {"template": template}}} if kind == "CronJob" else {"template": template}
    patch = {"apiVersion": KINDS[kind], "kind": kind, "metadata": {"name": name, "namespace": namespace},
             "spec": spec}
    size = rec.size
    what = f"{size.gpu_milli}m of one {size.gpu_model}" if size.num_gpu == 1 and size.gpu_milli < 1000 \
        else f"{size.num_gpu} x {size.gpu_model}"
    evidence = (f"{rec.reason}.\nMeasured over {rec.window_s / 3600:.1f} h ({rec.samples} samples): memory need "
                f"{rec.memory_need_gib:.1f} GiB, compute need {rec.compute_need:.0%} of a GPU.\n"
                f"Now ${rec.usd_per_hour_now:.3f}/h, after ${rec.usd_per_hour_after:.3f}/h on {rec.instance_type}"
                f"{' (spot)' if rec.spot else ''}.\nPod {rec.workload}.")
    path = f"{workload_dir.rstrip('/')}/{namespace}/{kind.lower()}-{name}.yaml"
    return Recommendation(f"workload/{namespace}/{kind}/{name}", f"Right-size {kind} {namespace}/{name} to {what}",
                          {path: _dump(patch)}, evidence, saved)


def nodepool_change(mix: Mapping[str, int], usd_per_hour_now: float, usd_per_hour_after: float, evidence: str,
                    nodepool_path: str) -> Recommendation | None:
    """The commit for a recommended node mix (``instance-type[:spot]`` -> count): the NodePool patch."""
    saved = (usd_per_hour_now - usd_per_hour_after) * HOURS_PER_MONTH
    if not mix or not saved > 0:
        return None
    docs = nodepool_patches(dict(mix))
    text = "---\n".join(_dump(d) for d in docs)
    types = ", ".join(f"{n} x {k}" for k, n in sorted(mix.items()))
    return Recommendation(f"nodepool/{docs[0]['metadata']['name']}", f"NodePool: {types}", {nodepool_path: text},
                          f"{evidence.strip()}\nNow ${usd_per_hour_now:.2f}/h, after ${usd_per_hour_after:.2f}/h.",
                          saved)


def token(config: GitOpsConfig, env: Mapping[str, str]) -> str | None:
    """The token from the env var or the mounted file (None when neither is configured)."""
    if config.token_env:
        value = env.get(config.token_env, "").strip()
        if not value:
            raise GitOpsError(f"gitops token: env var {config.token_env} is empty or unset; set it (e.g. from a Secret)")
        return value
    if config.token_file:
        try:
            value = Path(config.token_file).read_text().strip()
        except OSError as err:
            raise GitOpsError(f"gitops token: cannot read {config.token_file}: {err.strerror or err}; "
                              "mount the Secret there") from err
        if not value:
            raise GitOpsError(f"gitops token: {config.token_file} is empty")
        return value
    return None


def remote_url(config: GitOpsConfig, secret: str | None) -> str:
    """``repo_url`` with the token as the password of ``username`` (http and https URLs only)."""
    if secret is None:
        return config.repo_url
    parts = urlsplit(config.repo_url)
    if parts.scheme not in ("http", "https"):
        raise GitOpsError(f"gitops: a token needs an http(s) repoUrl, got {parts.scheme or 'a path'}; "
                          "for ssh mount a key and leave tokenEnv/tokenFile unset")
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{quote(config.username, safe='')}:{quote(secret, safe='')}@{host}"))


class Publisher:
    """Publishes recommendations through a :class:`GitBot` on a worker thread (``tick`` is cheap)."""

    def __init__(self, config: GitOpsConfig, clock: Clock, registry: CollectorRegistry,
                 env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.clock = clock
        self._env = env if env is not None else os.environ
        self._next = -float("inf")  # monotonic time of the next publish
        self._job: Future[list[Outcome]] | None = None
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpufleet-gitops")
        self.outcomes = Counter("gpufleet_gitops_recommendations_total",
                                "Recommendations handed to the Git bot, by what it did", ["action"],
                                registry=registry)
        self.failures = Counter("gpufleet_gitops_publish_failures_total",
                                "Publish passes or single changes that failed (retried later)", registry=registry)

    def _bot(self, secret: str | None) -> GitBot:
        """The bot; an existing clone is pointed at the URL with the current token (a rotated one works)."""
        c = self.config
        url = remote_url(c, secret)
        if (Path(c.workdir) / ".git").exists():
            done = subprocess.run(["git", "-C", c.workdir, "remote", "set-url", "origin", url],
                                  capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise GitOpsError(f"pointing {c.workdir} at {c.repo_url}: {done.stderr.strip()}")
        return GitBot(BotConfig(url, Path(c.workdir), base=c.base,
                                max_new_branches_per_hour=c.max_new_branches_per_hour,
                                author_name=c.author_name, author_email=c.author_email), self.clock)

    def changes(self, workloads: Sequence[WorkloadRecommendation]) -> list[Recommendation]:
        """The commits to propose, largest saving first (the hourly limit goes to those)."""
        out = [c for c in (workload_change(r, self.config.workload_dir) for r in workloads) if c is not None]
        out = [c for c in out if c.usd_saved_per_month >= self.config.min_usd_per_month]
        return sorted(out, key=lambda c: (-c.usd_saved_per_month, c.key))

    def publish(self, changes: Sequence[Recommendation]) -> list[Outcome]:
        """One pass: rebase the bot's branches, then propose each change. Never raises; a failed pass or
        change is logged, counted and retried at the next pass (after ``retry_s``)."""
        secret: str | None = None
        failed = False
        outcomes: list[Outcome] = []
        try:
            secret = token(self.config, self._env)
            bot = self._bot(secret)
            bot.refresh()
            for change in changes:
                try:
                    outcome = bot.propose(change)
                except (GitOpsError, OSError, ValueError) as err:
                    failed = True
                    self.failures.inc()
                    log.warning("gitops change=%s failed, retried later: %s", change.key, _redact(str(err), secret))
                    continue
                outcomes.append(outcome)
                self.outcomes.labels(outcome.action).inc()
                log.info("gitops change=%s branch=%s action=%s %s", change.key, outcome.branch, outcome.action,
                         outcome.detail)
        except (GitOpsError, OSError, ValueError) as err:  # a service never crashes on a Git problem
            failed = True
            self.failures.inc()
            log.warning("gitops publish failed, retried in %.0fs: %s", self.config.retry_s,
                        _redact(str(err), secret))
        wait = self.config.retry_s if failed else self.config.publish_every_s
        with self._lock:
            self._next = self.clock.monotonic() + wait
        return outcomes

    def tick(self, workloads: Callable[[], Sequence[WorkloadRecommendation]]) -> bool:
        """Start a publish on the worker when one is due and none runs; True when one was started."""
        with self._lock:
            if self._job is not None and not self._job.done():
                return False
            if self.clock.monotonic() < self._next:
                return False
            self._next = float("inf")  # set again when the pass ends
        try:
            changes = self.changes(workloads())
        except Exception:
            log.exception("gitops: reading the recommendations failed; retried in %.0fs", self.config.retry_s)
            with self._lock:
                self._next = self.clock.monotonic() + self.config.retry_s
            return False
        self._job = self._pool.submit(self.publish, changes)
        return True

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        """The outcomes of the publish last started (waiting for it); empty when none was."""
        job = self._job
        return job.result(timeout) if job is not None else []

    def stop(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _redact(text: str, secret: str | None) -> str:
    if not secret:
        return text
    return text.replace(secret, "***").replace(quote(secret, safe=""), "***")
