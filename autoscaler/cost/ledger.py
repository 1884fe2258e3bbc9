"""The waste ledger: every GPU-second of every node, priced, in exactly one of three kinds.

Per sample (a node, a start time, a length, and who held which GPU with what measured use):

- each GPU costs the node's $/GPU-hour x the sample's length (``node_gpu_price``: the annotation
  ``gpufleet.io/price-per-hour`` for the whole node, else the catalog price of its instance type, spot
  or on demand by its capacity-type label);
- a holding of fraction f (a share of g milli holds g/1000, a MIG slice its fraction from
  ``mig_fraction``, a whole GPU 1) costs f of that GPU; holdings over one GPU are scaled down to
  sum to 1 (time-slicing);
- what no pod holds is **unallocated**; a holding whose measured activity is below ``idle_below`` is
  **allocated-idle**, else **allocated-active**. The three add up to the node's GPU cost.
- Allocated cost is also split into **needed** (what the cheapest GPU class that holds the pod's peak
  memory and activity so far, headroom included, would cost for the same time) and **wrong size**
  (the rest).

Times come in as arguments; nothing here reads a clock or does I/O.
"""

from __future__ import annotations

import logging
import math
import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from gpufleet.core import names
from gpufleet.core.names import capacity_type
from gpufleet.core.pricing import PriceCatalog

log = logging.getLogger(__name__)

UNALLOCATED = "unallocated"
ALLOCATED_IDLE = "allocated-idle"
ALLOCATED_ACTIVE = "allocated-active"
KINDS = (UNALLOCATED, ALLOCATED_IDLE, ALLOCATED_ACTIVE)
UNASSIGNED = "unassigned"
GIB = 2.0**30
#: Compute slices per GPU for MIG profiles "<g>g.<memory>gb" (A30: 4; A100, H100, H200, B200: 7).
MIG_SLICES = {"a30": 4}
DEFAULT_MIG_SLICES = 7


@dataclass(frozen=True)
class PodRef:
    """Who holds GPU time: pod, namespace, owner ("Kind/name") and labels (for teams)."""

    name: str
    namespace: str = "default"
    owner: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    container: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class NodeRef:
    """A node as the ledger prices it."""

    name: str
    gpus: int
    gpu_model: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    region: str = ""
    provider_id: str = ""

    @property
    def instance_type(self) -> str:
        return self.labels.get(names.INSTANCE_TYPE_LABEL, "")

    @property
    def spot(self) -> bool:
        return capacity_type(dict(self.labels)) == names.SPOT


@dataclass(frozen=True)
class Holding:
    """One pod's hold on one GPU during a sample: fraction of the GPU, measured activity (the share of
    the whole GPU's time this pod kept it busy, 0..1) and peak GPU memory in bytes (0 when unknown)."""

    pod: PodRef
    gpu: int
    fraction: float
    activity: float
    memory_bytes: float = 0.0


@dataclass(frozen=True)
class GpuPrice:
    """$/GPU-hour of a node and where it came from (annotation, catalog, catalog-spot-estimate, unknown)."""

    usd_per_gpu_hour: float
    spot: bool
    source: str


@dataclass(frozen=True)
class LedgerPolicy:
    """idle_below: activity under this is idle (0.01, gpu-pruner's threshold); team_keys: pod labels
    naming the team, first present wins (``team``, ``cost-center``); headroom on peaks for the needed
    size (0.15)."""

    idle_below: float = 0.01
    team_keys: tuple[str, ...] = ("team", "cost-center")
    headroom: float = 0.15


#: (peak memory GiB, peak activity 0..1, spot) -> $ per hour the cheapest holding GPU class costs, or
#: None when none holds it (then nothing is counted as wrong size).
NeededRate = Callable[[float, float, bool], float | None]


def mig_fraction(profile: str, gpu_model: str = "") -> float:
    """The fraction of a GPU a MIG profile holds, by compute slices ("3g.40gb" on an A100 -> 3/7)."""
    match = re.fullmatch(r"(\d+)g\.\d+gb(?:\+me)?", profile.strip().lower())
    if not match:
        raise ValueError(f"MIG profile {profile!r}: expected <slices>g.<memory>gb, e.g. 1g.10gb")
    slices = MIG_SLICES.get(gpu_model.lower(), DEFAULT_MIG_SLICES)
    return min(1.0, int(match.group(1)) / slices)


def node_gpu_price(node: NodeRef, catalog: PriceCatalog) -> GpuPrice:
    """The node's $/GPU-hour: annotation override, else the catalog by instance and capacity type."""
    spot = node.spot
    gpus = max(node.gpus, 1)
    text = node.annotations.get(names.PRICE_PER_HOUR, "").strip()
    if text:
        try:
            value = float(text)
            if value >= 0 and math.isfinite(value):
                return GpuPrice(value / gpus, spot, "annotation")
        except ValueError:
            pass
        log.warning("node=%s annotation=%s value=%r: not a price >= 0, using the catalog", node.name,
                    names.PRICE_PER_HOUR, text)
    price = catalog.node_price(node.instance_type, spot)
    if price.per_hour is None:
        return GpuPrice(0.0, spot, "unknown")
    return GpuPrice(price.per_hour / gpus, spot, price.source)


def team_of(pod: PodRef, keys: Sequence[str]) -> str:
    labels = dict(pod.labels)
    return next((labels[k] for k in keys if labels.get(k)), UNASSIGNED)


@dataclass
class PodCost:
    """What one pod was charged, by kind, and how much of it was wrong size."""

    pod: PodRef
    team: str
    node: str = ""
    usd: dict[str, float] = field(default_factory=lambda: {ALLOCATED_IDLE: 0.0, ALLOCATED_ACTIVE: 0.0})
    needed_usd: float = 0.0
    wrong_size_usd: float = 0.0
    gpu_seconds: float = 0.0
    peak_memory_bytes: float = 0.0
    peak_activity: float = 0.0

    @property
    def total_usd(self) -> float:
        return sum(self.usd.values())


@dataclass(frozen=True)
class LedgerSnapshot:
    """Totals so far. ``by_node[node][kind]``, ``by_team[team][kind]`` (unallocated under no team),
    ``hourly[(team, hour start)]`` and ``hourly_by_kind[(kind, hour start)]`` in USD; pods by
    ``namespace/name``."""

    by_kind: dict[str, float]
    by_node: dict[str, dict[str, float]]
    by_team: dict[str, dict[str, float]]
    pods: dict[str, PodCost]
    hourly: dict[tuple[str, float], float]
    hourly_by_kind: dict[tuple[str, float], float]
    node_prices: dict[str, tuple[NodeRef, GpuPrice]]
    current: dict[str, tuple[Holding, ...]]  # node -> holdings of its last sample
    gpu_seconds: dict[str, float]  # kind -> GPU-seconds

    @property
    def total_usd(self) -> float:
        return sum(self.by_kind.values())

    @property
    def wrong_size_usd(self) -> float:
        return sum(p.wrong_size_usd for p in self.pods.values())


class Ledger:
    """Accumulates priced GPU time; ``add_sample`` per node and interval, ``snapshot`` to read."""

    def __init__(self, catalog: PriceCatalog, needed_rate: NeededRate | None = None,
                 policy: LedgerPolicy = LedgerPolicy()) -> None:
        self.catalog = catalog
        self.needed_rate = needed_rate
        self.policy = policy
        self._kind: dict[str, float] = {k: 0.0 for k in KINDS}
        self._seconds: dict[str, float] = {k: 0.0 for k in KINDS}
        self._node: dict[str, dict[str, float]] = defaultdict(lambda: {k: 0.0 for k in KINDS})
        self._team: dict[str, dict[str, float]] = defaultdict(lambda: {k: 0.0 for k in KINDS})
        self._pods: dict[str, PodCost] = {}
        self._hourly: dict[tuple[str, float], float] = defaultdict(float)
        self._hourly_kind: dict[tuple[str, float], float] = defaultdict(float)
        self._prices: dict[str, tuple[NodeRef, GpuPrice]] = {}
        self._current: dict[str, tuple[Holding, ...]] = {}

    def add_sample(self, node: NodeRef, start: float, seconds: float, holdings: Sequence[Holding]) -> None:
        """Charge ``seconds`` of ``node``'s GPUs from ``start`` (epoch seconds) to the holdings."""
        if seconds <= 0:
            return
        price = node_gpu_price(node, self.catalog)
        self._prices[node.name] = (node, price)
        self._current[node.name] = tuple(holdings)
        gpu_cost = price.usd_per_gpu_hour * seconds / 3600.0
        hour = math.floor(start / 3600.0) * 3600.0
        per_gpu: dict[int, list[Holding]] = defaultdict(list)
        for h in holdings:
            if 0 <= h.gpu < node.gpus and h.fraction > 0:
                per_gpu[h.gpu].append(h)
        for gpu in range(node.gpus):
            held = per_gpu.get(gpu, [])
            total = sum(h.fraction for h in held)
            scale = 1.0 / total if total > 1.0 else 1.0
            free = max(0.0, 1.0 - total * scale)
            self._charge(node.name, UNALLOCATED, UNALLOCATED, free * gpu_cost, free * seconds, hour)
            for h in held:
                self._charge_pod(node, price, h, h.fraction * scale, gpu_cost, seconds, hour)

    def _charge(self, node: str, team: str, kind: str, usd: float, gpu_seconds: float, hour: float) -> None:
        self._kind[kind] += usd
        self._seconds[kind] += gpu_seconds
        self._node[node][kind] += usd
        self._hourly_kind[(kind, hour)] += usd
        if kind != UNALLOCATED:
            self._team[team][kind] += usd
            self._hourly[(team, hour)] += usd

    def _charge_pod(self, node: NodeRef, price: GpuPrice, h: Holding, fraction: float, gpu_cost: float,
                    seconds: float, hour: float) -> None:
        team = team_of(h.pod, self.policy.team_keys)
        cost = self._pods.get(h.pod.key)
        if cost is None:
            cost = self._pods[h.pod.key] = PodCost(h.pod, team)
        cost.node = node.name
        kind = ALLOCATED_IDLE if h.activity < self.policy.idle_below else ALLOCATED_ACTIVE
        usd = fraction * gpu_cost
        cost.usd[kind] += usd
        cost.gpu_seconds += fraction * seconds
        cost.peak_memory_bytes = max(cost.peak_memory_bytes, h.memory_bytes)
        cost.peak_activity = max(cost.peak_activity, min(1.0, h.activity))
        needed = usd
        if self.needed_rate is not None and cost.peak_memory_bytes > 0:
            rate = self.needed_rate(cost.peak_memory_bytes * (1 + self.policy.headroom) / GIB,
                                    min(1.0, cost.peak_activity * (1 + self.policy.headroom)), price.spot)
            if rate is not None:
                needed = min(usd, rate * seconds / 3600.0)
        cost.needed_usd += needed
        cost.wrong_size_usd += usd - needed
        self._charge(node.name, team, kind, usd, fraction * seconds, hour)

    def snapshot(self) -> LedgerSnapshot:
        return LedgerSnapshot(
            by_kind=dict(self._kind), by_node={k: dict(v) for k, v in self._node.items()},
            by_team={k: dict(v) for k, v in self._team.items()},
            pods={k: PodCost(v.pod, v.team, v.node, dict(v.usd), v.needed_usd, v.wrong_size_usd, v.gpu_seconds,
                             v.peak_memory_bytes, v.peak_activity) for k, v in self._pods.items()},
            hourly=dict(self._hourly), hourly_by_kind=dict(self._hourly_kind), node_prices=dict(self._prices), current=dict(self._current),
            gpu_seconds=dict(self._seconds))
