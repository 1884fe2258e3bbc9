"""GpuPacking: prefer already-shared GPUs, then free GPUs on used nodes, then idle nodes."""

from __future__ import annotations

import numpy as np

from scheduler.model import GPU_MILLI, Cluster, PodRequest
from scheduler.policies.base import NodeScores, feasible, masked

NAME = "packing"


def packing_score(free: np.ndarray, gpus: int, pod: PodRequest) -> int:
    """The paper's three tiers: shared GPUs (50..100), free GPUs on a used node (33..50), idle node (<= 33)."""
    fully_free = int((free[:gpus] == GPU_MILLI).sum())
    if fully_free == gpus:
        return max(100 // 3 - fully_free, fully_free)
    order = sorted(range(gpus), key=lambda i: free[i])  # least free first
    use = [i for i in order if free[i] >= pod.gpu_milli][: pod.num_gpu]
    free_used = sum(1 for i in use if free[i] == GPU_MILLI)
    if free_used:
        return max(100 // 2 - free_used, 100 // 3)
    ratio = sum(int(free[i]) * 100 // GPU_MILLI for i in use)
    return max(100 - ratio // 10, 100 // 2)


class PackingPolicy:
    name = NAME

    def score(self, cluster: Cluster, pod: PodRequest) -> NodeScores:
        ok = feasible(cluster, pod)
        score = np.zeros(len(cluster), dtype=np.float64)
        if pod.num_gpu > 0:  # CPU-only pods score 0 everywhere
            for n in np.flatnonzero(ok):
                score[n] = packing_score(cluster.gpu_free[n], int(cluster.gpu_count[n]), pod)
        return masked(score, ok)
