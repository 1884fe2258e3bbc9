"""Cost: the node where the pod's hourly cost is lowest (the extender's ``cost``).

Cost in USD/h = the pod's GPUs at the node's $/GPU-hour, plus the GPU capacity the placement strands
(FGD's increase of expected fragmentation, in GPUs) priced at the candidates' mean $/GPU-hour, plus,
for pods that are not interruptible, a penalty on spot nodes of ``interruption_penalty`` mean
GPU-hours per GPU. Nodes without a price are taken at the mean, not as free. Shares use FGD's GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gpufleet.scheduler import kernels
from gpufleet.scheduler.model import GPU_MILLI, Cluster, PodRequest
from gpufleet.scheduler.policies.base import NodeScores, feasible, shifted
from gpufleet.scheduler.policies.fgd import FGDPolicy
from gpufleet.scheduler.workload import MixArrays, WorkloadMix

NAME = "cost"


@dataclass(frozen=True)
class CostOptions:
    """``interruption_penalty``: mean GPU-hours per requested GPU added on spot nodes for pods that are
    not interruptible (default 1.0); ``fragmentation_weight``: multiplier on the stranded capacity's
    cost (default 1.0); ``interruptible``: whether pods without their own flag may run on spot (the
    simulator's trace pods have none; default False)."""

    interruption_penalty: float = 1.0
    fragmentation_weight: float = 1.0
    interruptible: bool = False


def price_per_gpu_hour(price_per_hour: np.ndarray, gpu_count: np.ndarray) -> np.ndarray:
    return price_per_hour / np.maximum(gpu_count, 1)


def fragmentation_delta(gpu_free: np.ndarray, cpu_free: np.ndarray, model: np.ndarray, before: np.ndarray,
                        pod: PodRequest, share: np.ndarray, mix: MixArrays) -> np.ndarray:
    """F_after - F_before (milli-GPU) for placing the pod on each row, the way FGD charges it."""
    after_gpu = gpu_free.copy()
    if pod.is_gpu_share:
        rows = np.flatnonzero(share >= 0)
        after_gpu[rows, share[rows]] -= pod.gpu_milli
    else:
        whole = after_gpu >= GPU_MILLI
        take = whole & (np.cumsum(whole, axis=1) <= pod.num_gpu)
        after_gpu[take] -= GPU_MILLI
    after = kernels.node_fragmentation(np.ascontiguousarray(after_gpu, dtype=np.int32),
                                       cpu_free - pod.cpu_milli, model, mix)
    return after - before


def hourly_cost(price_per_hour: np.ndarray, gpu_count: np.ndarray, spot: np.ndarray, ok: np.ndarray,
                pod: PodRequest, interruptible: bool, delta: np.ndarray, options: CostOptions) -> np.ndarray:
    """USD/h per row of placing ``pod`` there (see the module docstring)."""
    per_gpu = price_per_gpu_hour(price_per_hour, gpu_count)
    priced = per_gpu > 0
    pool = priced & ok if (priced & ok).any() else priced
    mean = float(per_gpu[pool].mean()) if pool.any() else 1.0
    per_gpu = np.where(priced, per_gpu, mean)
    gpus = pod.total_gpu_milli / GPU_MILLI
    cost = gpus * per_gpu + options.fragmentation_weight * (delta / GPU_MILLI) * mean
    if not interruptible:
        cost = cost + spot * (options.interruption_penalty * mean * gpus)
    return cost


class CostPolicy:
    """The cost policy over a whole cluster (the simulator); the extender calls the functions above on
    its candidate rows."""

    name = NAME

    def __init__(self, mix: WorkloadMix, options: CostOptions = CostOptions()) -> None:
        self.options = options
        self._fgd = FGDPolicy(mix)

    def score(self, cluster: Cluster, pod: PodRequest) -> NodeScores:
        ok = feasible(cluster, pod)
        before = self._fgd.fragmentation(cluster)
        mix = self._fgd.mix_arrays(cluster)
        _, share = kernels.fgd_scores(cluster.gpu_free, cluster.cpu_free, cluster.gpu_model, ok, before,
                                      pod.cpu_milli, pod.num_gpu, pod.gpu_milli, mix, False)
        delta = fragmentation_delta(cluster.gpu_free, cluster.cpu_free, cluster.gpu_model, before, pod, share, mix)
        cost = hourly_cost(cluster.price_per_hour, cluster.gpu_count, cluster.spot, ok, pod,
                           self.options.interruptible, delta, self.options)
        return shifted(-cost, ok, share)
