"""The expected mix of future requests ("typical pods") that fragmentation is measured against.

Built the way the FGD paper builds it (reference: ``GetTypicalPods``): count pods by request shape
(CPU, per-GPU milli, GPU count, GPU model allow-list; memory does not split shapes), sort by count
descending, keep the most frequent shapes until their cumulative share reaches the popularity threshold
(95%), and renormalise their shares to sum to one. Each kept shape also carries the mean memory of its
pods (``WorkloadMix.memory``), and the mix the share of GPU demand each GPU-model allow-list has over all
the pods, before the cut (``WorkloadMix.model_demand``); only fgd-strand reads those two. No I/O here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from gpufleet.scheduler.model import Cluster, PodRequest

DEFAULT_POPULARITY = 0.95


class PodShape(NamedTuple):
    cpu_milli: int
    gpu_milli: int
    num_gpu: int
    gpu_models: tuple[str, ...]


class MixArrays(NamedTuple):
    """The mix as kernel inputs, with GPU models resolved against one cluster's model table."""

    cpu: np.ndarray  # int64[M]
    milli: np.ndarray  # int32[M]
    num: np.ndarray  # int32[M]
    mask: np.ndarray  # int64[M]
    prob: np.ndarray  # float64[M]
    levels: np.ndarray  # int32[U]: the distinct per-GPU milli values > 0, descending
    level: np.ndarray  # int32[M]: index of each task's milli in ``levels`` (-1 for CPU-only tasks)


@dataclass(frozen=True)
class WorkloadMix:
    """Request shapes and their probabilities (summing to 1). ``memory``: the mean memory (MiB) of each
    shape's pods, or None where the mix carries no memory (a hand-written or default mix).
    ``model_demand``: (GPU-model allow-list, its share of the GPU milli asked for) over *all* the pods the mix
    was built from, model-bound lists only: rare model-bound shapes fall under the popularity cut one by
    one but not together. None: read off the shapes (a hand-written or default mix)."""

    shapes: tuple[PodShape, ...]
    probs: tuple[float, ...]
    memory: tuple[float, ...] | None = None
    model_demand: tuple[tuple[tuple[str, ...], float], ...] | None = None

    def __post_init__(self) -> None:
        if self.memory is not None and len(self.memory) != len(self.shapes):
            raise ValueError(f"memory needs one value per shape ({len(self.shapes)}), got {len(self.memory)}")

    @classmethod
    def from_pods(cls, pods: Iterable[PodRequest], popularity: float = DEFAULT_POPULARITY) -> WorkloadMix:
        """The typical pods of an observed or planned pod list (the paper's rule)."""
        if not 0 < popularity <= 1:
            raise ValueError(f"popularity must be in (0, 1], got {popularity}")
        counts: Counter[PodShape] = Counter()
        memory: Counter[PodShape] = Counter()
        gpu_demand: Counter[tuple[str, ...]] = Counter()
        for p in pods:
            shape = PodShape(p.cpu_milli, p.gpu_milli, p.num_gpu, tuple(sorted(p.gpu_models)))
            counts[shape] += 1
            memory[shape] += p.memory_mib
            gpu_demand[shape.gpu_models] += p.total_gpu_milli
        if not counts:
            raise ValueError("cannot build a workload mix from no pods")
        total = sum(counts.values())
        # Count descending; equal counts in shape order so the mix does not depend on input order.
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        kept: list[tuple[PodShape, int]] = []
        cumulative = 0
        for shape, count in ranked:
            if cumulative >= popularity * total:
                break
            kept.append((shape, count))
            cumulative += count
        all_gpu = sum(gpu_demand.values())
        model_demand = tuple((models, d / all_gpu) for models, d in sorted(gpu_demand.items()) if models and d)
        return cls(shapes=tuple(s for s, _ in kept), probs=tuple(c / cumulative for _, c in kept),
                   memory=tuple(memory[s] / c for s, c in kept), model_demand=model_demand)

    def head(self, count: int) -> WorkloadMix:
        """The ``count`` first shapes (the most frequent, for a learnt mix), probabilities renormalised."""
        total = sum(self.probs[:count])
        return WorkloadMix(self.shapes[:count], tuple(p / total for p in self.probs[:count]),
                           None if self.memory is None else self.memory[:count], self.model_demand)

    @classmethod
    def uniform(cls, shapes: Iterable[PodShape]) -> WorkloadMix:
        shapes = tuple(shapes)
        return cls(shapes=shapes, probs=tuple(1.0 / len(shapes) for _ in shapes))

    def __len__(self) -> int:
        return len(self.shapes)

    def arrays(self, cluster: Cluster) -> MixArrays:
        milli = [s.gpu_milli for s in self.shapes]
        levels = sorted({m for m in milli if m > 0}, reverse=True)
        return MixArrays(
            cpu=np.array([s.cpu_milli for s in self.shapes], dtype=np.int64),
            milli=np.array(milli, dtype=np.int32),
            num=np.array([s.num_gpu for s in self.shapes], dtype=np.int32),
            mask=np.array([cluster.model_mask(s.gpu_models) for s in self.shapes], dtype=np.int64),
            prob=np.array(self.probs, dtype=np.float64),
            levels=np.array(levels, dtype=np.int32),
            level=np.array([levels.index(m) if m > 0 else -1 for m in milli], dtype=np.int32),
        )


#: The mix a learner starts from, until enough GPU pods run to learn one: mostly 1-GPU pods, some shares
#: and gangs (no CPU or memory, which leaves fgd-strand's stranding term off).
DEFAULT_MIX = WorkloadMix(
    shapes=(PodShape(0, 500, 1, ()), PodShape(0, 1000, 1, ()), PodShape(0, 1000, 2, ()),
            PodShape(0, 1000, 4, ()), PodShape(0, 1000, 8, ())),
    probs=(0.2, 0.4, 0.15, 0.15, 0.1),
)


LEARN_MIN_GPU_PODS = 20  # below this many running GPU pods a learner keeps DEFAULT_MIX
LEARN_MAX_SHAPES = 32  # the most frequent shapes a learnt mix keeps (bounds the extender's per-pod cost)


def learnt_mix(running: Iterable[PodRequest], min_gpu_pods: int = LEARN_MIN_GPU_PODS,
               max_shapes: int = LEARN_MAX_SHAPES) -> WorkloadMix:
    """The mix learnt from the pods running now (the extender's learner, and the simulator's with
    ``--learn-mix``): typical pods of all of them, CPU-only ones included (they take the CPU and memory
    GPU pods need, as in the paper's mix; the caller leaves out per-node pods such as a DaemonSet's),
    the ``max_shapes`` most frequent kept. ``DEFAULT_MIX`` while fewer than ``min_gpu_pods`` GPU pods run."""
    pods = list(running)
    if sum(1 for p in pods if p.num_gpu > 0) < min_gpu_pods:
        return DEFAULT_MIX
    return WorkloadMix.from_pods(pods).head(max_shapes)
