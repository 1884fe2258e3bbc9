"""Numba kernels of the ``fgd-strand`` policy: look-ahead waste tables, stranded GPU, placement scores.

Three per-node measures, all in milli-GPU, so they add up (see docs/designs/012-fgd-strand.md):

- F_n(M), FGD's expected fragment (``kernels.node_fragmentation``, reused as is);
- V_n, the look-ahead: the GPU capacity expected to stay free on the node for good if pods keep arriving
  from the mix and the first one that fits a GPU takes it (``waste_tables`` holds that value per GPU
  model, per "which tasks still fit the node's free CPU", per free milli of one GPU);
- S_n, stranded GPU: idle GPU milli the node's free CPU or free memory cannot feed at the mix's CPU
  (``rho``) and memory (``sigma``) per GPU-milli, ``max(0, idle - min(cpu_free / rho, mem_free / sigma))``;
  a ratio <= 0 drops its resource from the min (both: S = 0). A fall of S counts only at weight ``relief`` (0..1): at
  full weight a CPU-light pod is drawn to every node below the mix's CPU ratio, empty ones included,
  and breaks up the whole nodes multi-GPU pods need;
- R, model reserve: a pod taking GPU milli on a node of model m displaces ``reserve[m + 1]`` milli of
  bound demand per milli (the caller's weights, ``fgd_strand.model_reserve``; zeros turn it off).

No I/O here. Each kernel has a plain-Python twin in ``scheduler.reference`` and a differential test.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from gpufleet.scheduler.kernels import INFEASIBLE, _allowed, _check, _node_frag, _scratch
from gpufleet.scheduler.workload import MixArrays

FREE_LEVELS = 1001  # free milli of one GPU: 0..1000


class WasteTables(NamedTuple):
    """``waste[model + 1, k, f]``: expected milli left free for good on one GPU with ``f`` free, on a node
    of GPU model ``model`` (-1: none) whose free CPU fits the ``k`` GPU task types with the least CPU.
    ``cpu`` (int64[K], ascending) is the CPU of those task types, so k = #{cpu <= node's free CPU}."""

    waste: np.ndarray
    cpu: np.ndarray


@njit(cache=True, nogil=True)
def _fill_waste(waste, milli, prob, mask):
    """Bellman recursion over f ascending: no task fits -> f stays free; else the expected waste after
    the first arriving task that fits (probabilities renormalised over the tasks that fit)."""
    for mi in range(waste.shape[0]):
        model = np.int32(mi - 1)
        for k in range(waste.shape[1]):
            for f in range(waste.shape[2]):
                fits = 0.0
                acc = 0.0
                for t in range(k):
                    if milli[t] <= f and _allowed(mask[t], model):
                        fits += prob[t]
                        acc += prob[t] * waste[mi, k, f - milli[t]]
                waste[mi, k, f] = acc / fits if fits > 0.0 else float(f)


def waste_tables(mix: MixArrays, models: int) -> WasteTables:
    """The look-ahead tables for a mix resolved against a cluster with ``models`` GPU models.

    Only GPU task types take part (a CPU-only task never fills a GPU); a task of several whole GPUs
    counts as one whole GPU per slot. Cost O(models x K^2 x 1001), once per mix.
    """
    gpu = np.flatnonzero(mix.num > 0)
    order = gpu[np.argsort(mix.cpu[gpu], kind="stable")]
    waste = np.zeros((models + 1, len(order) + 1, FREE_LEVELS), dtype=np.float64)
    _fill_waste(waste, mix.milli[order].astype(np.int64), mix.prob[order].astype(np.float64),
                mix.mask[order].astype(np.int64))
    return WasteTables(waste, mix.cpu[order].astype(np.int64))


@njit(cache=True, nogil=True)
def _fitting(cpu_levels, cpu_free):
    """How many entries of the ascending ``cpu_levels`` are <= ``cpu_free`` (binary search)."""
    lo, hi = 0, cpu_levels.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if cpu_levels[mid] <= cpu_free:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True)
def _node_waste(waste, cpu_levels, g, cpu_free, model):
    k = _fitting(cpu_levels, cpu_free)
    v = 0.0
    for i in range(g.shape[0]):
        v += waste[model + 1, k, g[i]]
    return v


@njit(cache=True, nogil=True)
def _stranded(g, cpu_free, mem_free, rho, sigma):
    fed = np.inf  # the GPU milli the node's free CPU and memory can feed; a ratio <= 0 leaves its resource out
    if rho > 0.0:
        fed = cpu_free / rho
    if sigma > 0.0:
        fed = min(fed, mem_free / sigma)
    if fed == np.inf:
        return 0.0
    idle = 0
    for i in range(g.shape[0]):
        idle += g[i]
    s = idle - fed
    return s if s > 0.0 else 0.0


@njit(cache=True, nogil=True)
def _delta(hyp, cpu_after, mem_after, model, before_frag, before_waste, before_strand, mix_cpu, mix_milli, mix_num,
           mix_mask, mix_prob, levels, level, scratch, waste, cpu_levels, lookahead, stranding, rho, sigma, relief):
    d = _node_frag(hyp, cpu_after, model, mix_cpu, mix_milli, mix_num, mix_mask, mix_prob, levels, level,
                   scratch) - before_frag
    if lookahead != 0.0:
        d += lookahead * (_node_waste(waste, cpu_levels, hyp, cpu_after, model) - before_waste)
    if stranding != 0.0:
        grown = _stranded(hyp, cpu_after, mem_after, rho, sigma) - before_strand
        d += stranding * (grown if grown > 0.0 else relief * grown)
    return d


@njit(cache=True, nogil=True)
def _score(delta):
    """FGD's integer score of a growth in waste: int(sigmoid(-delta / 1000) * 100)."""
    return float(int(100.0 / (1.0 + math.exp(delta / 1000.0))))


@njit(cache=True, nogil=True)
def _strand_scores(gpu_free, cpu_free, mem_free, model, feasible, frag_before, cpu, mem, num, milli,
                   mix_cpu, mix_milli, mix_num, mix_mask, mix_prob, levels, level, scratch,
                   waste, cpu_levels, lookahead, stranding, rho, sigma, relief, reserve, out_score, out_gpu):
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
        mem_after = mem_free[n] - mem
        bw = _node_waste(waste, cpu_levels, g, cpu_free[n], model[n]) if lookahead != 0.0 else 0.0
        bs = _stranded(g, cpu_free[n], mem_free[n], rho, sigma) if stranding != 0.0 else 0.0
        displaced = reserve[model[n] + 1] * num * milli
        for j in range(width):
            hyp[j] = g[j]
        if share:
            best = INFEASIBLE
            for i in range(width):
                if g[i] < milli:
                    continue
                seen = False  # equal free capacity, equal score: the first such GPU wins
                for j in range(i):
                    if g[j] == g[i]:
                        seen = True
                        break
                if seen:
                    continue
                hyp[i] -= milli
                s = _score(_delta(hyp, cpu_after, mem_after, model[n], frag_before[n], bw, bs, mix_cpu, mix_milli,
                                  mix_num, mix_mask, mix_prob, levels, level, scratch, waste, cpu_levels, lookahead,
                                  stranding, rho, sigma, relief) + displaced)
                hyp[i] += milli
                if s > best:
                    best = s
                    out_gpu[n] = i
            out_score[n] = best
        else:
            for _ in range(num):  # the least sufficient GPUs, as FGD's hypothetical placement
                pick = -1
                for j in range(width):
                    if hyp[j] >= milli and (pick < 0 or hyp[j] < hyp[pick]):
                        pick = j
                hyp[pick] -= milli
            out_score[n] = _score(_delta(hyp, cpu_after, mem_after, model[n], frag_before[n], bw, bs, mix_cpu,
                                         mix_milli, mix_num, mix_mask, mix_prob, levels, level, scratch, waste,
                                         cpu_levels, lookahead, stranding, rho, sigma, relief) + displaced)


def node_waste(gpu_free: np.ndarray, cpu_free: np.ndarray, model: np.ndarray, tables: WasteTables) -> np.ndarray:
    """V_n for every node: the look-ahead's expected milli left free for good (float64[N])."""
    _check(gpu_free, cpu_free, model)
    cpu = cpu_free.astype(np.int64, copy=False)
    model = model.astype(np.int32, copy=False)
    return np.array([_node_waste(tables.waste, tables.cpu, gpu_free[n], cpu[n], model[n])
                     for n in range(gpu_free.shape[0])], dtype=np.float64)


def stranded(gpu_free: np.ndarray, cpu_free: np.ndarray, rho: float, memory_free: np.ndarray | None = None,
             sigma: float = 0.0) -> np.ndarray:
    """S_n for every node: idle milli-GPU beyond what its free CPU feeds at ``rho`` CPU milli per GPU milli
    and its free memory at ``sigma`` MiB per GPU milli (``memory_free`` None: no memory term)."""
    _check(gpu_free, cpu_free)
    mem, sigma = _memory(memory_free, gpu_free.shape[0], sigma)
    return np.array([_stranded(gpu_free[n], np.int64(cpu_free[n]), mem[n], float(rho), sigma)
                     for n in range(gpu_free.shape[0])], dtype=np.float64)


def _memory(memory_free: np.ndarray | None, n: int, sigma: float) -> tuple[np.ndarray, float]:
    """Free memory as int64[N] and sigma; without memory rows, zeros and sigma 0 (the term off)."""
    if memory_free is None:
        return np.zeros(n, dtype=np.int64), 0.0
    memory_free = np.asarray(memory_free)
    if memory_free.shape != (n,):
        raise ValueError(f"memory_free needs one value per node ({n}), got shape {memory_free.shape}")
    return memory_free.astype(np.int64, copy=False), float(sigma)


def strand_scores(gpu_free: np.ndarray, cpu_free: np.ndarray, model: np.ndarray, feasible: np.ndarray,
                  frag_before: np.ndarray, cpu: int, num: int, milli: int, mix: MixArrays, tables: WasteTables,
                  lookahead: float, stranding: float, rho: float, relief: float = 1.0,
                  reserve: np.ndarray | None = None, memory_free: np.ndarray | None = None, mem: int = 0,
                  sigma: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Score of placing the pod on each node: (score float64[N], share GPU int32[N]).

    delta = dF + lookahead * dV + stranding * dS + reserve[model + 1] * (the pod's GPU milli), a
    negative dS weighted by ``relief``; ``reserve`` is float64[models + 1] (None: zeros); S counts the
    nodes' ``memory_free`` (MiB) at ``sigma`` MiB per GPU milli after the pod's ``mem`` (None: CPU only);
    score = int(sigmoid(-delta / 1000) * 100), -1 where infeasible. A GPU-sharing pod tries every GPU with room; the first with the best score wins.
    """
    _check(gpu_free, cpu_free, model, feasible, frag_before)
    n = gpu_free.shape[0]
    width = int(model.max(initial=-1)) + 2
    reserve = np.zeros(width) if reserve is None else np.asarray(reserve, dtype=np.float64)
    if reserve.ndim != 1 or reserve.shape[0] < width:
        raise ValueError(f"reserve needs one weight per GPU model plus one (>= {width}), got shape {reserve.shape}")
    memory, sigma = _memory(memory_free, n, sigma)
    score = np.empty(n, dtype=np.float64)
    gpu = np.empty(n, dtype=np.int32)
    _strand_scores(gpu_free, cpu_free.astype(np.int64, copy=False), memory, model.astype(np.int32, copy=False),
                   feasible, frag_before, np.int64(cpu), np.int64(mem), np.int32(num), np.int32(milli), *mix,
                   _scratch(gpu_free, mix), tables.waste, tables.cpu, float(lookahead), float(stranding), float(rho),
                   sigma, float(relief), reserve, score, gpu)
    return score, gpu
