"""Every placement the extender accounts for, keyed by pod UID, and its charge on the cluster arrays.

A placement is *assumed* from the moment the extender decides (prioritize picks a node, or bind
picks GPUs) until the pod watch shows the pod bound; an assumed placement expires at a deadline of
the injected clock, so a decision kube-scheduler never carried out frees its GPUs again. A placement
the watch confirmed has no deadline and lives until the pod ends.

Charging goes through ``Cluster.place`` when the pod fits. A pod the API server says is bound but
that does not fit the model (a stale or over-committed view) is still charged, clamped so no GPU
goes below zero free, and the exact amounts are kept so the release restores the arrays. Placements
on nodes the model does not know yet stay uncharged until the node arrives. Not thread-safe: the
owner (``state.ClusterState``) serialises access. No I/O here.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from gpufleet.scheduler.model import Cluster, ModelError, PodRequest
from gpufleet.scheduler.policies.base import choose_gpus


@dataclass(frozen=True)
class Placement:
    uid: str
    pod: str  # namespace/name, for messages
    node: str
    request: PodRequest
    gpus: tuple[int, ...]
    expires_at: float | None  # monotonic deadline while assumed; None once the watch confirmed it
    bound: bool = False  # the extender posted the Binding (it is no longer only a scoring decision)
    per_node: bool = False  # a DaemonSet's or static pod (``PodInfo.per_node``): not in the learnt mix

    @property
    def assumed(self) -> bool:
        return self.expires_at is not None


@dataclass(frozen=True)
class Charge:
    """What was taken from one row: per-GPU amounts (``exact`` when ``Cluster.place`` did it)."""

    row: int
    gpus: tuple[int, ...]
    amounts: tuple[int, ...]
    exact: bool


def charge(cluster: Cluster, row: int, request: PodRequest, gpus: tuple[int, ...]) -> Charge:
    try:
        cluster.place(row, request, gpus)
        return Charge(row, gpus, (request.gpu_milli,) * len(gpus), exact=True)
    except ModelError:
        pass
    # Over-committed in the model's view: take what is there, remember how much.
    width = int(cluster.gpu_count[row])
    valid = tuple(g for g in gpus if 0 <= g < width)
    amounts = tuple(int(min(request.gpu_milli, max(0, int(cluster.gpu_free[row, g])))) for g in valid)
    cluster.cpu_free[row] -= request.cpu_milli
    cluster.memory_free[row] -= request.memory_mib
    for g, amount in zip(valid, amounts):
        cluster.gpu_free[row, g] -= amount
    if request.pod_class >= 0:
        cluster.pod_classes[row, request.pod_class] += 1
    cluster.version[row] += 1
    return Charge(row, valid, amounts, exact=False)


def uncharge(cluster: Cluster, taken: Charge, request: PodRequest) -> None:
    if taken.exact:
        cluster.release(taken.row, request, taken.gpus)
        return
    cluster.cpu_free[taken.row] += request.cpu_milli
    cluster.memory_free[taken.row] += request.memory_mib
    for g, amount in zip(taken.gpus, taken.amounts):
        cluster.gpu_free[taken.row, g] += amount
    if request.pod_class >= 0:
        cluster.pod_classes[taken.row, request.pod_class] -= 1
    cluster.version[taken.row] += 1


class Ledger:
    """Placements by UID, their charges, and an index by node name."""

    def __init__(self) -> None:
        self._placements: dict[str, Placement] = {}
        self._charges: dict[str, Charge] = {}
        self._by_node: dict[str, set[str]] = {}
        self._assumed: set[str] = set()
        # (deadline, uid) of every deadline ever set; stale entries are skipped when popped, so finding
        # what expired costs O(expired log n) rather than a scan of every assumed placement per request.
        self._deadlines: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._placements)

    def __iter__(self) -> Iterator[Placement]:
        return iter(list(self._placements.values()))

    def get(self, uid: str) -> Placement | None:
        return self._placements.get(uid)

    @property
    def assumed_count(self) -> int:
        return len(self._assumed)

    def assumed(self) -> list[Placement]:
        return [self._placements[uid] for uid in self._assumed]

    def on_node(self, node: str) -> list[Placement]:
        return [self._placements[uid] for uid in self._by_node.get(node, ())]

    def add(self, cluster: Cluster | None, placement: Placement) -> Placement:
        """Record ``placement`` (replacing any for its UID) and charge it when its node is known."""
        self.remove(cluster, placement.uid)
        self._placements[placement.uid] = placement
        self._by_node.setdefault(placement.node, set()).add(placement.uid)
        if placement.assumed:
            self._assumed.add(placement.uid)
            heapq.heappush(self._deadlines, (placement.expires_at, placement.uid))
        if cluster is not None:
            self._charge(cluster, placement)
        return placement

    def confirm(self, uid: str) -> None:
        """The watch saw the pod bound where the placement says: it no longer expires."""
        p = self._placements.get(uid)
        if p is not None and p.assumed:
            self._placements[uid] = replace(p, expires_at=None)
            self._assumed.discard(uid)

    def mark_bound(self, uid: str, expires_at: float) -> None:
        """The Binding was posted: wait for the watch until ``expires_at``."""
        p = self._placements.get(uid)
        if p is not None and p.assumed:
            self._placements[uid] = replace(p, expires_at=expires_at, bound=True)
            heapq.heappush(self._deadlines, (expires_at, uid))

    def remove(self, cluster: Cluster | None, uid: str) -> Placement | None:
        p = self._placements.pop(uid, None)
        if p is None:
            return None
        self._assumed.discard(uid)
        uids = self._by_node.get(p.node)
        if uids is not None:
            uids.discard(uid)
            if not uids:
                del self._by_node[p.node]
        taken = self._charges.pop(uid, None)
        if taken is not None and cluster is not None:
            uncharge(cluster, taken, p.request)
        return p

    def expired(self, now: float) -> list[str]:
        """UIDs of assumed placements whose deadline is ``now`` or earlier."""
        out = []
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            deadline, uid = heapq.heappop(heap)
            p = self._placements.get(uid)
            if p is not None and p.expires_at == deadline and uid not in out:
                out.append(uid)
        if len(heap) > 4 * len(self._assumed) + 1024:  # drop stale entries now and then
            self._deadlines = [(d, u) for d, u in heap if u in self._assumed]
            heapq.heapify(self._deadlines)
        return out

    def charge_node(self, cluster: Cluster, node: str) -> None:
        """Charge the placements waiting for ``node`` (it just joined the model)."""
        for uid in sorted(self._by_node.get(node, ())):
            if uid not in self._charges:
                self._charge(cluster, self._placements[uid])

    def drop_charges(self, node: str | None = None) -> None:
        """Forget charges (of one node, or all) without touching arrays that are being discarded."""
        if node is None:
            self._charges.clear()
            return
        for uid in self._by_node.get(node, ()):
            self._charges.pop(uid, None)

    def charge_all(self, cluster: Cluster) -> None:
        """Charge every placement on a freshly built cluster: confirmed ones first, so a conflict
        clamps an assumption rather than a pod the API server has bound."""
        self._charges.clear()
        for p in sorted(self._placements.values(), key=lambda p: (p.assumed, p.node, p.uid)):
            self._charge(cluster, p)

    def charge_of(self, uid: str) -> Charge | None:
        return self._charges.get(uid)

    def _charge(self, cluster: Cluster, p: Placement) -> None:
        row = cluster.index.get(p.node)
        if row is None:
            return
        if len(p.gpus) != p.request.num_gpu:  # decided before the node was known: pick GPUs now
            p = replace(p, gpus=pick_gpus(cluster, row, p.request))
            self._placements[p.uid] = p
        self._charges[p.uid] = charge(cluster, row, p.request, p.gpus)


def pick_gpus(cluster: Cluster, row: int, request: PodRequest, share_gpu: int = -1) -> tuple[int, ...]:
    """The policies' GPU choice (``choose_gpus``) where the pod fits; else the GPUs with the most free
    capacity, so an over-committed pod is charged where it hurts least."""
    gpus = choose_gpus(cluster, row, request, share_gpu)
    if gpus or request.num_gpu == 0:
        return gpus
    count = int(cluster.gpu_count[row])
    order = np.argsort(-cluster.gpu_free[row, :count], kind="stable")
    return tuple(int(g) for g in order[: request.num_gpu])
