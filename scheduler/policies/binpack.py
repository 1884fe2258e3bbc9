"""Binpack: the node left with the least free CPU and GPU after placement (the extender's ``binpack``).

The paper's BestFit criterion with its normalisers, unquantised and not re-normalised, so the raw
score means the same on any subset of nodes (the extender scores only kube-scheduler's candidates).
"""

from __future__ import annotations

import numpy as np

from gpufleet.scheduler.model import Cluster, PodRequest
from gpufleet.scheduler.policies.base import NodeScores, feasible, shifted
from gpufleet.scheduler.policies.bestfit import MAX_CPU_MILLI, MAX_GPU_MILLI

NAME = "binpack"


def raw_scores(gpu_free: np.ndarray, cpu_free: np.ndarray, pod: PodRequest) -> np.ndarray:
    """float64 per row: minus the weighted CPU and GPU left over (higher is tighter)."""
    left_gpu = gpu_free.sum(axis=1, dtype=np.int64) - pod.total_gpu_milli
    left_cpu = cpu_free - pod.cpu_milli
    return -(0.5 * left_cpu / MAX_CPU_MILLI + 0.5 * left_gpu / MAX_GPU_MILLI)


class BinpackPolicy:
    name = NAME

    def score(self, cluster: Cluster, pod: PodRequest) -> NodeScores:
        return shifted(raw_scores(cluster.gpu_free, cluster.cpu_free, pod), feasible(cluster, pod))
