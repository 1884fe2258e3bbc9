"""Numba kernels: feasibility, per-node fragmentation under a workload mix, and FGD's placement scores.

No I/O and no Python objects here: arrays in, arrays out. Each kernel has a plain-Python twin in
``scheduler.reference`` and a differential test. The public wrappers check shapes and dtypes once; the
private ``_kernels`` are compiled with ``cache=True`` so a second process does not pay the JIT again.

Units: CPU millicores, GPU milli (1000 = one GPU). A GPU slot at 0 free is indistinguishable from a
missing GPU, which is what lets nodes with fewer GPUs share one padded ``gpu_free[N, G]`` array.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from scheduler.workload import MixArrays

INFEASIBLE = -1.0


@njit(cache=True, nogil=True)
def _allowed(mask: np.int64, model: np.int32) -> bool:
    if mask == 0:
        return True
    if model < 0:
        return False
    return ((mask >> np.int64(model)) & np.int64(1)) == 1


@njit(cache=True, nogil=True)
def _node_frag(g, cpu_free, model, mix_cpu, mix_milli, mix_num, mix_mask, mix_prob):
    """Expected fragment (milli-GPU) of one node: sum over task types m of p_m * F_n(m)."""
    idle = 0
    for i in range(g.shape[0]):
        idle += g[i]
    if idle == 0:
        return 0.0
    frag = 0.0
    for m in range(mix_prob.shape[0]):
        milli = mix_milli[m]
        if milli == 0 or not _allowed(mix_mask[m], model):
            frag += mix_prob[m] * idle  # CPU-only task, or a GPU model the task cannot use
            continue
        fits = 0
        small = 0
        for i in range(g.shape[0]):
            if g[i] >= milli:
                fits += 1
            else:
                small += g[i]
        if fits >= mix_num[m] and cpu_free >= mix_cpu[m]:
            frag += mix_prob[m] * small  # task fits: only GPUs too small for it are fragment
        else:
            frag += mix_prob[m] * idle  # task cannot run here at all
    return frag


@njit(cache=True, nogil=True)
def _frag_nodes(gpu_free, cpu_free, model, nodes, mix_cpu, mix_milli, mix_num, mix_mask, mix_prob, out):
    for k in range(nodes.shape[0]):
        n = nodes[k]
        out[n] = _node_frag(gpu_free[n], cpu_free[n], model[n], mix_cpu, mix_milli, mix_num, mix_mask, mix_prob)


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
                mix_cpu, mix_milli, mix_num, mix_mask, mix_prob, quantise, out_score, out_gpu):
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
                after = _node_frag(hyp, cpu_after, model[n], mix_cpu, mix_milli, mix_num, mix_mask, mix_prob)
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
            after = _node_frag(hyp, cpu_after, model[n], mix_cpu, mix_milli, mix_num, mix_mask, mix_prob)
            out_score[n] = _quantised(frag_before[n] - after, quantise)


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
                nodes.astype(np.int64, copy=False), *mix, out)
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
                np.int32(milli), *mix, bool(quantise), score, gpu)
    return score, gpu
