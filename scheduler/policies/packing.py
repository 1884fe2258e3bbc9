"""GpuPacking: prefer already-shared GPUs, then free GPUs on used nodes, then idle nodes."""

from __future__ import annotations

import numpy as np

from gpufleet.scheduler.model import GPU_MILLI, Cluster, PodRequest
from gpufleet.scheduler.policies.base import NodeScores, feasible, masked

NAME = "packing"


class PackingPolicy:
    """The paper's three tiers, from high to low:

    1. the pod fits on an already-shared GPU: 100 - (free % of the GPU it takes) / 10, at least 50;
    2. it needs fully free GPUs on a node already in use: 50 - free GPUs taken, at least 33;
    3. the node is idle: 33 - its GPU count, at least its GPU count.
    The pod takes the least-free GPUs that fit. CPU-only pods score 0 everywhere.
    """

    name = NAME

    def score(self, cluster: Cluster, pod: PodRequest) -> NodeScores:
        ok = feasible(cluster, pod)
        if pod.num_gpu == 0:
            return masked(np.zeros(len(cluster)), ok)
        free = cluster.gpu_free.astype(np.int64)
        fully_free = (free == GPU_MILLI).sum(axis=1)
        idle_node = np.maximum(100 // 3 - fully_free, fully_free)
        if pod.is_gpu_share:
            # The least-free GPU with room: a shared one if any, else a fully free one.
            tightest = np.where(free >= pod.gpu_milli, free, GPU_MILLI + 1).min(axis=1)
            used_node = np.where(tightest == GPU_MILLI, max(100 // 2 - 1, 100 // 3),
                                 np.maximum(100 - (tightest * 100 // GPU_MILLI) // 10, 100 // 2))
        else:  # whole GPUs: every GPU taken is a fully free one
            used_node = np.full(len(cluster), max(100 // 2 - pod.num_gpu, 100 // 3))
        score = np.where(fully_free == cluster.gpu_count, idle_node, used_node)
        return masked(score.astype(np.float64), ok)
