"""fgd-strand: FGD plus the GPU capacity a placement strands, by CPU now or by share sizes later.

FGD (``fgd.py``) scores a placement by the growth of the node's expected fragment F_n(M) under the
workload mix. Two blind spots cost GPUs on the openb traces once the cluster saturates:

- **CPU stranding.** F_n counts a GPU as lost to a task only when the node's free CPU is below that one
  task's request. A node can keep free GPUs and little CPU long before that test fires: every pod that
  takes CPU faster than the mix does (CPU-only pods, CPU-heavy shares) pushes the node towards idle
  GPUs no future pod can use. S_n = max(0, idle GPU milli - free CPU / rho), with rho the mix's CPU per
  GPU-milli over *all* its pods (CPU-only pods included: they compete for the same CPU), is the idle
  GPU the node's CPU cannot feed at the typical ratio.
- **Look-ahead on shares.** F_n asks whether *one* next task fits; V_n asks what stays free for good
  if tasks keep arriving from the mix and the first that fits takes the GPU (a Bellman recursion per
  GPU, see ``kernels_strand.waste_tables``), so a 320m share goes where it completes a GPU.

delta = dF + lookahead * dV + stranding * dS (all milli-GPU), scored and quantised exactly as FGD:
int(sigmoid(-delta / 1000) * 100), ties to the caller's node order (FGD's implicit packing).
Results, the ideas that lost, and the held-out checks: docs/designs/012-fgd-strand.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gpufleet.scheduler import kernels_strand
from gpufleet.scheduler.model import Cluster, PodRequest
from gpufleet.scheduler.policies.base import NodeScores, feasible
from gpufleet.scheduler.policies.fgd import FGDPolicy
from gpufleet.scheduler.workload import MixArrays, WorkloadMix

NAME = "fgd-strand"


@dataclass(frozen=True)
class StrandOptions:
    """Weights (dimensionless, on milli-GPU terms) of the look-ahead dV and of the stranded GPU dS
    added to FGD's dF, chosen on design seeds (design note), never per trace. ``relief``: the weight of a
    fall of S (0: only growth counts; 1: symmetric, which breaks up the whole nodes multi-GPU pods need)."""

    lookahead: float = 0.25
    stranding: float = 1.0
    relief: float = 0.25


def cpu_per_gpu_milli(mix: WorkloadMix) -> float:
    """rho: the mix's expected CPU milli per expected GPU milli, over all its pods (0 if no GPU demand)."""
    gpu = sum(p * s.num_gpu * s.gpu_milli for s, p in zip(mix.shapes, mix.probs))
    cpu = sum(p * s.cpu_milli for s, p in zip(mix.shapes, mix.probs))
    return cpu / gpu if gpu > 0 else 0.0


class StrandPolicy:
    """FGD's score on dF + lookahead * dV + stranding * dS; F_n is cached per node version as in FGD."""

    name = NAME

    def __init__(self, mix: WorkloadMix, options: StrandOptions = StrandOptions()) -> None:
        self.mix = mix
        self.options = options
        self.rho = cpu_per_gpu_milli(mix)
        self._fgd = FGDPolicy(mix)
        self._tables_for: tuple[str, ...] | None = None
        self._tables: kernels_strand.WasteTables | None = None

    def tables(self, cluster: Cluster) -> kernels_strand.WasteTables:
        """The look-ahead tables for ``cluster``'s GPU models (built once per model list)."""
        key = tuple(cluster.model_names)
        if self._tables is None or self._tables_for != key:
            self._tables = kernels_strand.waste_tables(self._fgd.mix_arrays(cluster), len(key))
            self._tables_for = key
        return self._tables

    def score(self, cluster: Cluster, pod: PodRequest) -> NodeScores:
        before = self._fgd.fragmentation(cluster)
        score, gpu = self.raw_scores(cluster.gpu_free, cluster.cpu_free, cluster.gpu_model, feasible(cluster, pod),
                                     before, pod, self._fgd.mix_arrays(cluster), self.tables(cluster))
        return NodeScores(score, gpu)

    def raw_scores(self, gpu_free: np.ndarray, cpu_free: np.ndarray, model: np.ndarray, ok: np.ndarray,
                   frag_before: np.ndarray, pod: PodRequest, mix: MixArrays,
                   tables: kernels_strand.WasteTables) -> tuple[np.ndarray, np.ndarray]:
        """Scores (0..100, -1 infeasible) and share GPU of any rows of a cluster: the extender's entry,
        which passes only the candidate rows."""
        return kernels_strand.strand_scores(gpu_free, cpu_free, model, ok, frag_before, pod.cpu_milli,
                                            pod.num_gpu, pod.gpu_milli, mix, tables, self.options.lookahead,
                                            self.options.stranding, self.rho, self.options.relief)
