"""fgd-strand: FGD plus the GPU capacity a placement strands, by CPU now or by share sizes later.

FGD (``fgd.py``) scores a placement by the growth of the node's expected fragment F_n(M) under the
workload mix. Two blind spots cost GPUs on the openb traces once the cluster saturates:

- **CPU and memory stranding.** F_n counts a GPU as lost to a task only when the node's free CPU is
  below that one task's request (and ignores memory). A node can keep free GPUs and little CPU long
  before that test fires: every pod that takes CPU faster than the mix does (CPU-only pods, CPU-heavy
  shares) pushes the node towards idle GPUs no future pod can use. S_n = max(0, idle GPU milli -
  min(free CPU / rho, free memory / sigma)), with rho and sigma the mix's CPU and memory per GPU-milli
  over *all* its pods (CPU-only pods included: they compete for the same CPU and memory), is the idle
  GPU the node's CPU or memory cannot feed at the typical ratio. A mix without memory gives sigma = 0,
  which leaves memory out (as rho = 0 leaves CPU out).
- **Look-ahead on shares.** F_n asks whether *one* next task fits; V_n asks what stays free for good
  if tasks keep arriving from the mix and the first that fits takes the GPU (a Bellman recursion per
  GPU, see ``kernels_strand.waste_tables``), so a 320m share goes where it completes a GPU.
- **GPU models.** S pushes CPU-heavy pods to CPU-rich nodes, which may be the models that model-bound
  pods (those with a GPU-model list) can only run on. R charges a pod free to run anywhere the milli of
  model-bound demand its GPU milli displaces on model m: the share of the GPU demand bound to m (over all
  the pods the mix was built from, ``WorkloadMix.model_demand``) over m's share of the free GPU, at most 1
  (``model_reserve``). Demand is also bound by size: a typical shape that fits (GPU count, CPU, memory) the
  nodes of only some models, say an 8-GPU pod with 120 CPUs, counts as bound to those (``fit_bound_demand``);
  only pods that fit every model pay for it (a pod that itself needs big nodes competes on equal terms).

delta = dF + lookahead * dV + stranding * dS + reserve * R (all milli-GPU), scored and quantised as FGD:
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
    fall of S (0: only growth counts; 1: symmetric, which breaks up the whole nodes multi-GPU pods need).
    ``reserve``: the weight of R (1: a displaced milli of bound demand counts as one milli lost)."""

    lookahead: float = 0.25
    stranding: float = 1.0
    relief: float = 0.25
    reserve: float = 1.0


def cpu_per_gpu_milli(mix: WorkloadMix) -> float:
    """rho: the mix's expected CPU milli per expected GPU milli, over all its pods (0 if no GPU demand)."""
    gpu = sum(p * s.num_gpu * s.gpu_milli for s, p in zip(mix.shapes, mix.probs))
    cpu = sum(p * s.cpu_milli for s, p in zip(mix.shapes, mix.probs))
    return cpu / gpu if gpu > 0 else 0.0


def memory_per_gpu_milli(mix: WorkloadMix) -> float:
    """sigma: the mix's expected memory MiB per expected GPU milli, over all its pods (0 if the mix carries
    no memory or no GPU demand)."""
    if mix.memory is None:
        return 0.0
    gpu = sum(p * s.num_gpu * s.gpu_milli for s, p in zip(mix.shapes, mix.probs))
    mem = sum(p * m for m, p in zip(mix.memory, mix.probs))
    return mem / gpu if gpu > 0 else 0.0


def bound_demand(mix: WorkloadMix, cluster: Cluster) -> np.ndarray:
    """float64[models]: the share of the GPU demand bound to each of ``cluster``'s GPU models (a pod allowed
    on k of the cluster's models counts 1/k on each; pods free to run anywhere count nowhere), from the
    mix's ``model_demand`` where it has one (all its pods), else from its shapes."""
    models = len(cluster.model_names)
    if mix.model_demand is not None:
        masks = [cluster.model_mask(allowed) for allowed, _ in mix.model_demand]
        demand = [share for _, share in mix.model_demand]
        total = 1.0
    else:
        arrays = mix.arrays(cluster)
        masks, demand = arrays.mask.tolist(), (arrays.prob * arrays.num * arrays.milli).tolist()
        total = sum(demand)
    share = np.zeros(models)
    if total <= 0:
        return share
    for mask, d in zip(masks, demand):
        allowed = [m for m in range(models) if mask != 0 and (mask >> m) & 1]
        for m in allowed:
            share[m] += d / total / len(allowed)
    return share


def fitting_models(cluster: Cluster, num_gpu: int, cpu_milli: int, memory_mib: float) -> np.ndarray:
    """bool[models]: the GPU models with a node that would hold the request when empty."""
    ok = ((cluster.gpu_model >= 0) & (cluster.gpu_count >= max(num_gpu, 1)) & (cluster.cpu_capacity >= cpu_milli)
          & (cluster.memory_capacity >= memory_mib))
    return np.bincount(cluster.gpu_model[ok], minlength=len(cluster.model_names)) > 0


def fits_every_model(cluster: Cluster, pod: PodRequest) -> bool:
    """Whether ``pod`` fits a node of every GPU model the cluster has (so no model is all it can run on)."""
    return bool((fitting_models(cluster, pod.num_gpu, pod.cpu_milli, pod.memory_mib)
                 == fitting_models(cluster, 1, 0, 0)).all())


def fit_bound_demand(mix: WorkloadMix, cluster: Cluster) -> np.ndarray:
    """float64[models]: the share of the mix's GPU demand bound to each model by size. A shape without a
    model list that fits (GPU count, CPU, its mean memory) the nodes of only k of the cluster's models counts
    1/k on each, as a model list does in ``bound_demand``. Read off the typical shapes, not all the pods: F
    plans for those, and counting rare big pods too held back capacity they never used on the CPU-heavy
    traces (design note, "Demand bound by size")."""
    share = np.zeros(len(cluster.model_names))
    gpu = sum(p * s.num_gpu * s.gpu_milli for s, p in zip(mix.shapes, mix.probs))
    if gpu <= 0:
        return share
    present = fitting_models(cluster, 1, 0, 0)
    memory = mix.memory if mix.memory is not None else (0.0,) * len(mix.shapes)
    for shape, p, mem in zip(mix.shapes, mix.probs, memory):
        if shape.num_gpu == 0 or shape.gpu_models:
            continue
        fits = fitting_models(cluster, shape.num_gpu, shape.cpu_milli, mem)
        if fits.any() and (fits != present).any():
            share[fits] += p * shape.num_gpu * shape.gpu_milli / gpu / fits.sum()
    return share


def model_reserve(bound: np.ndarray, gpu_free: np.ndarray, model: np.ndarray) -> np.ndarray:
    """float64[models + 1]: milli of bound demand displaced per GPU milli taken on each model (index
    model + 1; 0 for no model): min(1, bound share / the model's share of the free GPU milli now)."""
    has = model >= 0
    free = np.bincount(model[has], weights=gpu_free[has].sum(axis=1), minlength=len(bound)).astype(np.float64)
    out = np.zeros(len(bound) + 1)
    if free.sum() > 0:
        share = free / free.sum()
        np.divide(bound, share, out=out[1:], where=share > 0)
    return np.minimum(out, 1.0)


class StrandPolicy:
    """FGD's score on dF + lookahead * dV + stranding * dS + reserve * R; F_n cached per node version as FGD."""

    name = NAME

    def __init__(self, mix: WorkloadMix, options: StrandOptions = StrandOptions()) -> None:
        self.mix = mix
        self.options = options
        self.rho = cpu_per_gpu_milli(mix)
        self.sigma = memory_per_gpu_milli(mix)
        self._fgd = FGDPolicy(mix)
        self._tables_for: tuple[str, ...] | None = None
        self._tables: kernels_strand.WasteTables | None = None
        self._bound: np.ndarray | None = None
        self._fit_bound_for: tuple | None = None
        self._fit_bound: np.ndarray | None = None

    def tables(self, cluster: Cluster) -> kernels_strand.WasteTables:
        """The look-ahead tables for ``cluster``'s GPU models (built once per model list)."""
        key = tuple(cluster.model_names)
        if self._tables is None or self._tables_for != key:
            self._tables = kernels_strand.waste_tables(self._fgd.mix_arrays(cluster), len(key))
            self._bound = bound_demand(self.mix, cluster)
            self._tables_for = key
        return self._tables

    def fit_bound(self, cluster: Cluster) -> np.ndarray:
        """``fit_bound_demand`` for ``cluster``, rebuilt when its models or node capacities change."""
        key = (tuple(cluster.model_names), len(cluster), int(cluster.gpu_count.sum()),
               int(cluster.cpu_capacity.sum()), int(cluster.memory_capacity.sum()))
        if self._fit_bound is None or self._fit_bound_for != key:
            self._fit_bound = fit_bound_demand(self.mix, cluster)
            self._fit_bound_for = key
        return self._fit_bound

    def reserve(self, cluster: Cluster, pod: PodRequest) -> np.ndarray | None:
        """R's weights for ``pod`` (None, i.e. off, for a model-bound pod: its nodes are all of its models).
        Demand bound by size counts only for a pod that fits every model."""
        self.tables(cluster)
        if pod.gpu_models or pod.num_gpu == 0 or self.options.reserve == 0.0:
            return None
        bound = self._bound
        fit_bound = self.fit_bound(cluster)
        if fit_bound.any() and fits_every_model(cluster, pod):
            bound = bound + fit_bound
        if not bound.any():
            return None
        return self.options.reserve * model_reserve(bound, cluster.gpu_free, cluster.gpu_model)

    def score(self, cluster: Cluster, pod: PodRequest) -> NodeScores:
        before = self._fgd.fragmentation(cluster)
        score, gpu = self.raw_scores(cluster.gpu_free, cluster.cpu_free, cluster.gpu_model, feasible(cluster, pod),
                                     before, pod, self._fgd.mix_arrays(cluster), self.tables(cluster),
                                     self.reserve(cluster, pod), cluster.memory_free)
        return NodeScores(score, gpu)

    def raw_scores(self, gpu_free: np.ndarray, cpu_free: np.ndarray, model: np.ndarray, ok: np.ndarray,
                   frag_before: np.ndarray, pod: PodRequest, mix: MixArrays,
                   tables: kernels_strand.WasteTables,
                   reserve: np.ndarray | None = None,
                   memory_free: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Scores (0..100, -1 infeasible) and share GPU of any rows of a cluster: the extender's entry,
        which passes only the candidate rows (``reserve`` from the whole cluster: ``self.reserve``;
        ``memory_free`` of the same rows, None: S without memory)."""
        return kernels_strand.strand_scores(gpu_free, cpu_free, model, ok, frag_before, pod.cpu_milli,
                                            pod.num_gpu, pod.gpu_milli, mix, tables, self.options.lookahead,
                                            self.options.stranding, self.rho, self.options.relief, reserve,
                                            memory_free, pod.memory_mib, self.sigma)
