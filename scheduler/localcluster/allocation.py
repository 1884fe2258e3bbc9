"""How well a replay used the cluster: GPUs allocated, GPUs left free that no waiting pod could use,
fragmentation under the trace's workload mix, and the hourly price of the nodes that hold pods.

The pods are rebuilt into the simulator's array model (``gpufleet.scheduler.model``) in replay order, each on
the GPUs its ``gpufleet.io/gpu-ids`` names, or, without ids (kube-scheduler's own binder), on the
GPUs the policies would choose (``choose_gpus``). Since kube-scheduler takes pods in creation order
and a pod that fits nowhere fits nowhere later (arrival only), the same pass gives the curves
against arrived demand, like the simulator's. Prices come from the catalog the extender uses; a
node type the catalog lacks (the openb trace's Alibaba models) is priced at the median $/GPU-hour
of the cluster's catalogued nodes and counted as estimated. No I/O here.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from gpufleet.core.pricing import PriceCatalog
from gpufleet.scheduler import kernels
from gpufleet.scheduler.localcluster.gpuids import parse_ids
from gpufleet.scheduler.localcluster.nodes import NodeSpec
from gpufleet.scheduler.localcluster.tracepods import ReplayPod, model_nodes
from gpufleet.scheduler.model import GPU_MILLI, Cluster, ModelError, PodRequest
from gpufleet.scheduler.policies import choose_gpus
from gpufleet.scheduler.simulator import discretise
from gpufleet.scheduler.workload import WorkloadMix


@dataclass(frozen=True)
class Placed:
    """Where one pod of the replay went: ``node`` empty when it was not bound."""

    pod: ReplayPod
    node: str
    gpu_ids: str | None = None


@dataclass(frozen=True)
class Allocation:
    """The end state of a replay and its curves against arrived GPU demand."""

    nodes: int
    gpus: int
    pods: int
    bound: int
    gpu_demand_milli: int  # all pods' GPU requests
    allocated_milli: int  # bound pods' GPU requests
    devices_allocated: int  # nvidia.com/gpu of bound pods, kube-scheduler's count
    fragmented_milli: float  # free capacity the workload mix cannot use (FGD's F), at the end
    occupied_nodes: int
    cost_per_hour: float  # USD/h of the nodes holding at least one pod
    estimated_price_nodes: int  # of the occupied nodes, priced at the catalog median
    alloc_at: dict[str, float]  # arrived % -> allocated % of GPU capacity
    frag_at: dict[str, float]  # arrived % -> fragmentation % of GPU capacity
    cost_at: dict[str, float]  # arrived % -> USD/h of occupied nodes

    @property
    def capacity_milli(self) -> int:
        return self.gpus * GPU_MILLI

    @property
    def alloc_pct(self) -> float:
        return 100.0 * self.allocated_milli / self.capacity_milli if self.gpus else 0.0

    @property
    def free_gpus(self) -> float:
        """GPU capacity left unallocated, in GPUs (shares count as fractions)."""
        return (self.capacity_milli - self.allocated_milli) / GPU_MILLI

    @property
    def unmet_gpus(self) -> float:
        """GPU demand of the pods that were not placed, in GPUs."""
        return (self.gpu_demand_milli - self.allocated_milli) / GPU_MILLI

    @property
    def fragmented_gpus(self) -> float:
        return self.fragmented_milli / GPU_MILLI


def node_prices(specs: Sequence[NodeSpec], catalog: PriceCatalog | None = None) -> tuple[np.ndarray, np.ndarray]:
    """USD/h per node, and which of them are estimates (median $/GPU-hour of the catalogued nodes x GPUs)."""
    catalog = catalog or PriceCatalog.default()
    per_gpu = []
    for spec in specs:
        price = catalog.node_price(spec.instance_type, False).per_hour
        if price is not None and spec.gpus:
            per_gpu.append(price / spec.gpus)
    median = statistics.median(per_gpu) if per_gpu else 0.0  # no priced node at all: unknown
    prices = np.zeros(len(specs))
    estimated = np.zeros(len(specs), dtype=bool)
    for i, spec in enumerate(specs):
        spot = spec.capacity_type == "spot"
        price = catalog.node_price(spec.instance_type, spot).per_hour
        if price is None:
            price = median * spec.gpus * (catalog.spot_ratio if spot else 1.0)
            estimated[i] = True
        prices[i] = price
    return prices, estimated


def _gpus_for(cluster: Cluster, row: int, request: PodRequest, ids: tuple[int, ...] | None) -> tuple[int, ...]:
    count = int(cluster.gpu_count[row])
    if ids is not None and len(ids) == request.num_gpu and all(0 <= g < count for g in ids) \
            and all(cluster.gpu_free[row, g] >= request.gpu_milli for g in ids):
        return ids
    return choose_gpus(cluster, row, request)


def allocation(specs: Sequence[NodeSpec], placed: Sequence[Placed], mix: WorkloadMix,
               catalog: PriceCatalog | None = None) -> Allocation:
    """The allocation of ``placed`` (in replay order) on the nodes ``specs``."""
    cluster = Cluster.from_nodes(model_nodes(specs))
    capacity = cluster.total_gpu_milli
    prices, estimated = node_prices(specs, catalog)
    mix_arrays = mix.arrays(cluster)
    frag = kernels.node_fragmentation(cluster.gpu_free, cluster.cpu_free, cluster.gpu_model, mix_arrays)
    occupied = np.zeros(len(specs), dtype=bool)
    arrived = np.zeros(len(placed), dtype=np.int64)
    allocated = np.zeros(len(placed), dtype=np.int64)
    fragmented = np.zeros(len(placed))
    cost = np.zeros(len(placed))
    arrived_total = allocated_total = devices = bound = 0
    cost_total = 0.0
    for i, item in enumerate(placed):
        request = item.pod.request
        arrived_total += request.total_gpu_milli
        row = cluster.index.get(item.node) if item.node else None
        if row is not None:
            gpus = _gpus_for(cluster, row, request, parse_ids(item.gpu_ids)) if request.num_gpu else ()
            try:
                cluster.place(row, request, gpus)
            except ModelError:
                pass  # kube-scheduler bound it where the model has no room (its own accounting differs)
            else:
                kernels.node_fragmentation(cluster.gpu_free, cluster.cpu_free, cluster.gpu_model, mix_arrays,
                                           nodes=np.array([row]), out=frag)
            bound += 1
            allocated_total += request.total_gpu_milli
            devices += request.num_gpu
            if not occupied[row]:
                occupied[row] = True
                cost_total += prices[row]
        arrived[i], allocated[i], fragmented[i], cost[i] = arrived_total, allocated_total, frag.sum(), cost_total
    arrived_pct = arrived / capacity * 100
    return Allocation(
        nodes=len(specs), gpus=capacity // GPU_MILLI, pods=len(placed), bound=bound,
        gpu_demand_milli=int(arrived_total), allocated_milli=int(allocated_total), devices_allocated=devices,
        fragmented_milli=float(frag.sum()), occupied_nodes=int(occupied.sum()), cost_per_hour=float(cost_total),
        estimated_price_nodes=int((occupied & estimated).sum()),
        alloc_at=discretise(arrived_pct, allocated / capacity * 100),
        frag_at=discretise(arrived_pct, fragmented / capacity * 100),
        cost_at=discretise(arrived_pct, cost),
    )


def placements(pods: Sequence[ReplayPod], nodes_by_name: Mapping[str, tuple[str, str | None]], prefix: str) -> list[Placed]:
    """Join the replay's pods with where they went (pod name -> (node, gpu-ids))."""
    result = []
    for pod in pods:
        node, ids = nodes_by_name.get(pod.name(prefix), ("", None))
        result.append(Placed(pod, node, ids))
    return result
