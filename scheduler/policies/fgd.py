"""FGD: place a pod where the expected fragmentation of the cluster grows least (Weng et al., ATC'23)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gpufleet.scheduler import kernels
from gpufleet.scheduler.model import Cluster, PodRequest
from gpufleet.scheduler.policies.base import NodeScores, feasible
from gpufleet.scheduler.workload import MixArrays, WorkloadMix

NAME = "fgd"


@dataclass(frozen=True)
class FGDOptions:
    """``quantise``: truncate the sigmoid score to an integer 0..100 as the paper's plugin does. Many
    nodes then tie, and the tie-break acts as an implicit packing rule; exact scores do worse."""

    quantise: bool = True


class FGDPolicy:
    """Scores nodes by sigmoid(-delta F / 1000) * 100 against a workload mix.

    Node fragmentation before placement is cached per node and recomputed only for nodes whose
    ``Cluster.version`` changed since the last call.
    """

    name = NAME

    def __init__(self, mix: WorkloadMix, options: FGDOptions = FGDOptions()) -> None:
        self.mix = mix
        self.options = options
        self._cluster_id: int | None = None
        self._versions = np.empty(0, dtype=np.int64)
        self._frag = np.empty(0, dtype=np.float64)
        self._mix_arrays = None

    def fragmentation(self, cluster: Cluster) -> np.ndarray:
        """F_n(M) of every node, refreshed where the node changed."""
        if self._cluster_id != id(cluster) or len(self._frag) != len(cluster):
            self._cluster_id = id(cluster)
            self._mix_arrays = self.mix.arrays(cluster)
            self._versions = cluster.version.copy()
            self._frag = kernels.node_fragmentation(
                cluster.gpu_free, cluster.cpu_free, cluster.gpu_model, self._mix_arrays)
        else:
            stale = np.flatnonzero(cluster.version != self._versions)
            if len(stale):
                kernels.node_fragmentation(cluster.gpu_free, cluster.cpu_free, cluster.gpu_model,
                                           self._mix_arrays, nodes=stale, out=self._frag)
                self._versions[stale] = cluster.version[stale]
        return self._frag

    def mix_arrays(self, cluster: Cluster) -> MixArrays:
        """The mix as arrays against ``cluster``'s GPU models (after ``fragmentation`` saw it)."""
        self.fragmentation(cluster)
        return self._mix_arrays

    def score(self, cluster: Cluster, pod: PodRequest) -> NodeScores:
        before = self.fragmentation(cluster)
        score, gpu = kernels.fgd_scores(
            cluster.gpu_free, cluster.cpu_free, cluster.gpu_model, feasible(cluster, pod), before,
            pod.cpu_milli, pod.num_gpu, pod.gpu_milli, self._mix_arrays, self.options.quantise)
        return NodeScores(score, gpu)
