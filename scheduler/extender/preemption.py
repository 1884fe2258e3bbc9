"""Refining kube-scheduler's preemption victims with the per-GPU view it does not have.

kube-scheduler counts ``nvidia.com/gpu`` per node, so for a pod that needs one whole GPU it may
propose evicting GPU-sharing pods spread over several GPUs. Per node, this keeps the proposal unless
a strict, non-empty subset of the victims already frees what the pod needs on real GPUs, in
``nvidia.com/gpu`` units as kube-scheduler counts them, and in CPU and memory; then it returns the
smallest such subset, earliest victims first. Victims the model does not know,
or proposals longer than ``MAX_SEARCH``, are kept as proposed. Callers hold the state's lock. No I/O.
"""

from __future__ import annotations

from itertools import combinations

from gpufleet.scheduler.extender.ledger import Ledger
from gpufleet.scheduler.extender.wire import Victims
from gpufleet.scheduler.model import Cluster, PodRequest

MAX_SEARCH = 10  # 2**10 subsets at most per node


def refine(cluster: Cluster | None, ledger: Ledger, node: str, request: PodRequest, mask: int,
           victims: Victims) -> Victims:
    if cluster is None or not victims.uids or len(victims.uids) > MAX_SEARCH:
        return victims
    row = cluster.index.get(node)
    if row is None:
        return victims
    freed = []
    for uid in victims.uids:
        p = ledger.get(uid)
        taken = ledger.charge_of(uid)
        if p is None or taken is None or p.node != node:
            return victims
        freed.append((p.request.cpu_milli, p.request.memory_mib, p.request.num_gpu,
                      dict(zip(taken.gpus, taken.amounts))))
    model = int(cluster.gpu_model[row])
    if mask and (model < 0 or not (mask >> model) & 1):
        return victims
    base_cpu = int(cluster.cpu_free[row])
    base_mem = int(cluster.memory_free[row])
    base_gpu = [int(g) for g in cluster.gpu_free[row, : int(cluster.gpu_count[row])]]
    # Free nvidia.com/gpu units as kube-scheduler counts them (a GPU-sharing pod holds one unit).
    base_units = int(cluster.gpu_count[row]) - sum(p.request.num_gpu for p in ledger.on_node(node))
    for size in range(1, len(victims.uids)):
        for subset in combinations(range(len(victims.uids)), size):
            if _fits(request, base_cpu, base_mem, base_units, base_gpu, [freed[i] for i in subset]):
                return Victims(tuple(victims.uids[i] for i in subset), victims.pdb_violations)
    return victims


def _fits(request: PodRequest, cpu: int, mem: int, units: int, gpu: list[int], freed: list) -> bool:
    gpu = list(gpu)
    for c, m, n, amounts in freed:
        cpu += c
        mem += m
        units += n
        for g, amount in amounts.items():
            if g < len(gpu):
                gpu[g] += amount
    if cpu < request.cpu_milli or mem < request.memory_mib or units < request.num_gpu:
        return False
    return sum(1 for g in gpu if g >= request.gpu_milli) >= request.num_gpu
