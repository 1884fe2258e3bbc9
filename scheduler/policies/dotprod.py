"""DotProd (Tetris): prefer the node whose free resources align least with the request."""

from __future__ import annotations

import numpy as np

from gpufleet.scheduler.model import Cluster, PodRequest
from gpufleet.scheduler.policies.base import NodeScores, feasible, masked
from gpufleet.scheduler.policies.bestfit import MAX_CPU_MILLI, MAX_GPU_MILLI

NAME = "dotprod"


class DotProductPolicy:
    """score = 100 * (1 - <free/max, request/max> / 2) over [CPU, total GPU], truncated."""

    name = NAME

    def score(self, cluster: Cluster, pod: PodRequest) -> NodeScores:
        gpu_left = cluster.gpu_free.sum(axis=1, dtype=np.int64)
        dot = (cluster.cpu_free / MAX_CPU_MILLI * (pod.cpu_milli / MAX_CPU_MILLI)
               + gpu_left / MAX_GPU_MILLI * (pod.total_gpu_milli / MAX_GPU_MILLI)) / 2
        return masked(np.trunc(100 * (1 - dot)), feasible(cluster, pod))
