"""The one cluster model of the process: nodes, every pod's placement, namespaces' defaults.

Fed by the informers (or, in standalone mode, by the Nodes in requests) and read by the verbs. One
re-entrant lock guards it all; a verb holds it from reading free capacity to recording its decision,
which is what keeps a burst of concurrent decisions from handing out the same GPU twice.

Pods: a bound pod is charged where the API server says, on the GPUs its ``gpufleet.io/gpu-ids``
annotation names (so a restart rebuilds the same assignment); without the annotation, on the GPUs an
earlier decision picked, else on the policies' default choice. Pending pods are kept by UID so bind can
find a pod's request. No I/O here; the clock is injected.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from gpufleet.core.clock import Clock, SystemClock
from gpufleet.scheduler.extender.ledger import Ledger, Placement, pick_gpus
from gpufleet.scheduler.extender.nodes import NodeInfo
from gpufleet.scheduler.extender.nodetable import append_nodes, clear_row, same_gpus, update_row
from gpufleet.scheduler.extender.pods import PLACEMENTS, PodInfo
from gpufleet.scheduler.model import Cluster, ModelError, PodRequest

log = logging.getLogger(__name__)

RESOURCES = ("nodes", "bound-pods", "namespaces")
#: Pods seen in requests and not yet bound, kept for bind (which carries no pod); the oldest go first.
MAX_PENDING = 10_000


@dataclass(frozen=True)
class StateConfig:
    """``assume_ttl_s``: how long a decision waits for bind or the pod watch before its GPUs are
    free again (s, default 30). ``bound_ttl_s``: the same after a successful bind, waiting for the
    watch (s, default 300). ``compact_ratio``: rebuild the arrays when this share of rows belongs to
    removed nodes (default 0.25)."""

    assume_ttl_s: float = 30.0
    bound_ttl_s: float = 300.0
    compact_ratio: float = 0.25


class ClusterState:
    def __init__(self, config: StateConfig = StateConfig(), clock: Clock | None = None,
                 resources: Iterable[str] = RESOURCES) -> None:
        self.lock = threading.RLock()
        self.config = config
        self.clock = clock or SystemClock()
        self.cluster: Cluster | None = None
        #: Changes whenever ``cluster`` is replaced by a new object (per-cluster caches key on it).
        self.generation = 0
        self.ledger = Ledger()
        self._nodes: dict[str, NodeInfo] = {}
        self._pending: dict[str, PodInfo] = {}
        self._namespaces: dict[str, str] = {}
        self._cleared = 0
        self._required = frozenset(resources)
        self._synced: set[str] = set()
        self.last_update: float | None = None

    # -- sync gate -----------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        with self.lock:
            return self._required <= self._synced

    def mark_synced(self, resource: str) -> None:
        with self.lock:
            self._synced.add(resource)
            self._touch()

    def _touch(self) -> None:
        self.last_update = self.clock.monotonic()

    # -- nodes ---------------------------------------------------------------------------------

    def node(self, name: str) -> NodeInfo | None:
        return self._nodes.get(name)

    def node_count(self) -> int:
        return len(self._nodes)

    def node_infos(self) -> list[NodeInfo]:
        """Every node as last parsed (a copy of the list; for re-pricing)."""
        with self.lock:
            return list(self._nodes.values())

    def replace_nodes(self, infos: Iterable[NodeInfo]) -> None:
        with self.lock:
            self._nodes = {i.name: i for i in infos}
            self._rebuild()
            self._touch()

    def upsert_node(self, info: NodeInfo) -> None:
        with self.lock:
            self._touch()
            old = self._nodes.get(info.name)
            self._nodes[info.name] = info
            row = self.cluster.index.get(info.name) if self.cluster is not None else None
            if row is None:
                try:
                    self.cluster = append_nodes(self.cluster, [info.node])
                except ModelError as err:
                    log.warning("node=%s not modelled: %s", info.name, err)
                    del self._nodes[info.name]
                    return
                self.generation += 1
                self.ledger.charge_node(self.cluster, info.name)
            elif old is not None and old.node == info.node:
                return
            elif same_gpus(self.cluster, row, info.node):
                update_row(self.cluster, row, info.node)
            else:
                log.info("node=%s GPUs changed; rebuilding the model", info.name)
                self._rebuild()

    def delete_node(self, name: str) -> None:
        with self.lock:
            self._touch()
            if self._nodes.pop(name, None) is None or self.cluster is None:
                return
            row = self.cluster.index.get(name)
            if row is None:
                return
            self.ledger.drop_charges(name)  # the row is zeroed below; pods there stay recorded
            clear_row(self.cluster, row)
            self._cleared += 1
            if self._cleared > max(32, self.config.compact_ratio * len(self.cluster)):
                self._rebuild()

    def _rebuild(self) -> None:
        self.ledger.drop_charges()
        self._cleared = 0
        self.generation += 1
        if not self._nodes:
            self.cluster = None
            return
        nodes = [i.node for i in self._nodes.values()]
        try:
            self.cluster = Cluster.from_nodes(nodes)
        except ModelError as err:  # e.g. too many GPU models: keep the most common ones
            log.warning("model rebuild failed: %s; keeping nodes of the 62 most common GPU models", err)
            self.cluster = Cluster.from_nodes(_most_common_models(nodes))
        self.ledger.charge_all(self.cluster)

    # -- pods ----------------------------------------------------------------------------------

    def pending_pod(self, uid: str) -> PodInfo | None:
        return self._pending.get(uid)

    def remember_pending(self, info: PodInfo) -> None:
        """A pod kube-scheduler asked about and not bound yet (the pod watch sees only bound pods), so
        bind knows its request without reading it from the API server."""
        if info.uid and not info.node_name:
            with self.lock:
                self._pending.pop(info.uid, None)
                self._pending[info.uid] = info
                if len(self._pending) > MAX_PENDING:
                    del self._pending[next(iter(self._pending))]

    def replace_pods(self, infos: Iterable[PodInfo]) -> None:
        """A fresh list: placements the watch had confirmed for pods no longer listed go away;
        decisions still waiting for the watch stay until they expire."""
        with self.lock:
            infos = list(infos)
            listed = {i.uid for i in infos}
            for p in self.ledger:
                if not p.assumed and p.uid not in listed:
                    self.ledger.remove(self.cluster, p.uid)
            for info in infos:
                self._apply_pod(info)
            self._touch()

    def upsert_pod(self, info: PodInfo) -> None:
        with self.lock:
            self._touch()
            self._apply_pod(info)

    def delete_pod(self, uid: str) -> None:
        with self.lock:
            self._touch()
            self._pending.pop(uid, None)
            self.ledger.remove(self.cluster, uid)

    def _apply_pod(self, info: PodInfo) -> None:
        if not info.uid:
            return
        if info.terminal:
            self._pending.pop(info.uid, None)
            self.ledger.remove(self.cluster, info.uid)
            return
        if not info.node_name:
            self._pending[info.uid] = info
            return
        self._pending.pop(info.uid, None)
        request = info.request
        if request is None:
            log.debug("pod=%s not accounted: %s", info.key, "; ".join(info.problems))
            return
        existing = self.ledger.get(info.uid)
        if (existing is not None and existing.node == info.node_name and existing.request == request
                and existing.per_node == info.per_node):
            gpus = info.gpu_ids if _ids_fit(info.gpu_ids, request) else existing.gpus
            if gpus == existing.gpus:
                self.ledger.confirm(info.uid)
                return
        else:
            gpus = info.gpu_ids if _ids_fit(info.gpu_ids, request) else ()
        self.ledger.remove(self.cluster, info.uid)
        row = self.cluster.index.get(info.node_name) if self.cluster is not None else None
        if not gpus and row is not None and self.cluster is not None:
            gpus = pick_gpus(self.cluster, row, request)  # chosen once the pod's old charge is off
        self.ledger.add(self.cluster, Placement(info.uid, info.key, info.node_name, request, gpus, None,
                                                per_node=info.per_node))

    # -- namespaces ----------------------------------------------------------------------------

    def namespace_placement(self, namespace: str) -> str | None:
        return self._namespaces.get(namespace)

    def set_namespace(self, name: str, placement: str | None) -> None:
        with self.lock:
            self._touch()
            if placement is not None and placement in PLACEMENTS:
                self._namespaces[name] = placement
            else:
                self._namespaces.pop(name, None)

    def replace_namespaces(self, placements: dict[str, str | None]) -> None:
        with self.lock:
            self._namespaces = {k: v for k, v in placements.items() if v is not None and v in PLACEMENTS}
            self._touch()

    # -- decisions -----------------------------------------------------------------------------

    def assume(self, uid: str, pod: str, node: str, request: PodRequest, gpus: tuple[int, ...],
               ttl_s: float) -> Placement:
        """Charge a decision now; it is released at ``now + ttl_s`` unless the watch confirms it."""
        with self.lock:
            placement = Placement(uid, pod, node, request, gpus, self.clock.monotonic() + ttl_s)
            return self.ledger.add(self.cluster, placement)

    def forget(self, uid: str) -> Placement | None:
        """Drop a decision not yet bound (the pod is being scheduled again, or its bind failed).
        A posted Binding is kept until the watch settles it: the pod may well be bound."""
        with self.lock:
            p = self.ledger.get(uid)
            if p is None or not p.assumed or p.bound:
                return None
            return self.ledger.remove(self.cluster, uid)

    def mark_bound(self, uid: str) -> None:
        with self.lock:
            self.ledger.mark_bound(uid, self.clock.monotonic() + self.config.bound_ttl_s)

    def drop_unbound_decisions(self, node: str, keep: str) -> int:
        """Release scoring decisions (not yet bound) of other pods on ``node``: kube-scheduler has
        put a pod there, so its own view wins over guesses of where other pods will go."""
        with self.lock:
            stale = [p.uid for p in self.ledger.on_node(node) if p.assumed and not p.bound and p.uid != keep]
            for uid in stale:
                self.ledger.remove(self.cluster, uid)
            return len(stale)

    def expire(self) -> int:
        """Release decisions whose deadline passed; returns how many."""
        with self.lock:
            expired = self.ledger.expired(self.clock.monotonic())
            for uid in expired:
                p = self.ledger.remove(self.cluster, uid)
                log.info("pod=%s node=%s decision expired before the pod was seen bound", p.pod, p.node)
            return len(expired)


def _ids_fit(ids: tuple[int, ...] | None, request: PodRequest) -> bool:
    return ids is not None and len(ids) == request.num_gpu


def _most_common_models(nodes: list) -> list:
    from collections import Counter

    keep = {m for m, _ in Counter(n.gpu_model for n in nodes if n.gpus).most_common(62)}
    return [n for n in nodes if not n.gpus or n.gpu_model in keep]
