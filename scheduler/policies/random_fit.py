"""Random: a uniformly random feasible node, and a random GPU with room for GPU-sharing pods."""

from __future__ import annotations

import numpy as np

from gpufleet.scheduler.model import Cluster, PodRequest
from gpufleet.scheduler.policies.base import INFEASIBLE, NodeScores, feasible

NAME = "random"


class RandomPolicy:
    name = NAME

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def score(self, cluster: Cluster, pod: PodRequest) -> NodeScores:
        ok = feasible(cluster, pod)
        score = np.where(ok, 0.0, INFEASIBLE)
        share_gpu = np.full(len(cluster), -1, dtype=np.int32)
        candidates = np.flatnonzero(ok)
        if len(candidates):
            n = int(self.rng.choice(candidates))
            score[n] = 100.0
            if pod.is_gpu_share:
                room = np.flatnonzero(cluster.gpu_free[n] >= pod.gpu_milli)
                share_gpu[n] = int(self.rng.choice(room))
        return NodeScores(score, share_gpu)
