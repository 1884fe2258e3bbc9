"""Numba kernels: feasibility, per-node fragmentation under a workload mix, and FGD's placement scores.

No I/O and no Python objects here: arrays in, arrays out. Each kernel has a plain-Python twin in
``gpufleet.scheduler.reference`` and a differential test. The public wrappers check shapes and dtypes once; the
private ``_kernels`` are compiled with ``cache=True`` so a second process does not pay the JIT again.

Units: CPU millicores, GPU milli (1000 = one GPU). A GPU slot at 0 free is indistinguishable from a
missing GPU, which is what lets nodes with fewer GPUs share one padded ``gpu_free[N, G]`` array.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from gpufleet.scheduler.workload import MixArrays

INFEASIBLE = -1.0


@njit(cache=True, nogil=True)
def _allowed(mask: np.int64, model: np.int32) -> bool:
    if mask == 0:
        return True
    if model < 0:
        return False
    return ((mask >> np.int64(model)) & np.int64(1)) == 1


@njit(cache=True, nogil=True)
def _node_frag(g, cpu_free, model, mix_cpu, mix_milli, mix_num, mix_mask, mix_prob, levels, level, scratch):
    """Expected fragment (milli-GPU) of one node: sum over task types m of p_m * F_n(m).

    Tasks share few distinct per-GPU sizes, so the GPU counts and sums are computed once per size
    (``levels``, descending) in one pass over the node's GPUs sorted descending, not once per task.
    ``scratch`` is int64[3, max(G, U)]: sorted GPUs, then GPUs >= each level, then their sum.
    """
    width = g.shape[0]
    idle = 0
    for i in range(width):  # insertion sort, descending; G is at most a few dozen
        v = g[i]
        idle += v
        j = i
        while j > 0 and scratch[0, j - 1] < v:
            scratch[0, j] = scratch[0, j - 1]
            j -= 1
        scratch[0, j] = v
    if idle == 0:
        return 0.0
    i = 0
    above = 0
    for u in range(levels.shape[0]):
        while i < width and scratch[0, i] >= levels[u]:
            above += scratch[0, i]
            i += 1
        scratch[1, u] = i
        scratch[2, u] = above
    frag = 0.0
    for m in range(mix_prob.shape[0]):
        u = level[m]
        if u < 0 or not _allowed(mix_mask[m], model) or cpu_free < mix_cpu[m] or scratch[1, u] < mix_num[m]:
            frag += mix_prob[m] * idle  # CPU-only task, wrong GPU model, or the task cannot run here
        else:
            frag += mix_prob[m] * (idle - scratch[2, u])  # it fits: GPUs too small for it are fragment
    return frag


def _scratch(gpu_free: np.ndarray, mix: MixArrays) -> np.ndarray:
    return np.empty((3, max(gpu_free.shape[1], len(mix.levels), 1)), dtype=np.int64)


@njit(cache=True, nogil=True)
def _frag_nodes(gpu_free, cpu_free, model, nodes, mix_cpu, mix_milli, mix_num, mix_mask, mix_prob, levels, level,
                scratch, out):
    for k in range(nodes.shape[0]):
        n = nodes[k]
        out[n] = _node_frag(gpu_free[n], cpu_free[n], model[n], mix_cpu, mix_milli, mix_num, mix_mask, mix_prob,
                            levels, level, scratch)


@njit(cache=True, nogil=True)
def _gpu_fits(g, milli, num):
    fits = 0
    for i in range(g.shape[0]):
        if g[i] >= milli:
            fits += 1
    return fits >= num


@njit(cache=True, nogil=True)
def _feasible(gpu_free, cpu_free, mem_free, model, cpu, mem, num, milli, mask, out):
    for n in range(gpu_free.shape[0]):
        ok = cpu_free[n] >= cpu and mem_free[n] >= mem
        if ok and num > 0:
            ok = _allowed(mask, model[n]) and model[n] >= 0 and _gpu_fits(gpu_free[n], milli, num)
        out[n] = ok


@njit(cache=True, nogil=True)
def _quantised(delta_gain, quantise):
    """FGD's score: sigmoid(gain / 1000) * 100, truncated to an integer when ``quantise``."""
    v = 100.0 / (1.0 + math.exp(-delta_gain / 1000.0))
    if quantise:
        return float(int(v))
    return v


@njit(cache=True, nogil=True)
def _fgd_scores(gpu_free, cpu_free, model, feasible, frag_before, cpu, num, milli,
                mix_cpu, mix_milli, mix_num, mix_mask, mix_prob, levels, level, scratch, quantise,
                out_score, out_gpu):
    width = gpu_free.shape[1]
    hyp = np.empty(width, dtype=gpu_free.dtype)
    share = num == 1 and milli < 1000
    for n in range(gpu_free.shape[0]):
        out_gpu[n] = -1
        if not feasible[n]:
            out_score[n] = INFEASIBLE
            continue
        g = gpu_free[n]
        cpu_after = cpu_free[n] - cpu
        if share:
            best = INFEASIBLE
            for i in range(width):
                if g[i] < milli:
                    continue
                seen = False  # GPUs with equal free capacity give equal scores: the first one wins
                for j in range(i):
                    if g[j] == g[i]:
                        seen = True
                        break
                if seen:
                    continue
                for j in range(width):
                    hyp[j] = g[j]
                hyp[i] -= milli
                after = _node_frag(hyp, cpu_after, model[n], mix_cpu, mix_milli, mix_num, mix_mask, mix_prob,
                                   levels, level, scratch)
                s = _quantised(frag_before[n] - after, quantise)
                if s > best:
                    best = s
                    out_gpu[n] = i
            out_score[n] = best
        else:
            for j in range(width):
                hyp[j] = g[j]
            for _ in range(num):  # charge the least sufficient GPU each time (the paper's Sub)
                pick = -1
                for j in range(width):
                    if hyp[j] >= milli and (pick < 0 or hyp[j] < hyp[pick]):
                        pick = j
                hyp[pick] -= milli
            after = _node_frag(hyp, cpu_after, model[n], mix_cpu, mix_milli, mix_num, mix_mask, mix_prob,
                                   levels, level, scratch)
            out_score[n] = _quantised(frag_before[n] - after, quantise)


@njit(cache=True, nogil=True)
def _best_node(score, feasible, gpu_free, cpu_free):
    best = -1
    best_gpu = 0
    for n in range(score.shape[0]):
        if not feasible[n]:
            continue
        gpu = 0
        for g in range(gpu_free.shape[1]):
            gpu += gpu_free[n, g]
        if best < 0 or score[n] > score[best] or (score[n] == score[best] and (
                gpu < best_gpu or (gpu == best_gpu and cpu_free[n] < cpu_free[best]))):
            best, best_gpu = n, gpu
    return best


def _check(gpu_free: np.ndarray, *per_node: np.ndarray) -> None:
    if gpu_free.ndim != 2 or gpu_free.dtype != np.int32:
        raise TypeError(f"gpu_free must be int32[N, G], got {gpu_free.dtype}{list(gpu_free.shape)}")
    for a in per_node:
        if a.shape != (gpu_free.shape[0],):
            raise ValueError(f"per-node array of shape {a.shape} does not match {gpu_free.shape[0]} nodes")


def node_fragmentation(gpu_free: np.ndarray, cpu_free: np.ndarray, model: np.ndarray, mix: MixArrays,
                       nodes: np.ndarray | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """F_n(M) for every node (or only ``nodes``, updating ``out`` in place)."""
    _check(gpu_free, cpu_free, model)
    if out is None:
        out = np.zeros(gpu_free.shape[0], dtype=np.float64)
    if nodes is None:
        nodes = np.arange(gpu_free.shape[0], dtype=np.int64)
    _frag_nodes(gpu_free, cpu_free.astype(np.int64, copy=False), model.astype(np.int32, copy=False),
                nodes.astype(np.int64, copy=False), *mix, _scratch(gpu_free, mix), out)
    return out


def feasible_nodes(gpu_free: np.ndarray, cpu_free: np.ndarray, mem_free: np.ndarray, model: np.ndarray,
                   cpu: int, mem: int, num: int, milli: int, mask: int) -> np.ndarray:
    """bool[N]: nodes with the CPU, memory, GPU model and GPU capacity (on enough GPUs) for the pod."""
    _check(gpu_free, cpu_free, mem_free, model)
    out = np.empty(gpu_free.shape[0], dtype=np.bool_)
    _feasible(gpu_free, cpu_free, mem_free, model, np.int64(cpu), np.int64(mem), np.int32(num),
              np.int32(milli), np.int64(mask), out)
    return out


def fgd_scores(gpu_free: np.ndarray, cpu_free: np.ndarray, model: np.ndarray, feasible: np.ndarray,
               frag_before: np.ndarray, cpu: int, num: int, milli: int, mix: MixArrays,
               quantise: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """FGD score of placing the pod on each node: (score float64[N], share GPU int32[N]).

    score = sigmoid((F_before - F_after) / 1000) * 100 (an integer when ``quantise``), -1 where infeasible.
    For a GPU-sharing pod every GPU with room is tried and the first with the highest score is returned.
    """
    _check(gpu_free, cpu_free, model, feasible, frag_before)
    n = gpu_free.shape[0]
    score = np.empty(n, dtype=np.float64)
    gpu = np.empty(n, dtype=np.int32)
    _fgd_scores(gpu_free, cpu_free, model, feasible, frag_before, np.int64(cpu), np.int32(num),
                np.int32(milli), *mix, _scratch(gpu_free, mix), bool(quantise), score, gpu)
    return score, gpu


def best_node(score: np.ndarray, feasible: np.ndarray, gpu_free: np.ndarray, cpu_free: np.ndarray) -> int:
    """The feasible node with the highest score, -1 when none is feasible. Among equal scores, the one
    kube-scheduler's MostAllocated would pack first: least free GPU (summed), then least free CPU,
    then the first."""
    _check(gpu_free, score, feasible, cpu_free)
    return int(_best_node(score, feasible, gpu_free, cpu_free))
