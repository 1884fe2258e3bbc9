"""GpuClustering: keep pods of the same GPU class (share, 1-GPU, 2-GPU, ...) together, fuller nodes first."""

from __future__ import annotations

import numpy as np

from gpufleet.scheduler.model import Cluster, PodRequest
from gpufleet.scheduler.policies.base import NodeScores, feasible, masked
from gpufleet.scheduler.policies.bestfit import MAX_GPU_MILLI

NAME = "clustering"


class ClusteringPolicy:
    """Tiers: only this class on the node (75..100), this class among others (50..75), an empty node
    (25..50), other classes only (0..25); within a tier, 25 * used / 8000 (integer division)."""

    name = NAME

    def score(self, cluster: Cluster, pod: PodRequest) -> NodeScores:
        ok = feasible(cluster, pod)
        if pod.num_gpu == 0:
            return masked(np.zeros(len(cluster)), ok)
        classes = cluster.pod_classes
        present = classes > 0
        kinds = present.sum(axis=1)
        mine = present[:, pod.pod_class]
        fullness = 100 // 4 * (MAX_GPU_MILLI - cluster.gpu_free.sum(axis=1, dtype=np.int64)) // MAX_GPU_MILLI
        tier = np.where(mine, np.where(kinds == 1, 75, 50), np.where(kinds == 0, 25, 0))
        return masked((fullness + tier).astype(np.float64), ok)
