"""Spread: the node left with the most free GPU and CPU, as fractions of its capacity (the extender's
``spread``, kube-scheduler's LeastAllocated); a share goes to the node's most free GPU."""

from __future__ import annotations

import numpy as np

from gpufleet.scheduler.model import GPU_MILLI, Cluster, PodRequest
from gpufleet.scheduler.policies.base import NodeScores, feasible, shifted

NAME = "spread"


def raw_scores(gpu_free: np.ndarray, cpu_free: np.ndarray, gpu_count: np.ndarray, cpu_capacity: np.ndarray,
               pod: PodRequest) -> np.ndarray:
    """float64 per row: the mean of the GPU and CPU fractions left free (higher is emptier)."""
    left_gpu = gpu_free.sum(axis=1, dtype=np.int64) - pod.total_gpu_milli
    left_cpu = cpu_free - pod.cpu_milli
    gpu_cap = np.maximum(gpu_count.astype(np.int64) * GPU_MILLI, 1)
    cpu_cap = np.maximum(cpu_capacity, 1)
    return 0.5 * left_gpu / gpu_cap + 0.5 * left_cpu / cpu_cap


def most_free_gpu(gpu_free: np.ndarray, milli: int) -> np.ndarray:
    """int32 per row: the GPU with the most free capacity if it holds ``milli``, else -1."""
    best = np.argmax(gpu_free, axis=1).astype(np.int32)
    return np.where(gpu_free.max(axis=1, initial=0) >= milli, best, -1).astype(np.int32)


class SpreadPolicy:
    name = NAME

    def score(self, cluster: Cluster, pod: PodRequest) -> NodeScores:
        ok = feasible(cluster, pod)
        raw = raw_scores(cluster.gpu_free, cluster.cpu_free, cluster.gpu_count, cluster.cpu_capacity, pod)
        share = most_free_gpu(cluster.gpu_free, pod.gpu_milli) if pod.is_gpu_share else np.full(len(ok), -1, np.int32)
        return shifted(raw, ok, share)
