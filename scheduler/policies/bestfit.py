"""BestFit: prefer the node left with the least free CPU and GPU after placement (min-max normalised)."""

from __future__ import annotations

import numpy as np

from gpufleet.scheduler.model import Cluster, PodRequest
from gpufleet.scheduler.policies.base import NodeScores, feasible, masked

NAME = "bestfit"
MAX_CPU_MILLI = 128_000  # the paper's normalisers: the largest node it models
MAX_GPU_MILLI = 8_000


class BestFitPolicy:
    """score = 100 * (1 - sum_i 0.5 * (free_i - request_i) / max_i), i in {CPU, GPU}, truncated, then
    min-max normalised over feasible nodes with integer arithmetic (as kube-scheduler's NormalizeScore)."""

    name = NAME

    def score(self, cluster: Cluster, pod: PodRequest) -> NodeScores:
        ok = feasible(cluster, pod)
        gpu_left = cluster.gpu_free.sum(axis=1, dtype=np.int64)
        waste = (0.5 * (cluster.cpu_free - pod.cpu_milli) / MAX_CPU_MILLI
                 + 0.5 * (gpu_left - pod.total_gpu_milli) / MAX_GPU_MILLI)
        raw = np.trunc((1.0 - waste) * 100).astype(np.int64)
        return masked(normalise(raw, ok), ok)


def normalise(raw: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Map feasible scores to 0..100 linearly with Go's integer division; all 0 when they are equal."""
    if not ok.any():
        return raw
    lo, hi = raw[ok].min(), raw[ok].max()
    if hi == lo:
        return np.zeros_like(raw)
    return (raw - lo) * 100 // (hi - lo)
