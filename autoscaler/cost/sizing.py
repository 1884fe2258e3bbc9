"""Per-workload right-sizing: the cheapest catalog GPU model and share that hold a workload's measured use.

A workload's need per GPU is its measured p99 GPU memory x (1 + memory headroom) and its p99 activity
x (1 + compute headroom), as a fraction of one GPU. On a model with M GiB per GPU a single-GPU workload
needs ``max(memory / M, compute)`` of a GPU, rounded up to ``step_milli`` (a share, annotation
``gpufleet.io/gpu-milli``) or a whole GPU when that reaches 1000; a multi-GPU workload keeps its GPU
count and needs M >= its memory per GPU. A model whose GPU cannot hold the memory is never chosen.
Activity is not rescaled between GPU models (no speed table): a faster GPU gets no credit, a slower
one no penalty. A workload without measurements keeps its request.

Price of a sized workload on an instance type: the type's $/h x the workload's dominant share of it
(GPU, CPU or memory), the cheapest type of each model; spot prices when ``interruptible``. No I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gpufleet.autoscaler.cost.catalog import Catalog, InstanceType
from gpufleet.core import names

GPU_MILLI = 1000
GPU_MILLI_ANNOTATION = names.GPU_MILLI
INTERRUPTIBLE_ANNOTATION = names.INTERRUPTIBLE


@dataclass(frozen=True)
class Usage:
    """Measured use per GPU over a window: p99 memory in GiB, p99 and mean activity (0..1)."""

    memory_p99_gib: float
    compute_p99: float
    compute_mean: float = 0.0
    window_s: float = 0.0
    samples: int = 0


@dataclass(frozen=True)
class Workload:
    """A pod (or the pods of one owner) with its request and, if measured, its use."""

    name: str
    cpu_milli: int
    memory_mib: int
    num_gpu: int
    gpu_milli: int
    gpu_models: tuple[str, ...] = ()  # catalog GPU models allowed; empty = any
    interruptible: bool = False
    source_gpu_gib: float = 16.0  # GiB per GPU of the GPU it runs on now
    usage: Usage | None = None

    @property
    def share(self) -> float:
        """GPUs held per requested GPU (the milli of a share, 1 for whole GPUs)."""
        return self.gpu_milli / GPU_MILLI if self.num_gpu else 0.0


@dataclass(frozen=True)
class SizingPolicy:
    """memory_headroom / compute_headroom: fractions added to the p99s (default 0.15, as VPA's margin);
    step_milli: share granularity (10); min_milli: smallest share (50); allow_share: False = whole GPUs."""

    memory_headroom: float = 0.15
    compute_headroom: float = 0.15
    step_milli: int = 10
    min_milli: int = 50
    allow_share: bool = True


@dataclass(frozen=True)
class Size:
    """A workload sized for one GPU model: GPUs and milli per GPU (1000 = whole)."""

    gpu_model: str
    num_gpu: int
    gpu_milli: int
    gpu_class: str = ""  # model@MiB: what the share was computed against


@dataclass(frozen=True)
class WorkloadRecommendation:
    """The cheapest size with its evidence; ``usd_per_hour_now`` is None when the current price is unknown."""

    workload: str
    size: Size | None
    instance_type: str
    spot: bool
    usd_per_hour_now: float | None
    usd_per_hour_after: float
    memory_need_gib: float
    compute_need: float
    window_s: float
    samples: int
    reason: str

    def patch(self) -> dict:
        """Pod-template changes: GPU count or share, node GPU model and capacity type."""
        if self.size is None:
            return {}
        annotations = {}
        if self.size.num_gpu == 1 and self.size.gpu_milli < GPU_MILLI:
            annotations[GPU_MILLI_ANNOTATION] = str(self.size.gpu_milli)
        selector = {"karpenter.k8s.aws/instance-gpu-name": self.size.gpu_model,
                    names.CAPACITY_TYPE_LABEL: "spot" if self.spot else "on-demand"}
        return {"metadata": {"annotations": annotations},
                "spec": {"nodeSelector": selector,
                         "resources": {names.GPU_RESOURCE: self.size.num_gpu}}}


def needs(workload: Workload, policy: SizingPolicy) -> tuple[float, float]:
    """(GiB of GPU memory, fraction of a GPU's compute) needed per GPU, headroom included."""
    if workload.num_gpu == 0:
        return 0.0, 0.0
    u = workload.usage
    if u is None:  # nothing measured: the request stands
        return workload.share * workload.source_gpu_gib, workload.share
    return (u.memory_p99_gib * (1 + policy.memory_headroom),
            min(1.0, u.compute_p99 * (1 + policy.compute_headroom)))


def size_on(workload: Workload, model: str, gpu_gib: float, policy: SizingPolicy) -> Size | None:
    """The workload's size on a GPU of ``gpu_gib`` GiB, or None if that GPU cannot hold it. ``model``
    may be a GPU class ("l4@22888"); the size then names both."""
    if workload.num_gpu == 0:
        return Size("", 0, 0)
    gpu_class = model
    memory, compute = needs(workload, policy)
    if memory > gpu_gib:
        return None
    name = model.partition("@")[0]
    if workload.num_gpu > 1 or not policy.allow_share:
        return Size(name, workload.num_gpu, GPU_MILLI, gpu_class)
    if workload.usage is None and memory <= workload.share * gpu_gib:
        milli = workload.gpu_milli  # unmeasured: keep the asked share where it holds the same memory
    else:
        fraction = max(memory / gpu_gib, compute, policy.min_milli / GPU_MILLI)
        milli = math.ceil(round(fraction * GPU_MILLI, 6) / policy.step_milli) * policy.step_milli
    return Size(name, 1, min(GPU_MILLI, milli), gpu_class)


def share_cost(t: InstanceType, cpu_milli: int, memory_mib: int, num_gpu: int, gpu_milli: int,
               spot: bool = False) -> float:
    """$/h of the dominant share this request takes of a node of type ``t`` (inf if it cannot fit)."""
    if num_gpu > t.gpu_count or cpu_milli > t.cpu_milli or memory_mib > t.memory_mib:
        return math.inf
    gpu = num_gpu * gpu_milli / GPU_MILLI / t.gpu_count if t.gpu_count else 0.0
    return t.price(spot) * max(gpu, cpu_milli / max(t.cpu_milli, 1), memory_mib / max(t.memory_mib, 1))


def options(workload: Workload, catalog: Catalog, policy: SizingPolicy,
            spot: bool = False) -> list[tuple[float, Size, InstanceType]]:
    """(share $/h, size, cheapest type) for every allowed GPU class (model and memory) that holds the
    workload, cheapest first."""
    out = []
    for gpu_class in catalog.classes_of(workload.gpu_models):
        types = [t for t in catalog.of_class(gpu_class) if t.gpu_count >= 1 and t.gpu_memory_mib > 0]
        if not types or (workload.num_gpu == 0 and workload.gpu_models):
            continue
        size = size_on(workload, gpu_class, types[0].gpu_memory_gib, policy)
        if size is None:
            continue
        best = min(((share_cost(t, workload.cpu_milli, workload.memory_mib, size.num_gpu, size.gpu_milli, spot),
                     t) for t in types), key=lambda ct: (ct[0], ct[1].name), default=(math.inf, None))
        if best[1] is not None and math.isfinite(best[0]):
            out.append((best[0], size, best[1]))
    out.sort(key=lambda o: (o[0], o[1].gpu_class))
    return out


def recommend_workload(workload: Workload, catalog: Catalog, policy: SizingPolicy = SizingPolicy(),
                       usd_per_hour_now: float | None = None) -> WorkloadRecommendation:
    """The cheapest model and share that hold the workload's measured p99 memory and compute."""
    spot = workload.interruptible
    memory, compute = needs(workload, policy)
    u = workload.usage
    found = options(workload, catalog, policy, spot)
    if not found:
        return WorkloadRecommendation(workload.name, None, "", spot, usd_per_hour_now, math.inf, memory,
                                      compute, u.window_s if u else 0.0, u.samples if u else 0,
                                      "no catalog GPU holds the measured memory")
    cost, size, t = found[0]
    what = f"{size.gpu_milli}m of one {size.gpu_model}" if size.num_gpu == 1 else \
        f"{size.num_gpu} x {size.gpu_model}"
    reason = (f"p99 memory {memory:.1f} GiB and p99 activity {compute:.0%} (headroom included) fit {what}; "
              f"cheapest via {t.name}{' spot' if spot else ''}")
    return WorkloadRecommendation(workload.name, size, t.name, spot, usd_per_hour_now, cost, memory, compute,
                                  u.window_s if u else 0.0, u.samples if u else 0, reason)


def holds(size: Size, t: InstanceType, memory_need_gib: float) -> bool:
    """Whether a node of type ``t`` can hold a workload of this size and memory need at all."""
    return size.num_gpu <= t.gpu_count and (size.num_gpu == 0 or t.gpu_memory_gib >= memory_need_gib)


def exclude_models(catalog: Catalog, models: Sequence[str]) -> Catalog:
    """The catalog without some GPU models (arm-only t4g by default in the fleet planner)."""
    drop = {m.lower() for m in models}
    return Catalog(tuple(t for t in catalog.types if t.gpu_model not in drop))


def needed_rate(catalog: Catalog) -> Callable[[float, float, bool], float | None]:
    """For the ledger's wrong-size split: $/h of the cheapest GPU class that holds ``memory_gib`` and
    ``compute`` (fraction of a GPU): over GPU classes with enough memory per GPU, the fraction
    ``max(memory / M, compute)`` x that class's cheapest $/GPU-hour; None when no class holds it."""
    per_model: dict[str, tuple[float, float, float]] = {}
    for t in catalog.types:
        if t.gpu_count < 1 or t.gpu_memory_mib <= 0:
            continue
        od, sp = t.gpu_hour_price(False), t.gpu_hour_price(True)
        gib, best_od, best_sp = per_model.get(t.gpu_class, (t.gpu_memory_gib, math.inf, math.inf))
        per_model[t.gpu_class] = (gib, min(best_od, od), min(best_sp, sp))

    def rate(memory_gib: float, compute: float, spot: bool) -> float | None:
        best = min((max(memory_gib / gib, compute) * (sp if spot else od)
                    for gib, od, sp in per_model.values() if gib >= memory_gib), default=None)
        return best

    return rate
