"""Fleet recommendation: right-size every workload, pack the peak demand onto the cheapest instance-type
mix, and compare with Karpenter's rule on the requests.

1. Each workload is sized on every GPU model that holds it (``sizing.options``), cheapest first; a
   node of any of those models can take it at that model's size.
2. The pods alive at peak concurrent GPU demand (requests, trace times) are packed by ``fleet.plan``
   onto the catalog (on-demand and spot pods apart), offered in each of ``ORDERS`` (the cheapest mix
   wins; see ``_plan_peak``); the scheduler's policy then places them on that
   mix, largest first (as consolidation would repack them), and pods it cannot place are planned
   again and added (``repair_rounds``).
3. Shortfall: the peak pods that still fit nowhere on the mix, plus pods no catalog GPU holds. For
   information, ``trace_shortfall`` replays the whole trace on the mix as a fixed fleet.
4. Baseline: Karpenter's documented rule on the same pods at their requests (no measured memory), on
   demand, whole catalog, replayed in time order on the same packing core: a pod that fits nowhere
   gets a new node of the cheapest type that holds it; empty nodes are removed. Its $/h is the peak
   the fleet reaches (the capacity it needed); the mean over time is kept too.
The recommended mix is the capacity for the peak with pods packed as planned: keeping to it over time
needs consolidation (Karpenter's, or the controller's). No I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from gpufleet.autoscaler.cost.catalog import Catalog, InstanceType, cheapest
from gpufleet.autoscaler.cost.fleet import DEFAULT_POLICY, Fleet, Replay, peak_set, plan, replay
from gpufleet.autoscaler.cost.sizing import (
    SizingPolicy,
    Workload,
    WorkloadRecommendation,
    options,
    recommend_workload,
)
from gpufleet.core import names
from gpufleet.scheduler.model import PodRequest

#: Orders in which the planner is offered the peak pods (largest $ first, most GPU, most CPU); the
#: cheapest resulting mix wins. Peaks above MULTI_START_MAX pods use the first only (time).
ORDERS = ("value", "gpu", "cpu")
MULTI_START_MAX = 2000


@dataclass(frozen=True)
class FleetOptions:
    """policy: scheduler placement policy for packing and replays (``bestfit``); repair_rounds: times the
    peak pods the scheduler could not place on the plan are planned again (2)."""

    policy: str = DEFAULT_POLICY
    repair_rounds: int = 2
    sizing: SizingPolicy = field(default_factory=SizingPolicy)


@dataclass(frozen=True)
class FleetRecommendation:
    pods: int
    peak_pods: int
    recommended_usd_per_hour: float
    node_types: dict[str, int]
    shortfall: tuple[int, ...]
    trace_shortfall: tuple[int, ...]  # pods that fit nowhere when the whole trace runs on the fixed mix
    baseline_usd_per_hour: float
    baseline_mean_usd_per_hour: float
    baseline_node_types: dict[str, int]
    baseline_shortfall: tuple[int, ...]
    nodepools: tuple[dict, ...]
    workloads: tuple[WorkloadRecommendation, ...]


def _width(catalog: Catalog) -> int:
    return max([t.gpu_count for t in catalog.types] + [1])


def sized_requests(workloads: Sequence[Workload], catalog: Catalog, sizing: SizingPolicy
                   ) -> tuple[list[tuple[PodRequest, ...]], list[float], list[bool]]:
    """Per workload: its requests at the recommended size on every GPU model that holds it (cheapest
    first; empty when none does), its cheapest $/h, and whether it runs on spot."""
    requests, values, spot = [], [], []
    for w in workloads:
        found = options(w, catalog, sizing, w.interruptible)
        alternatives = tuple(PodRequest(cpu_milli=w.cpu_milli, memory_mib=w.memory_mib, num_gpu=size.num_gpu,
                                        gpu_milli=size.gpu_milli, name=w.name,
                                        gpu_models=(size.gpu_class,) if w.num_gpu else ())
                             for _, size, _ in found)
        requests.append(alternatives[:1] if not w.num_gpu else alternatives)
        values.append(found[0][0] if found else 0.0)
        spot.append(w.interruptible)
    return requests, values, spot


def karpenter_choice(pod: PodRequest, types: Sequence[InstanceType], spot: bool = False) -> InstanceType | None:
    """Karpenter's launch rule: the cheapest type whose GPU count, CPU, memory and GPU model hold the
    pod's request (requests only: Karpenter never sees measured GPU memory)."""
    return cheapest((t for t in types
                     if t.gpu_count >= max(pod.num_gpu, 1) and t.cpu_milli >= pod.cpu_milli
                     and t.memory_mib >= pod.memory_mib and (not pod.gpu_models or t.gpu_class in pod.gpu_models)),
                    spot)


def launch_rule(catalog: Catalog):
    """Karpenter's rule as a replay's ``grow``: the cheapest catalog type that holds the pod's request."""
    types = [t for t in catalog.types if t.gpu_count >= 1]
    cache: dict[tuple, InstanceType | None] = {}

    def grow(i: int, alternatives: Sequence[PodRequest]) -> tuple[InstanceType, bool, PodRequest] | None:
        pod = alternatives[0]
        key = (pod.cpu_milli, pod.memory_mib, pod.num_gpu, pod.gpu_models)
        if key not in cache:
            cache[key] = karpenter_choice(pod, types)
        return (cache[key], False, pod) if cache[key] is not None else None

    return grow


def peak_pods(workloads: Sequence[Workload], arrivals: np.ndarray, departures: np.ndarray) -> np.ndarray:
    """The pods alive at peak concurrent GPU demand (requested GPUs; CPU-only pods count as 1 milli),
    in arrival order."""
    demand = np.array([max(w.num_gpu * w.gpu_milli, 1) for w in workloads], dtype=float)
    alive = peak_set(arrivals, departures, demand)
    return alive[np.lexsort((alive, arrivals[alive]))]


def pack(fleet: Fleet, pods: Sequence[int], requests) -> list[int]:
    """Place ``pods`` in order on ``fleet`` with the scheduler's policy; the ones that fit nowhere."""
    return [int(i) for i in pods if not requests[i] or fleet.place_any(requests[i])[0] < 0]


def recommend_fleet(workloads: Sequence[Workload], arrivals: np.ndarray, departures: np.ndarray,
                    catalog: Catalog, opts: FleetOptions = FleetOptions(),
                    baseline_requests: Sequence[PodRequest] | None = None) -> FleetRecommendation:
    """Choose the instance-type mix for ``workloads`` (see the module docstring).
    ``baseline_requests`` (default: the workloads' own requests) are what Karpenter sees."""
    requests, values, spot = sized_requests(workloads, catalog, opts.sizing)
    at_peak = peak_pods(workloads, arrivals, departures)
    at_peak = np.array(sorted(at_peak, key=lambda i: (-values[i], i)), dtype=np.int64)  # largest first
    orders = ORDERS if len(at_peak) <= MULTI_START_MAX else ORDERS[:1]
    best: tuple[int, float, list[tuple[InstanceType, bool]]] | None = None
    for order in orders:
        mix = _plan_peak(at_peak, requests, values, spot, catalog, opts, order)
        failed = pack(_fleet(mix, catalog, opts.policy), at_peak, requests)
        key = (len(failed), sum(t.price(s) for t, s in mix))
        if best is None or key < best[:2]:
            best = (*key, mix)
    mix = best[2]
    fleet = _fleet(mix, catalog, opts.policy)
    failed = pack(fleet, at_peak, requests)
    whole_trace = replay(_fleet(mix, catalog, opts.policy), requests, arrivals, departures).failed
    base = baseline(baseline_requests or [_request(w, catalog) for w in workloads], arrivals, departures, catalog,
                    opts.policy)
    recs = tuple(recommend_workload(w, catalog, opts.sizing) for w in workloads)
    return FleetRecommendation(
        pods=len(workloads), peak_pods=len(at_peak), recommended_usd_per_hour=fleet.usd_per_hour(),
        node_types=fleet.node_types(), shortfall=tuple(sorted(failed)), trace_shortfall=whole_trace,
        baseline_usd_per_hour=base.peak_usd_per_hour, baseline_mean_usd_per_hour=base.mean_usd_per_hour,
        baseline_node_types=base.node_types_at_peak, baseline_shortfall=base.failed,
        nodepools=nodepool_patches(fleet.node_types()), workloads=recs)


def _plan_peak(at_peak: np.ndarray, requests, values, spot, catalog: Catalog, opts: FleetOptions,
               order: str) -> list[tuple[InstanceType, bool]]:
    """Plan the peak pods (offered in ``order``), place them with the scheduler's policy and plan the
    ones it could not place again, up to ``repair_rounds`` times; the mix."""
    gpu_types = [t for t in catalog.types if t.gpu_count >= 1]
    mix: list[tuple[InstanceType, bool]] = []
    todo = [int(i) for i in at_peak if requests[i]]
    for _ in range(opts.repair_rounds + 1):
        for capacity in (False, True):
            group = [i for i in todo if spot[i] == capacity]
            keys = [_order_key(order, requests[i][0], values[i], i) for i in group]
            chosen = plan([requests[i] for i in group], [values[i] for i in group], gpu_types, capacity,
                          order=sorted(range(len(group)), key=keys.__getitem__))
            mix += [(t, capacity) for t, _ in chosen.nodes]
        todo = [i for i in pack(_fleet(mix, catalog, opts.policy), at_peak, requests) if requests[i]]
        if not todo:
            break
    return mix


def _order_key(order: str, pod: PodRequest, value: float, i: int) -> tuple:
    if order == "gpu":
        return (-pod.total_gpu_milli, -value, i)
    if order == "cpu":
        return (-pod.cpu_milli, -value, i)
    return (-value, i)


def _fleet(mix: Sequence[tuple[InstanceType, bool]], catalog: Catalog, policy: str) -> Fleet:
    fleet = Fleet(catalog.gpu_classes, width=_width(catalog), policy=policy)
    for t, capacity in mix:
        fleet.open(t, capacity)
    return fleet


def _request(w: Workload, catalog: Catalog) -> PodRequest:
    """The workload's request as Karpenter sees it; allowed GPU models become their classes."""
    return PodRequest(cpu_milli=w.cpu_milli, memory_mib=w.memory_mib, num_gpu=w.num_gpu, gpu_milli=w.gpu_milli,
                      gpu_models=catalog.classes_of(w.gpu_models) if w.gpu_models else (), name=w.name)


def baseline(requests: Sequence[PodRequest], arrivals: np.ndarray, departures: np.ndarray, catalog: Catalog,
             policy: str = DEFAULT_POLICY) -> Replay:
    """Karpenter's rule on ``requests``, on demand over the whole catalog (see the module docstring)."""
    fleet = Fleet(catalog.gpu_classes, width=_width(catalog), policy=policy)
    grow = launch_rule(catalog)
    return replay(fleet, [(r,) for r in requests], arrivals, departures, grow=grow, remove_empty=True)


def nodepool_patches(mix: dict[str, int]) -> tuple[dict, ...]:
    """A Karpenter NodePool requirements patch restricting the pool to the recommended instance types and
    capacity types (weight 100, tried before other pools); the GitOps issue commits it. None for an empty
    mix (Karpenter refuses ``In`` with no values)."""
    if not mix:
        return ()
    types = sorted({k.partition(":")[0] for k in mix})
    capacity = sorted({"spot" if k.endswith(":spot") else "on-demand" for k in mix})
    return ({"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": "gpufleet-recommended"},
             "spec": {"weight": 100, "template": {"spec": {"requirements": [
                 {"key": names.INSTANCE_TYPE_LABEL, "operator": "In", "values": types},
                 {"key": names.CAPACITY_TYPE_LABEL, "operator": "In", "values": capacity},
             ]}}}},)


def savings(rec: FleetRecommendation) -> float:
    """Fraction of the baseline's $/h the recommendation saves (nan without a baseline)."""
    if rec.baseline_usd_per_hour <= 0:
        return math.nan
    return 1 - rec.recommended_usd_per_hour / rec.baseline_usd_per_hour
