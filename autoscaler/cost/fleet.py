"""A fleet of typed nodes on the scheduler's own cluster model, and the planner that picks its types.

``Fleet`` keeps node slots that open and close in one ``gpufleet.scheduler.model.Cluster`` (a closed
slot has no capacity, so every kernel skips it) and places pods with a scheduler placement policy
(``bestfit`` by default: ``policy.score`` + ``select_node`` + ``choose_gpus`` + ``Cluster.place``), so
plans, replays and the Karpenter baseline all pack exactly as the scheduler does.

``plan`` chooses instance types for a set of pods (variable-size bin packing, greedy): repeatedly, for
every candidate type, fill one empty node of that type first-fit with the remaining pods (largest
first, the same placement core), and open the node whose price per dollar of packed demand is lowest.
A pod's demand in dollars is its cheapest dominant-share price (``sizing.share_cost``). Last, each
node is replaced by the cheapest type that still takes all of its pods (``downsize``). No I/O.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from gpufleet.autoscaler.cost.catalog import InstanceType
from gpufleet.scheduler.model import GPU_MILLI, POD_CLASSES, Cluster, Node, PodRequest
from gpufleet.scheduler.policies import Policy, choose_gpus, make_policy, select_node
from gpufleet.scheduler.policies.base import feasible

DEFAULT_POLICY = "bestfit"
FILL_WINDOW = 128  # pods scanned per trial node (largest first)
RESCAN_EVERY = 16  # nodes between full scans of every type
SHORTLIST = 6


class Fleet:
    """Node slots of catalog instance types on one scheduler ``Cluster``; slots open and close."""

    def __init__(self, gpu_classes: Sequence[str], width: int = 8, slots: int = 64,
                 policy: str = DEFAULT_POLICY) -> None:
        self.model_names = sorted(set(gpu_classes))  # the cluster's "models" are GPU classes
        self.width = width
        self.types: list[InstanceType | None] = []
        self.spot: list[bool] = []
        self.pods = np.zeros(0, dtype=np.int64)
        self._free: list[int] = []
        self.policy: Policy = make_policy(policy, rng=np.random.default_rng(0))
        self.cluster = self._grow(None, slots)

    def _grow(self, old: Cluster | None, slots: int) -> Cluster:
        n0 = len(old) if old is not None else 0
        names = [f"slot-{i}" for i in range(slots)]

        def arr(value, dtype, shape=None):
            return np.full(shape or slots, value, dtype=dtype)

        c = Cluster(names=names, model_names=self.model_names, cpu_capacity=arr(0, np.int64),
                    memory_capacity=arr(0, np.int64), gpu_count=arr(0, np.int32), gpu_model=arr(-1, np.int32),
                    price_per_hour=arr(0.0, np.float64), spot=arr(False, np.bool_), cpu_free=arr(-1, np.int64),
                    memory_free=arr(-1, np.int64), gpu_free=arr(0, np.int32, (slots, self.width)),
                    pod_classes=arr(0, np.int32, (slots, POD_CLASSES)), version=arr(0, np.int64),
                    index={n: i for i, n in enumerate(names)})
        if old is not None:
            for key in ("cpu_capacity", "memory_capacity", "gpu_count", "gpu_model", "price_per_hour", "spot",
                        "cpu_free", "memory_free", "gpu_free", "pod_classes", "version"):
                getattr(c, key)[:n0] = getattr(old, key)
        self.types += [None] * (slots - n0)
        self.spot += [False] * (slots - n0)
        self.pods = np.concatenate([self.pods, np.zeros(slots - n0, dtype=np.int64)])
        self._free += list(range(slots - 1, n0 - 1, -1))
        return c

    def open(self, t: InstanceType, spot: bool = False) -> int:
        """Open a node of type ``t``; returns its slot."""
        if t.gpu_count > self.width:
            raise ValueError(f"{t.name}: {t.gpu_count} GPUs is more than the fleet's width {self.width}")
        if not self._free:
            self.cluster = self._grow(self.cluster, 2 * len(self.cluster))
        i = self._free.pop()
        c = self.cluster
        c.cpu_capacity[i] = c.cpu_free[i] = t.cpu_milli
        c.memory_capacity[i] = c.memory_free[i] = t.memory_mib
        c.gpu_count[i] = t.gpu_count
        c.gpu_model[i] = self.model_names.index(t.gpu_class) if t.gpu_class in self.model_names else -1
        c.gpu_free[i, :] = 0
        c.gpu_free[i, : t.gpu_count] = GPU_MILLI
        c.pod_classes[i, :] = 0
        c.price_per_hour[i] = t.price(spot)
        c.spot[i] = spot
        c.version[i] += 1
        self.types[i], self.spot[i], self.pods[i] = t, spot, 0
        return i

    def close(self, i: int) -> None:
        c = self.cluster
        c.cpu_capacity[i] = c.memory_capacity[i] = 0
        c.cpu_free[i] = c.memory_free[i] = -1
        c.gpu_count[i], c.gpu_model[i], c.price_per_hour[i] = 0, -1, 0.0
        c.gpu_free[i, :] = 0
        c.version[i] += 1
        self.types[i] = None
        self._free.append(i)

    def place(self, pod: PodRequest) -> tuple[int, tuple[int, ...]]:
        """Place ``pod`` where the policy scores best; (-1, ()) if it fits nowhere."""
        scores = self.policy.score(self.cluster, pod)
        node = select_node(scores, np.arange(len(self.cluster)))
        if node < 0:
            return -1, ()
        gpus = choose_gpus(self.cluster, node, pod, int(scores.share_gpu[node]))
        if len(gpus) != pod.num_gpu:
            return -1, ()
        self.cluster.place(node, pod, gpus)
        self.pods[node] += 1
        return node, gpus

    def place_any(self, alternatives: Sequence[PodRequest]) -> tuple[int, tuple[int, ...], PodRequest | None]:
        """Place the first alternative (one size per GPU model, cheapest first) that fits somewhere."""
        for pod in alternatives:
            node, gpus = self.place(pod)
            if node >= 0:
                return node, gpus, pod
        return -1, (), None

    def release(self, node: int, pod: PodRequest, gpus: tuple[int, ...]) -> None:
        self.cluster.release(node, pod, gpus)
        self.pods[node] -= 1

    @property
    def open_slots(self) -> list[int]:
        return [i for i, t in enumerate(self.types) if t is not None]

    def usd_per_hour(self) -> float:
        return float(self.cluster.price_per_hour.sum())

    def node_types(self) -> dict[str, int]:
        counts = Counter(self.types[i].name + (":spot" if self.spot[i] else "") for i in self.open_slots)
        return dict(sorted(counts.items()))


def for_model(alternatives: Sequence[PodRequest], model: str) -> PodRequest | None:
    """The alternative sized for GPU class ``model`` (or the class-free one of a CPU-only pod)."""
    return next((p for p in alternatives if not p.gpu_models or model in p.gpu_models), None)


def fill(t: InstanceType, pods: Sequence[Sequence[PodRequest]], window: int = FILL_WINDOW) -> list[int]:
    """Indices of ``pods`` (scanned in order, at most ``window``) that one empty node of type ``t``
    takes first-fit at their size for its GPU model, placed with the scheduler's feasibility filter
    and GPU choice."""
    c = Cluster.from_nodes([Node("trial", t.cpu_milli, t.memory_mib, t.gpu_count, t.gpu_class)])
    taken: list[int] = []
    least_cpu = min((a[0].cpu_milli for a in pods[:window] if a), default=0)
    least_memory = min((a[0].memory_mib for a in pods[:window] if a), default=0)
    for k, alternatives in enumerate(pods[:window]):
        pod = for_model(alternatives, t.gpu_class)
        if pod is None:
            continue
        if (pod.cpu_milli > c.cpu_free[0] or pod.memory_mib > c.memory_free[0]
                or pod.total_gpu_milli > int(c.gpu_free[0].sum())):
            continue
        if not feasible(c, pod)[0]:
            continue
        gpus = choose_gpus(c, 0, pod)
        if len(gpus) != pod.num_gpu:
            continue
        c.place(0, pod, gpus)
        taken.append(k)
        if c.cpu_free[0] < least_cpu or c.memory_free[0] < least_memory:
            break
    return taken


@dataclass(frozen=True)
class Plan:
    """Nodes chosen for a set of pods: one (type, pod indices) per node, and pods no type can hold."""

    nodes: tuple[tuple[InstanceType, tuple[int, ...]], ...]
    unplaceable: tuple[int, ...]

    def usd_per_hour(self, spot: bool = False) -> float:
        return sum(t.price(spot) for t, _ in self.nodes)


def plan(pods: Sequence[Sequence[PodRequest]], value: Sequence[float], types: Sequence[InstanceType],
         spot: bool = False, window: int = FILL_WINDOW, rescan_every: int = RESCAN_EVERY,
         order: Sequence[int] | None = None) -> Plan:
    """Greedy variable-size bin packing of ``pods`` onto ``types`` (see the module docstring).
    ``value[i]`` is pod i's demand in $/h (its cheapest dominant-share price). Every type is tried
    for the first node and then every ``rescan_every`` nodes; in between only the ``SHORTLIST`` types
    that did best at the last full scan (the remaining pods change slowly, largest first). ``order``
    replaces the largest-value-first order in which pods are offered."""
    remaining = list(order) if order is not None else sorted(range(len(pods)), key=lambda i: (-value[i], i))
    nodes: list[tuple[InstanceType, tuple[int, ...]]] = []
    unplaceable: list[int] = []
    shortlist: list[InstanceType] = []
    since_scan = rescan_every
    while remaining:
        full = since_scan >= rescan_every or not shortlist
        scored: list[tuple[float, InstanceType, list[int]]] = []
        batch = [pods[i] for i in remaining[:window]]
        for t in types if full else shortlist:
            taken = fill(t, batch, window)
            if not taken:
                continue
            worth = sum(value[remaining[k]] for k in taken)
            scored.append((t.price(spot) / worth if worth > 0 else math.inf, t, taken))
        if not scored and not full:
            since_scan = rescan_every
            continue
        if not scored:
            unplaceable.append(remaining.pop(0))
            continue
        scored.sort(key=lambda s: (s[0], s[1].name))
        if full:
            shortlist, since_scan = [s[1] for s in scored[:SHORTLIST]], 0
        since_scan += 1
        _, t, taken = scored[0]
        chosen = {remaining[k] for k in taken}
        nodes.append((t, tuple(sorted(chosen))))
        remaining = [i for i in remaining if i not in chosen]
    return Plan(tuple(downsize(nodes, pods, types, spot)), tuple(unplaceable))


def downsize(nodes: Sequence[tuple[InstanceType, tuple[int, ...]]], pods: Sequence[Sequence[PodRequest]],
             types: Sequence[InstanceType], spot: bool = False) -> list[tuple[InstanceType, tuple[int, ...]]]:
    """Each planned node replaced by the cheapest type that still takes all of its pods."""
    by_price = sorted(types, key=lambda t: (t.price(spot), t.name))
    out = []
    for t, members in nodes:
        batch = [pods[i] for i in members]
        for cheaper in by_price:
            if cheaper.price(spot) >= t.price(spot):
                break
            if len(fill(cheaper, batch, len(batch))) == len(batch):
                t = cheaper
                break
        out.append((t, members))
    return out


def peak_set(arrivals: np.ndarray, departures: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Indices of the pods alive when their summed ``weight`` peaks (alive on [arrival, departure);
    a pod whose departure is not after its arrival is alive for one instant)."""
    if len(arrivals) == 0:
        return np.zeros(0, dtype=np.int64)
    dep = np.maximum(departures, arrivals + 1e-9)
    times = np.concatenate([arrivals, dep])
    delta = np.concatenate([weight, -weight])
    kind = np.concatenate([np.ones(len(arrivals)), np.zeros(len(dep))])  # departures first at a tie
    order = np.lexsort((kind, times))
    level = np.cumsum(delta[order])
    at = times[order][int(np.argmax(level))]
    return np.flatnonzero((arrivals <= at) & (dep > at))


@dataclass(frozen=True)
class Replay:
    """A replay's outcome: pods that fit nowhere, and the fleet's $/h at its largest and on average."""

    failed: tuple[int, ...]
    peak_usd_per_hour: float
    mean_usd_per_hour: float
    node_types_at_peak: dict[str, int]


def events(arrivals: np.ndarray, departures: np.ndarray) -> list[tuple[float, int, int]]:
    """(time, 0 = departure / 1 = arrival, pod), departures first at equal times."""
    out = [(float(a), 1, i) for i, a in enumerate(arrivals)]
    out += [(float(d), 0, i) for i, d in enumerate(departures) if math.isfinite(d)]
    out.sort()
    return out


def replay(fleet: Fleet, pods: Sequence[Sequence[PodRequest] | None], arrivals: np.ndarray, departures: np.ndarray,
           grow: Callable[[int, Sequence[PodRequest]], tuple[InstanceType, bool, PodRequest] | None] | None = None,
           remove_empty: bool = False) -> Replay:
    """Run the pods through ``fleet`` in time order. A pod that fits nowhere gets a new node of
    ``grow(i, alternatives)`` -> (type, spot, alternative) when given, else it fails; ``remove_empty``
    closes a node when its last pod leaves. A pod is a list of alternatives (see ``Fleet.place_any``);
    ``None`` pods (no size) fail."""
    placed: dict[int, tuple[int, tuple[int, ...], PodRequest]] = {}
    failed: list[int] = []
    peak, peak_types = fleet.usd_per_hour(), fleet.node_types()
    area, last, start = 0.0, None, None
    for time, kind, i in events(arrivals, departures):
        if last is None:
            start = time
        else:
            area += fleet.usd_per_hour() * (time - last)
        last = time
        alternatives = pods[i]
        if kind == 0:
            if i in placed:
                node, gpus, pod = placed.pop(i)
                fleet.release(node, pod, gpus)
                if remove_empty and fleet.pods[node] == 0:
                    fleet.close(node)
            continue
        if not alternatives:
            failed.append(i)
            continue
        node, gpus, pod = fleet.place_any(alternatives)
        if node < 0 and grow is not None:
            chosen = grow(i, alternatives)
            if chosen is not None:
                pod = chosen[2]
                slot = fleet.open(chosen[0], chosen[1])
                gpus = choose_gpus(fleet.cluster, slot, pod)
                if feasible(fleet.cluster, pod)[slot] and len(gpus) == pod.num_gpu:
                    fleet.cluster.place(slot, pod, gpus)
                    fleet.pods[slot] += 1
                    node = slot
                else:
                    fleet.close(slot)
        if node < 0:
            failed.append(i)
            continue
        placed[i] = (node, gpus, pod)
        if fleet.usd_per_hour() > peak:
            peak, peak_types = fleet.usd_per_hour(), fleet.node_types()
    span = (last - start) if last is not None and start is not None else 0.0
    mean = area / span if span > 0 else peak
    return Replay(tuple(failed), peak, mean, peak_types)
