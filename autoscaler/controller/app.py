"""The composition root: informers, agent streams, the leader Lease and the decision pass.

Every replica runs the informers, reads the agents and computes every pass (so metrics are there on
each replica and a new leader needs no warm-up); only the Lease holder writes. A pass:

1. the pods the agents say hold GPUs, with their namespace's and their own opt-in (``off`` pods are
   not looked at further);
2. one :class:`Observation` per pod GPU from the sample store -> :func:`decide` (the backtest's function);
3. :func:`plan_pod` per pod (notice state from its annotations) and :func:`group_actions`;
4. leader only: notices, cancellations, then budget-checked, re-validated actions.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from gpufleet.autoscaler.controller.actuator import Actuator, Result
from gpufleet.autoscaler.controller.agents import AgentPool, discover
from gpufleet.autoscaler.controller.budget import Entry, Ledger
from gpufleet.autoscaler.controller.config import ControllerConfig
from gpufleet.autoscaler.controller.costs import CostAccounting
from gpufleet.autoscaler.controller.gate import Mode, Skip, notice_of, protection, started_at
from gpufleet.autoscaler.controller.lease import LeaderElector
from gpufleet.autoscaler.controller.metrics import ControllerMetrics
from gpufleet.autoscaler.controller.owners import OwnerResolver, Root
from gpufleet.autoscaler.controller.plan import (
    Action,
    ActionKind,
    PodPlan,
    PodView,
    Step,
    group_actions,
    plan_pod,
)
from gpufleet.autoscaler.controller.policies import (
    BUDGET_RESOURCE,
    RECLAIM_RESOURCE,
    GpuBudgets,
    ReclaimPolicies,
    Selection,
    StatusWriter,
)
from gpufleet.autoscaler.controller.publish import Publisher
from gpufleet.autoscaler.controller.store import SampleStore
from gpufleet.autoscaler.reclaim import GpuKey, Observation, ReclaimConfig, SpanHistory, decide
from gpufleet.autoscaler.reclaim.config import POLICY_FORECAST
from gpufleet.core import names
from gpufleet.core.clock import Clock
from gpufleet.core.kube.errors import KubeAPIError
from gpufleet.core.kube.informer import Informer, InformerConfig

log = logging.getLogger(__name__)

RESOURCES = ("pods", "namespaces", "nodes", "poddisruptionbudgets")
_RECLAIMED_CHECK_S = 60.0  # how often a reclaimed workload is re-read for reclaimed GPU-seconds


class ObjectCache:
    """An informer sink: objects by ``namespace/name`` (or ``name``), thread-safe."""

    def __init__(self) -> None:
        self._objects: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(obj: dict[str, Any]) -> str:
        meta = obj.get("metadata") or {}
        return f"{meta['namespace']}/{meta.get('name')}" if meta.get("namespace") else str(meta.get("name"))

    def replace(self, objects: list[dict[str, Any]]) -> None:
        with self._lock:
            self._objects = {self.key(o): o for o in objects}

    def apply(self, kind: str, obj: dict[str, Any]) -> None:
        with self._lock:
            if kind == "DELETED":
                self._objects.pop(self.key(obj), None)
            else:
                self._objects[self.key(obj)] = obj

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            return self._objects.get(key)

    def __len__(self) -> int:
        with self._lock:
            return len(self._objects)


@dataclass(frozen=True)
class Discovery:
    """Where agents are: a static list, or the EndpointSlices of a Service."""

    endpoints: tuple[str, ...] = ()
    namespace: str = ""
    service: str = ""


@dataclass
class _Reclaimed:
    root: Root
    kind: ActionKind
    gpus: int
    key: str
    at: float
    checked_mono: float = 0.0


class Controller:
    def __init__(self, api: Any, config: ControllerConfig, clock: Clock, registry: CollectorRegistry,
                 identity: str, discovery: Discovery, informer_config: InformerConfig | None = None) -> None:
        self.api = api
        self.config = config
        self.clock = clock
        self.identity = identity
        self.discovery = discovery
        self.metrics = ControllerMetrics(registry)
        self.caches = {r: ObjectCache() for r in RESOURCES}
        self.informers = [Informer(api, r, self.caches[r], informer_config or InformerConfig()) for r in RESOURCES]
        # ReclaimPolicy / GpuBudget objects (policies.py): applied by every replica, status by the leader only;
        # not waited for at start (a CRD not installed leaves --config in effect)
        self.policies = ReclaimPolicies(config.reclaim, StatusWriter(api, RECLAIM_RESOURCE, self._leading), identity)
        self.budgets = GpuBudgets(config.cost.budgets, StatusWriter(api, BUDGET_RESOURCE, self._leading), identity)
        self.crd_informers = [Informer(api, r, sink, informer_config or InformerConfig())
                              for r, sink in ((RECLAIM_RESOURCE, self.policies), (BUDGET_RESOURCE, self.budgets))]
        self._selections: dict[str, Selection] = {}
        self.store = SampleStore(config.samples)
        self.pool = AgentPool(self.store, clock, config.agents, on_batch=self._on_batch)
        self.ledger = Ledger(config.budget, config.schedules())
        self.costs = CostAccounting(self.store, self.caches["pods"].get, self.caches["nodes"].get,
                                    self.caches["namespaces"].get, clock, config.cost, config.agents.stale_after_s,
                                    registry, budgets=self.budgets.config)
        self.elector = LeaderElector(api, identity, config.lease, clock, annotations=self._lease_annotations,
                                     on_acquire=self._on_acquire)
        self.owners = OwnerResolver(api)
        self.actuator = Actuator(api, clock, self.metrics, identity, self._mode_of)
        # recommendations as commits (leader only, on its own thread): off unless gitops.repoUrl is set
        self.publisher = Publisher(config.gitops, clock, registry) if config.gitops.repo_url else None
        self._reported: set[str] = set()
        self._reclaimed: dict[str, _Reclaimed] = {}
        self._last_pass: float | None = None
        self._last_discovery = -1e18
        self._passes = 0
        self._opted_in_gpus = 0
        self._span_history: SpanHistory | None = None
        self._span_history_at = 0.0
        self._span_job: Future[SpanHistory] | None = None
        self._builder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpufleet-span-history")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_plans: list[PodPlan] = []

    # ---- lifecycle ------------------------------------------------------------------------------

    def _mode_of(self, pod: dict[str, Any]) -> Mode:
        namespace = (pod.get("metadata") or {}).get("namespace", "")
        return self.policies.select(pod, self.caches["namespaces"].get(namespace)).mode

    def start(self, wait_synced_s: float = 60.0) -> None:
        for informer in self.informers:
            informer.start()
        for informer in self.informers:
            if not informer.synced.wait(wait_synced_s):
                raise KubeAPIError(f"listing {informer.resource}: not synced after {wait_synced_s:g}s")
        for informer in self.crd_informers:
            informer.start()
        for writer in (self.policies.writer, self.budgets.writer):
            if writer is not None:
                writer.start()
        self.refresh_agents(force=True)
        self.elector.start(on_change=self._on_leader_change)
        self._thread = threading.Thread(target=self._loop, name="gpufleet-controller-pass", daemon=True)
        self._thread.start()
        log.info("controller started identity=%s agents=%s", self.identity,
                 list(self.discovery.endpoints) or f"{self.discovery.namespace}/{self.discovery.service}")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.elector.stop(release=True)
        self._builder.shutdown(wait=False, cancel_futures=True)
        if self.publisher is not None:
            self.publisher.stop()
        self.pool.stop()
        for informer in [*self.informers, *self.crd_informers]:
            informer.stop()
        for writer in (self.policies.writer, self.budgets.writer):
            if writer is not None:
                writer.stop()
        self.metrics.leader.set(0)

    def healthy(self) -> tuple[bool, dict[str, object]]:
        synced = all(i.synced.is_set() for i in self.informers)
        return synced, {"synced": synced, "leader": self.elector.is_leader(), "agents": len(self.pool),
                        "agents_connected": self.pool.connected, "passes": self._passes}

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = self.clock.monotonic()
            try:
                self.refresh_agents()
                self.run_pass()
            except Exception:
                log.exception("decision pass failed; next pass in %.0fs", self.config.pass_interval_s)
            self._stop.wait(max(0.0, self.config.pass_interval_s - (self.clock.monotonic() - started)))

    def refresh_agents(self, force: bool = False) -> None:
        now = self.clock.monotonic()
        if self.discovery.endpoints:
            if force:
                self.pool.update(self.discovery.endpoints)
        elif force or now - self._last_discovery >= self.config.agents.discovery_every_s:
            self._last_discovery = now
            try:
                self.pool.update(discover(self.api, self.discovery.namespace, self.discovery.service))
            except KubeAPIError as err:
                self.metrics.api_errors.labels("discover").inc()
                log.warning("agent discovery failed (keeping %d endpoints): %s", len(self.pool), err)
        self.pool.check()
        self.metrics.agents.labels("connected").set(self.pool.connected)
        self.metrics.agents.labels("disconnected").set(len(self.pool) - self.pool.connected)

    def _on_batch(self, node: str, gpus: int) -> None:
        self.metrics.batches.inc()
        self.metrics.samples.inc(gpus)

    def _on_leader_change(self, leading: bool) -> None:
        self.metrics.leader.set(1 if leading else 0)
        log.info("leader=%s identity=%s", leading, self.identity)

    def _leading(self) -> bool:
        return self.elector.is_leader()

    def _reclaim_of(self, pod_key: str) -> ReclaimConfig:
        selection = self._selections.get(pod_key)
        return selection.reclaim if selection is not None else self.config.reclaim

    def _namespace_labels(self, namespace: str) -> dict[str, str]:
        labels = ((self.caches["namespaces"].get(namespace) or {}).get("metadata") or {}).get("labels")
        return dict(labels) if isinstance(labels, dict) else {}

    def _lease_annotations(self) -> dict[str, str]:
        self.ledger.prune(self.clock.now())
        return {names.RECLAIM_LEDGER: self.ledger.to_json()}

    def _on_acquire(self, annotations: dict[str, str]) -> None:
        self.ledger.merge_json(annotations.get(names.RECLAIM_LEDGER))

    # ---- the pass -------------------------------------------------------------------------------

    def views(self, now: float) -> tuple[list[PodView], list[Observation], dict[str, list[int]]]:
        """Opted-in pods holding GPUs, their observations, and which observations belong to which pod."""
        views: list[PodView] = []
        observations: list[Observation] = []
        index: dict[str, list[int]] = {}
        nodes = self.store.nodes()
        stale_after = self.config.agents.stale_after_s
        selections: dict[str, Selection] = {}
        for (namespace, name), held in sorted(self.store.holders().items()):
            pod = self.caches["pods"].get(f"{namespace}/{name}")
            if pod is None or (pod.get("status") or {}).get("phase") not in ("Running", "Pending", None):
                continue
            selection = self.policies.select(pod, self.caches["namespaces"].get(namespace))
            mode = selection.mode
            if mode is Mode.OFF:
                continue
            selections[f"{namespace}/{name}"] = selection
            meta = pod.get("metadata") or {}
            try:
                root: Root | None = self.owners.root_of(pod)
            except KubeAPIError as err:
                self.metrics.api_errors.labels("owner").inc()
                log.warning("pod=%s/%s owner not readable: %s", namespace, name, err)
                root = None
            problem = None
            for node, _ in held:
                state = nodes.get(node)
                if state is None or now - state.received_at > stale_after:
                    problem = Skip.STALE
                elif not state.pod_resources_ok:
                    problem = problem or Skip.NO_POD_RESOURCES
            start = started_at(pod)
            since = start if start is not None else 0.0
            uuids = tuple(sorted(u for _, u in held))
            workload = root.key if root is not None else f"{namespace}/{name}"
            first = None
            mine = []
            for uuid in uuids:
                series = self.store.series((namespace, name), uuid, since)
                if len(series):
                    first = float(series.timestamps[0]) if first is None else min(first, float(series.timestamps[0]))
                mine.append(len(observations))
                observations.append(Observation(GpuKey(f"{namespace}/{name}", uuid, workload), series, start))
            key = f"{namespace}/{name}"
            index[key] = mine
            views.append(PodView(uid=meta.get("uid", ""), namespace=namespace, name=name,
                                 node=held[0][0], mode=mode, root=root, gpus=uuids, notice=notice_of(pod),
                                 protection=protection(pod, now), data_problem=problem, observed_from=first))
        self._selections = selections
        return views, observations, index

    def run_pass(self) -> list[PodPlan]:
        try:
            self.costs.update()
        except Exception:
            log.exception("charging the waste ledger failed; the next pass charges the time since")
        with self.metrics.pass_seconds.time():
            return self._pass()

    def _pass(self) -> list[PodPlan]:
        now = self.clock.now()
        cfg = self.config.reclaim
        views, observations, index = self.views(now)
        forecast = cfg.policy == POLICY_FORECAST or any(
            s.reclaim.policy == POLICY_FORECAST for s in self._selections.values())
        history = self._history(observations, now) if forecast else SpanHistory.empty(now)
        tolerance = 2 * self.config.samples.bucket_s + self.config.pass_interval_s
        plans = []
        for v in views:  # each pod with the reclaim settings of its ReclaimPolicy (or --config)
            rc = self._reclaim_of(v.key)
            decisions = decide([observations[i] for i in index[v.key]], history, rc, now)
            plans.append(plan_pod(v, decisions, now, rc.notice_s, tolerance))
        self._account(plans, now)
        self.last_plans = plans
        self._passes += 1
        if self._passes % 60 == 0:
            self.store.forget_before(now - self.config.samples.history_s)
        if self.elector.is_leader():
            self._lead(plans, now)
        return plans

    def _history(self, observations: Sequence[Observation], now: float) -> SpanHistory:
        """The idle-span history the forecast learns from, rebuilt from the sample buffers on a worker thread
        at most every ``samples.history_every_s`` (a rebuild over a fleet's hours of samples takes seconds;
        the pass goes on with the previous one meanwhile)."""
        series = {o.key: o.series for o in observations}
        detection = self.config.reclaim.detection
        if self._span_history is None:  # until the first build: no evidence, so the forecast is not confident
            self._span_history = SpanHistory.empty(now)
            self._span_history_at = now - self.config.samples.history_every_s
        job = self._span_job
        if job is not None and job.done():
            try:
                self._span_history = job.result()
            except Exception:
                log.exception("rebuilding the idle-span history failed; keeping the previous one")
            self._span_job = None
        if self._span_job is None and now - self._span_history_at >= self.config.samples.history_every_s:
            self._span_history_at = now
            self._span_job = self._builder.submit(SpanHistory.from_series, series, detection, now)
        return self._span_history

    def _account(self, plans: Sequence[PodPlan], now: float) -> None:
        dt = 0.0 if self._last_pass is None else max(0.0, now - self._last_pass)
        self._last_pass = now
        idle: dict[str, int] = {}
        modes: dict[str, int] = {m.value: 0 for m in Mode if m is not Mode.OFF}
        gpus = 0
        for p in plans:
            modes[p.pod.mode.value] += 1
            gpus += len(p.pod.gpus)
            idle.setdefault(p.pod.namespace, 0)
            if p.idle:
                idle[p.pod.namespace] += len(p.pod.gpus)
        self.metrics.idle_gpus.clear()
        for namespace, count in idle.items():
            self.metrics.idle_gpus.labels(namespace).set(count)
            if count and dt:
                self.metrics.idle_gpu_seconds.labels(namespace).inc(count * dt)
        for mode, count in modes.items():
            self.metrics.pods.labels(mode).set(count)
        self.metrics.opted_in_gpus.set(gpus)
        self._opted_in_gpus = gpus
        self._account_reclaimed(plans, dt)

    def _account_reclaimed(self, plans: Sequence[PodPlan], dt: float) -> None:
        holding = {p.pod.root.key for p in plans if p.pod.root is not None}
        mono = self.clock.monotonic()
        for key, r in list(self._reclaimed.items()):
            if r.kind is ActionKind.EVICT:
                still = r.root.kind == "Pod" or key not in holding
            elif mono - r.checked_mono < _RECLAIMED_CHECK_S:
                still = True
            else:
                r.checked_mono = mono
                try:
                    obj = self.api.get(r.root.path)
                except KubeAPIError:
                    continue
                ann = ((obj or {}).get("metadata") or {}).get("annotations") or {}
                still = obj is not None and ann.get(names.RECLAIM_KEY) == r.key
            if not still or self.clock.now() - r.at > 7 * 86400:
                del self._reclaimed[key]
            elif dt:
                self.metrics.reclaimed_gpu_seconds.labels(r.root.namespace).inc(r.gpus * dt)

    def _lead(self, plans: Sequence[PodPlan], now: float) -> None:
        for p in plans:
            if p.step is Step.NOTICE:
                self.actuator.notice(p, self._reclaim_of(p.pod.key).notice_s)
            elif p.step is Step.CANCEL:
                self.actuator.cancel(p)
            elif p.step is Step.REPORT and p.action_key not in self._reported:
                self._reported.add(p.action_key)
                self.actuator.report(p)
            elif p.step is Step.SKIP and p.skip is not None:
                self.metrics.skipped.labels(p.skip).inc()
        actions, held = group_actions(plans)
        for p, reason, why in held:
            self.metrics.skipped.labels(reason).inc()
            log.debug("held pod=%s reason=%s: %s", p.pod.key, reason, why)
        for action in actions:
            self._try(action, now)
        if self.publisher is not None and self.elector.is_leader():
            self.publisher.tick(self.costs.recommendations)

    def _try(self, action: Action, now: float) -> None:
        if self.ledger.has(action.key):
            return  # done by us or a previous leader; the pods are on their way out
        selection = self._selections.get(action.pods[0].pod.key) if action.pods else None
        ok, why = self.policies.allows(selection.policy if selection else None, self.ledger.entries,
                                       self.config.budget.window_s, self._namespace_labels, now)
        if not ok:
            self.metrics.skipped.labels(Skip.BUDGET).inc()
            log.info("held action=%s root=%s reason=%s: %s", action.kind, action.root.key, Skip.BUDGET, why)
            return
        ok, reason, why = self.ledger.allows(action.gpus, self._opted_in_gpus, now)
        if not ok:
            assert reason is not None
            self.metrics.skipped.labels(reason).inc()
            log.info("held action=%s root=%s reason=%s: %s", action.kind, action.root.key, reason, why)
            return
        if not self.elector.is_leader():
            return
        result = self.actuator.act(action)
        if result in (Result.DONE, Result.ALREADY):
            self.ledger.record(Entry(self.clock.now(), action.gpus, action.key, action.root.key))
            if result is Result.DONE:
                self.metrics.action_delay.observe(max(0.0, self.clock.now() - action.due_at))
            self._reclaimed[action.root.key] = _Reclaimed(action.root, action.kind, action.gpus, action.key,
                                                          self.clock.now(), self.clock.monotonic())
        elif result is Result.PDB:
            self.metrics.skipped.labels(Skip.PDB).inc()
        elif result is Result.CHANGED:
            self.metrics.skipped.labels(Skip.CHANGED).inc()
        elif result in (Result.ERROR, Result.CONFLICT):
            self.metrics.skipped.labels(Skip.API_ERROR).inc()
