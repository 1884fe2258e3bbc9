"""The four extender verbs over the cluster state: filter, prioritize, bind, preempt.

Each verb takes a parsed request (``wire``) and returns the encoded reply. Scoring and recording a
decision happen under the state's lock; the only network calls (posting a Binding, reading a pod bind
does not know) go through the ``Binder`` seam outside the lock. Pods that did not opt in
(``gpufleet.io/placement`` on the pod, a PlacementPolicy selecting it, or the annotation on its
namespace) are never swayed: filter passes every
node and prioritize gives every node the same score.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np

from gpufleet.core.kube.errors import Conflict, KubeAPIError
from gpufleet.core.pricing import PriceCatalog
from gpufleet.scheduler.extender import preemption
from gpufleet.scheduler.extender.errors import WireError
from gpufleet.scheduler.extender.events import EventRecorder
from gpufleet.scheduler.extender.ledger import Placement, pick_gpus
from gpufleet.scheduler.extender.metrics import ExtenderMetrics
from gpufleet.scheduler.extender.nodes import parse_node
from gpufleet.scheduler.extender.placementconfig import AppliedPolicy, PlacementPolicies
from gpufleet.scheduler.extender.pods import ANY_MODEL, GPU_IDS_ANNOTATION, PodInfo, parse_pod
from gpufleet.scheduler.extender.scoring import OFF, SCORED_POLICIES, Ranking, Scorer, neutral, rows_of
from gpufleet.scheduler.extender.state import ClusterState
from gpufleet.scheduler.extender.wire import (
    BindingArgs,
    PreemptionArgs,
    PriorityEncoder,
    SchedulingArgs,
    encode_binding_result,
    encode_filter_result,
    encode_preemption_result,
)
from gpufleet.scheduler.model import GPU_MILLI, PodRequest
from gpufleet.scheduler.policies.base import choose_gpus

log = logging.getLogger(__name__)


class Binder(Protocol):
    """The API calls bind needs: post a Binding (annotations are copied onto the pod atomically by
    the API server) and read a pod. ``bind`` raises ``Conflict`` when the pod is already bound."""

    def bind(self, namespace: str, name: str, uid: str, node: str, annotations: dict[str, str]) -> None: ...

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None: ...


class BindBacklog:
    """Binds waiting on the API server. With more than ``limit`` of them, filter holds kube-scheduler's next
    pod (up to ``max_wait_s``, well inside its 1 s timeout): its serial cycle then goes no faster than the API
    server binds, instead of piling up binds until they pass kube-scheduler's timeout and it falls back to
    its own binder, which races ours. ``limit`` 0 turns it off."""

    def __init__(self, limit: int = 32, max_wait_s: float = 0.5) -> None:
        self.limit = limit
        self.max_wait_s = max_wait_s
        self.in_flight = 0
        self._changed = threading.Condition()

    @contextmanager
    def binding(self) -> Iterator[None]:
        with self._changed:
            self.in_flight += 1
        try:
            yield
        finally:
            with self._changed:
                self.in_flight -= 1
                if self.in_flight == self.limit:  # wake a held filter once, when it may go on
                    self._changed.notify_all()

    def wait(self) -> float:
        """Seconds waited until at most ``limit`` binds were in flight (or ``max_wait_s`` passed)."""
        if self.limit <= 0 or self.in_flight <= self.limit:
            return 0.0
        started = time.monotonic()
        with self._changed:
            self._changed.wait_for(lambda: self.in_flight <= self.limit, timeout=self.max_wait_s)
        return time.monotonic() - started


class Extender:
    def __init__(self, state: ClusterState, scorer: Scorer, metrics: ExtenderMetrics, *,
                 catalog: PriceCatalog | None = None, binder: Binder | None = None,
                 events: EventRecorder | None = None, standalone: bool = False,
                 placements: PlacementPolicies | None = None, backlog: BindBacklog | None = None) -> None:
        self.state = state
        self.placements = placements
        self.scorer = scorer
        self.metrics = metrics
        self.catalog = catalog or PriceCatalog.default()
        self.binder = binder
        self.events = events
        self.standalone = standalone
        self.backlog = backlog or BindBacklog()
        self._encoder = PriorityEncoder()

    # -- helpers -------------------------------------------------------------------------------

    def ready(self) -> bool:
        return self.standalone or self.state.synced

    def placing(self, pod: PodInfo) -> tuple[str, AppliedPolicy | None]:
        """The pod's policy and the PlacementPolicy that sets it, if one does. The policy is the pod's
        annotation, else the PlacementPolicy selecting it (by pod labels, then namespace-wide), else the
        namespace's annotation, else off."""
        applied = None if self.placements is None or pod.placement else \
            self.placements.for_pod(pod.namespace, pod.labels)
        policy = pod.placement or (applied.policy if applied else None) \
            or self.state.namespace_placement(pod.namespace) or OFF
        return (policy if policy in SCORED_POLICIES else OFF), applied

    def policy_of(self, pod: PodInfo) -> str:
        return self.placing(pod)[0]

    def _rank(self, pod: PodInfo, policy: str, applied: AppliedPolicy | None, names: Sequence[str]) -> Ranking:
        """The scorer's ranking with the PlacementPolicy's weights and workload mix (None: the flags'
        weights, the scorer's own mix)."""
        return self.scorer.rank(self.state, pod, policy, names,
                                cost_options=applied.cost_options() if applied else None,
                                mix=applied.mix if applied else None)

    def _expire(self) -> None:
        """Drop decisions past their deadline (under the state's lock), counted in the metric."""
        expired = self.state.expire()
        if expired:
            self.metrics.expired.inc(expired)

    def _scorable(self, args: SchedulingArgs) -> bool:
        if self.standalone:
            return not args.names_only
        return self.state.synced

    def _ingest(self, args: SchedulingArgs) -> None:
        """Standalone, full-Nodes mode: the request is the only source of nodes."""
        if not self.standalone or args.nodes is None:
            return
        for i, obj in enumerate(args.nodes):
            meta = obj.get("metadata") or {}
            known = self.state.node(meta.get("name", "")) if isinstance(meta, dict) else None
            version = meta.get("resourceVersion") if isinstance(meta, dict) else None
            if known is not None and version and known.resource_version == version:
                continue
            try:
                self.state.upsert_node(parse_node(obj, self.catalog, f"Nodes.items[{i}]"))
            except WireError as err:
                log.debug("node skipped: %s", err)
        self.state.mark_synced("nodes")

    # -- filter --------------------------------------------------------------------------------

    def filter(self, args: SchedulingArgs) -> bytes:
        """Per-GPU fit for every pod that asks for GPUs, opted in or not: kube-scheduler counts
        ``nvidia.com/gpu`` devices and ``gpufleet.io/gpu-milli`` per node, only the extender knows
        which GPU holds what (a share never spans two GPUs; whole GPUs and shares never mix)."""
        names = args.node_names
        pod = args.pod
        waited = self.backlog.wait()  # before the lock: holds only kube-scheduler's cycle
        if waited:
            self.metrics.backpressure.inc(waited)
        if pod.gpu_error is not None:
            reason = f"gpufleet: {pod.gpu_error}"
            return encode_filter_result([], {}, dict.fromkeys(names, reason), args.nodes)
        with self.state.lock:
            self._ingest(args)
            self.state.remember_pending(pod)
            if pod.gpus == 0 or not self._scorable(args):
                return encode_filter_result(names, {}, {}, args.nodes)
            self._expire()
            self.state.forget(pod.uid)
            posted = _posted(self.state.ledger.get(pod.uid)) if pod.uid else None
            if posted is not None:  # a retry after our Binding went through: only its node will do
                failed = {n: f"gpufleet: the pod is being bound to {posted.node}" for n in names if n != posted.node}
                return encode_filter_result([n for n in names if n == posted.node], failed, {}, args.nodes)
            policy, applied = self.placing(pod)
            if policy != OFF and self.scorer.config.decide_in_filter:
                decided = self._decide(pod, policy, applied, names)
                if decided is not None:
                    return encode_filter_result([decided], {}, {}, args.nodes)
            failed, unresolvable = self._filter_reasons(pod, names, opted_in=policy != OFF)
            passed = [n for n in names if n not in failed and n not in unresolvable] if failed or unresolvable else names
            if len(passed) == 1:
                self._assume_sole_node(pod, policy, applied, passed[0])
        return encode_filter_result(passed, failed, unresolvable, args.nodes)

    def _decide(self, pod: PodInfo, policy: str, applied: AppliedPolicy | None, names: Sequence[str]) -> str | None:
        """``decide_in_filter``: the policy's top node, charged now as prioritize would; None when no node
        fits (filter then says why of each). The ranking's own fit check (GPU model, per-GPU room, CPU,
        memory) is stricter than the reasons filter gives, so no per-node reason is built here: the
        other nodes are left out of the reply. kube-scheduler takes the names that pass as the feasible
        list and keeps reasons only to explain a pod that fits nowhere, which this one does not. A
        reason per node was ~25 KB of JSON per pod at 1,000 nodes, encoded here and decoded there."""
        ranking = self._rank(pod, policy, applied, names)
        if ranking.best < 0:
            return None
        self._charge(pod, ranking, names)
        self._announce(pod, ranking, names)
        return names[ranking.best]

    def _charge(self, pod: PodInfo, ranking: Ranking, names: Sequence[str]) -> None:
        """Assume the pod on its top node (under the state's lock) until it is bound or the TTL passes."""
        if ranking.best >= 0 and pod.uid and pod.request is not None:
            self.state.assume(pod.uid, pod.key, names[ranking.best], pod.request, ranking.best_gpus,
                              self.state.config.assume_ttl_s)

    def _announce(self, pod: PodInfo, ranking: Ranking, names: Sequence[str]) -> None:
        """Say what was decided: the decisions metric, the log line benchmarks read, an Event."""
        self.metrics.decisions.labels(ranking.policy).inc()
        if ranking.best >= 0:
            node = names[ranking.best]
            if log.isEnabledFor(logging.INFO):
                log.info("pod=%s policy=%s node=%s gpus=%s", pod.key, ranking.policy, node,
                         ",".join(map(str, ranking.best_gpus)))
            if self.events is not None:
                self.events.decision(pod, ranking, node)

    def _assume_sole_node(self, pod: PodInfo, policy: str, applied: AppliedPolicy | None, node: str) -> None:
        """kube-scheduler skips prioritize when one node is feasible and binds there asynchronously,
        while it already filters the next pod: charge the pod now, or that pod sees the GPUs free."""
        cluster = self.state.cluster
        row = cluster.index.get(node) if cluster is not None else None
        if row is None or not pod.uid or pod.request is None:
            return
        gpus: tuple[int, ...] = ()
        if policy != OFF:
            ranking = self._rank(pod, policy, applied, [node])
            gpus = ranking.best_gpus if ranking.best == 0 else ()
        gpus = gpus or choose_gpus(cluster, row, pod.request)
        if gpus:
            self.state.assume(pod.uid, pod.key, node, pod.request, gpus, self.state.config.assume_ttl_s)

    def _filter_reasons(self, pod: PodInfo, names: Sequence[str],
                        opted_in: bool = True) -> tuple[dict[str, str], dict[str, str]]:
        """Only what kube-scheduler cannot see: unknown nodes (for opted-in pods; a plain pod keeps
        kube-scheduler's own counts there), excluded GPU models, whole GPUs that are not free of
        shares, and a GPU share that fits on no single GPU of the node."""
        cluster = self.state.cluster
        request = pod.request
        failed: dict[str, str] = {}
        unresolvable: dict[str, str] = {}
        if request is None:
            return failed, unresolvable
        rows = rows_of(cluster.index if cluster is not None else {}, names)
        if opted_in:
            for i in np.flatnonzero(rows < 0):
                failed[names[i]] = "gpufleet: node not (yet) in the extender's cache"
        if cluster is None:
            return failed, unresolvable
        known = np.flatnonzero(rows >= 0)
        r = rows[known]
        if not pod.model_rule.is_any:
            allowed = np.array([pod.model_rule.allows(m) for m in cluster.model_names] + [False], dtype=bool)
            models = cluster.gpu_model[r]
            bad = np.flatnonzero((models >= 0) & ~allowed[models])
            for i in bad:
                model = cluster.model_names[models[i]]
                unresolvable[names[known[i]]] = f"gpufleet: GPU model {model} is excluded by the pod's node affinity"
        if request.is_gpu_share:
            most = cluster.gpu_free[r].max(axis=1, initial=0)
            for i in np.flatnonzero(most < request.gpu_milli):
                name = names[known[i]]
                if name not in unresolvable:
                    failed[name] = (f"gpufleet: no single GPU has {request.gpu_milli}m free "
                                    f"(most free: {int(most[i])}m of {GPU_MILLI}m)")
        else:
            whole = (cluster.gpu_free[r] >= GPU_MILLI).sum(axis=1)
            for i in np.flatnonzero(whole < request.num_gpu):
                name = names[known[i]]
                if name not in unresolvable:
                    failed[name] = (f"gpufleet: {int(whole[i])} GPUs free of other pods, "
                                    f"the pod asks for {request.num_gpu}")
        return failed, unresolvable

    # -- prioritize ----------------------------------------------------------------------------

    def prioritize(self, args: SchedulingArgs) -> bytes:
        names = args.node_names
        pod = args.pod
        ranking: Ranking
        with self.state.lock:
            self._ingest(args)
            self.state.remember_pending(pod)
            policy, applied = self.placing(pod)
            if policy == OFF or not self._scorable(args):
                ranking = neutral(len(names))
            else:
                self._expire()
                self.state.forget(pod.uid)  # a retry: the pod's earlier decision must not count against it
                posted = _posted(self.state.ledger.get(pod.uid)) if pod.uid else None
                if posted is not None:  # its Binding already went through: keep it where it is bound
                    ranking = _keep(policy, names, posted)
                else:
                    ranking = self._rank(pod, policy, applied, names)
                    self._charge(pod, ranking, names)
        self._announce(pod, ranking, names)
        return self._encoder.encode(names, ranking.scores.tolist())

    # -- bind ----------------------------------------------------------------------------------

    def bind(self, args: BindingArgs) -> bytes:
        with self.backlog.binding():
            return self._bind(args)

    def _bind(self, args: BindingArgs) -> bytes:
        if self.binder is None:
            self.metrics.binds.labels("error").inc()
            return encode_binding_result("gpufleet extender runs without API access (--standalone) "
                                         "and cannot bind; remove bindVerb from the scheduler config")
        with self.state.lock:
            posted = _posted(self.state.ledger.get(args.uid)) if args.uid else None
        if posted is not None:  # kube-scheduler retried a pod whose Binding already went through
            return self._already_bound(args, posted.node)
        pod = self._pod_for_bind(args)
        if isinstance(pod, str):
            self.metrics.binds.labels("error").inc()
            return encode_binding_result(pod)
        if pod.node_name:
            return self._already_bound(args, pod.node_name)
        gpus = self._reserve(args, pod)
        annotations = {GPU_IDS_ANNOTATION: ",".join(map(str, gpus))} if gpus else {}
        try:
            self.binder.bind(args.namespace, args.pod_name, args.uid, args.node, annotations)
        except Conflict:
            current = self._read_pod(args)
            if isinstance(current, PodInfo) and current.node_name == args.node:
                self.state.upsert_pod(current)
                if annotations and current.gpu_ids is None:
                    self._record_gpu_ids(args, annotations)
                return self._ok("already_bound", args)
            self.state.forget(args.uid)
            self.metrics.binds.labels("error").inc()
            where = current.node_name if isinstance(current, PodInfo) else "unknown"
            return encode_binding_result(f"pod {args.namespace}/{args.pod_name} is bound elsewhere ({where})")
        except KubeAPIError as err:
            self.state.forget(args.uid)
            self.metrics.binds.labels("error").inc()
            log.warning("pod=%s/%s node=%s bind failed: %s", args.namespace, args.pod_name, args.node, err)
            return encode_binding_result(f"binding {args.namespace}/{args.pod_name} to {args.node}: {err}")
        self.state.mark_bound(args.uid)
        log.info("pod=%s/%s node=%s gpus=%s bound", args.namespace, args.pod_name, args.node,
                 annotations.get(GPU_IDS_ANNOTATION, "-"))
        return self._ok("bound", args)

    def _record_gpu_ids(self, args: BindingArgs, annotations: dict[str, str]) -> None:
        """kube-scheduler's own binder won the race (our bind passed its timeout): the pod is on our
        node but without ``gpufleet.io/gpu-ids``; write them, so the node and a restart see our GPUs."""
        patch = getattr(self.binder, "patch", None)
        if patch is None:
            return
        try:
            patch(f"/api/v1/namespaces/{args.namespace}/pods/{args.pod_name}", {"metadata": {"annotations": annotations}})
        except KubeAPIError as err:
            log.warning("pod=%s/%s gpu-ids not recorded after a concurrent bind: %s", args.namespace, args.pod_name, err)
            return
        log.info("pod=%s/%s node=%s gpus=%s recorded after a concurrent bind", args.namespace, args.pod_name,
                 args.node, annotations[GPU_IDS_ANNOTATION])

    def _ok(self, result: str, args: BindingArgs) -> bytes:
        self.metrics.binds.labels(result).inc()
        return encode_binding_result("")

    def _already_bound(self, args: BindingArgs, node: str) -> bytes:
        if node == args.node:
            return self._ok("already_bound", args)
        self.metrics.binds.labels("error").inc()
        return encode_binding_result(f"pod {args.namespace}/{args.pod_name} is already bound to {node}")

    def _pod_for_bind(self, args: BindingArgs) -> PodInfo | str:
        """The pod being bound: from its decision or the pending-pod cache, else read from the API."""
        with self.state.lock:
            placement = self.state.ledger.get(args.uid) if args.uid else None
            pending = self.state.pending_pod(args.uid) if args.uid else None
        if pending is not None:
            return pending
        if placement is not None and placement.assumed and not placement.bound:
            return _decided_pod(args, placement.request)
        return self._read_pod(args)  # unseen, or a Binding was posted already: the API knows where it went

    def _read_pod(self, args: BindingArgs) -> PodInfo | str:
        if self.binder is None:
            return "no API access"
        try:
            obj = self.binder.get_pod(args.namespace, args.pod_name)
        except KubeAPIError as err:
            return f"reading pod {args.namespace}/{args.pod_name}: {err}"
        if obj is None:
            return f"pod {args.namespace}/{args.pod_name} not found"
        try:
            pod = parse_pod(obj)
        except WireError as err:
            return f"pod {args.namespace}/{args.pod_name} unreadable: {err}"
        if args.uid and pod.uid != args.uid:
            return f"pod {args.namespace}/{args.pod_name} was replaced (uid {pod.uid}, not {args.uid})"
        return pod

    def _reserve(self, args: BindingArgs, pod: PodInfo) -> tuple[int, ...]:
        """Charge the pod on the chosen node and return its GPUs (the decision's if it was made for
        this node), so nothing else can take them while the Binding is posted."""
        request = pod.request
        if request is None or request.num_gpu == 0:
            return ()
        with self.state.lock:
            cluster = self.state.cluster
            placement = self.state.ledger.get(args.uid) if args.uid else None
            if placement is not None and placement.node == args.node and placement.request == request \
                    and placement.assumed:
                return placement.gpus
            self.state.forget(args.uid)
            row = cluster.index.get(args.node) if cluster is not None else None
            if row is None:
                return ()
            gpus = choose_gpus(cluster, row, request)
            if not gpus and self.state.drop_unbound_decisions(args.node, keep=args.uid):
                gpus = choose_gpus(cluster, row, request)
            if not gpus:
                gpus = pick_gpus(cluster, row, request)
                log.warning("pod=%s node=%s does not fit the model's free GPUs; binding on %s anyway",
                            pod.key, args.node, gpus)
            self.state.assume(args.uid, pod.key, args.node, request, gpus, self.state.config.bound_ttl_s)
            return gpus

    # -- preempt -------------------------------------------------------------------------------

    def preempt(self, args: PreemptionArgs) -> bytes:
        pod = args.pod
        victims = dict(args.victims)
        if self.policy_of(pod) == OFF or pod.request is None or pod.gpus == 0:
            return encode_preemption_result(victims)
        with self.state.lock:
            cluster = self.state.cluster
            if cluster is None:
                return encode_preemption_result(victims)
            mask = cluster.model_mask(pod.model_rule.resolve(cluster.model_names))
            for node, proposed in victims.items():
                victims[node] = preemption.refine(cluster, self.state.ledger, node, pod.request, mask, proposed)
        return encode_preemption_result(victims)


def _keep(policy: str, names: Sequence[str], posted: Placement) -> Ranking:
    """The ranking of a pod already bound (by our Binding) to ``posted.node``: that node first."""
    best = names.index(posted.node) if posted.node in names else -1
    return Ranking(policy, best, posted.gpus if best >= 0 else (),
                   lambda: np.array([10 if n == posted.node else 0 for n in names], dtype=np.int64))


def _posted(placement: Placement | None) -> Placement | None:
    """The placement if the pod is bound for sure: its Binding was posted, or the watch saw it bound.
    A retry of such a pod (kube-scheduler gave up waiting on bind) must not move its charge."""
    if placement is not None and (placement.bound or not placement.assumed):
        return placement
    return None


def _decided_pod(args: BindingArgs, request: PodRequest) -> PodInfo:
    """The pod being bound as its decision recorded it (bind's arguments carry no pod)."""
    return PodInfo(uid=args.uid, name=args.pod_name, namespace=args.namespace, node_name="", phase="Pending",
                   deleting=False, request=request, placement=None, interruptible=False, gpu_ids=None,
                   model_rule=ANY_MODEL)
