"""Plain-Python twins of ``gpufleet.scheduler.kernels``, written for clarity, used by differential tests and the
kernel microbenchmark. They follow the FGD paper's definitions directly (see docs/designs/001-fgd-core.md)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from gpufleet.scheduler.workload import MixArrays

GPU_MILLI = 1000


def allowed(mask: int, model: int) -> bool:
    return mask == 0 or (model >= 0 and (mask >> model) & 1 == 1)


def node_frag(gpus: Sequence[int], cpu_free: int, model: int, mix: MixArrays) -> float:
    idle = sum(gpus)
    if idle == 0:
        return 0.0
    frag = 0.0
    for cpu, milli, num, mask, prob in zip(*(a.tolist() for a in (mix.cpu, mix.milli, mix.num, mix.mask,
                                                                  mix.prob))):
        if milli == 0 or not allowed(mask, model):
            frag += prob * idle
        elif sum(1 for g in gpus if g >= milli) >= num and cpu_free >= cpu:
            frag += prob * sum(g for g in gpus if g < milli)
        else:
            frag += prob * idle
    return frag


def node_fragmentation(gpu_free, cpu_free, model, mix: MixArrays) -> list[float]:
    return [node_frag(list(gpu_free[n]), int(cpu_free[n]), int(model[n]), mix) for n in range(len(cpu_free))]


def feasible_nodes(gpu_free, cpu_free, mem_free, model, cpu, mem, num, milli, mask) -> list[bool]:
    out = []
    for n in range(len(cpu_free)):
        ok = cpu_free[n] >= cpu and mem_free[n] >= mem
        if ok and num > 0:
            ok = model[n] >= 0 and allowed(mask, int(model[n])) and sum(g >= milli for g in gpu_free[n]) >= num
        out.append(bool(ok))
    return out


def fgd_score(gain: float, quantise: bool) -> float:
    v = 100.0 / (1.0 + math.exp(-gain / 1000.0))
    return float(int(v)) if quantise else v


def fgd_scores(gpu_free, cpu_free, model, feasible, frag_before, cpu, num, milli, mix: MixArrays,
               quantise: bool = True) -> tuple[list[float], list[int]]:
    scores, choice = [], []
    for n in range(len(cpu_free)):
        if not feasible[n]:
            scores.append(-1.0)
            choice.append(-1)
            continue
        gpus = [int(g) for g in gpu_free[n]]
        before = float(frag_before[n])
        if num == 1 and milli < GPU_MILLI:
            best, best_gpu = -1.0, -1
            for i, g in enumerate(gpus):
                if g >= milli:
                    after_gpus = gpus.copy()
                    after_gpus[i] -= milli
                    s = fgd_score(before - node_frag(after_gpus, int(cpu_free[n]) - cpu, int(model[n]), mix),
                                  quantise)
                    if s > best:
                        best, best_gpu = s, i
            scores.append(best)
            choice.append(best_gpu)
        else:
            after_gpus = gpus.copy()
            order = sorted(range(len(gpus)), key=lambda i: gpus[i])  # least free first, stable
            left = num
            for i in order:
                if left and after_gpus[i] >= milli:
                    after_gpus[i] -= milli
                    left -= 1
            after = node_frag(after_gpus, int(cpu_free[n]) - cpu, int(model[n]), mix)
            scores.append(fgd_score(before - after, quantise))
            choice.append(-1)
    return scores, choice


def best_node(score, feasible, gpu_free, cpu_free) -> int:
    candidates = [n for n in range(len(score)) if feasible[n]]
    if not candidates:
        return -1
    top = max(score[n] for n in candidates)
    return min((n for n in candidates if score[n] == top),
               key=lambda n: (int(sum(gpu_free[n])), int(cpu_free[n]), n))


# -- fgd-strand: twins of gpufleet.scheduler.kernels_strand -------------------------------------------------


def _gpu_tasks(mix: MixArrays) -> list[tuple[int, int, int, float]]:
    """(cpu, milli, mask, prob) of the GPU task types, by CPU ascending (ties in mix order)."""
    rows = [(int(c), int(m), int(k), float(p)) for c, m, n, k, p in
            zip(mix.cpu, mix.milli, mix.num, mix.mask, mix.prob) if n > 0]
    return sorted(rows, key=lambda r: r[0])


def gpu_waste(free: int, model: int, tasks: Sequence[tuple[int, int, int, float]],
              memo: dict | None = None) -> float:
    """Expected milli left free for good on one GPU with ``free`` milli when ``tasks`` (those the node's
    CPU fits) keep arriving and the first that fits takes it; nothing fits -> all of ``free``."""
    memo = {} if memo is None else memo
    if free not in memo:
        fits = acc = 0.0
        for _, milli, mask, prob in tasks:
            if milli <= free and allowed(mask, model):
                fits += prob
                acc += prob * gpu_waste(free - milli, model, tasks, memo)
        memo[free] = acc / fits if fits > 0.0 else float(free)
    return memo[free]


def node_waste(gpus: Sequence[int], cpu_free: int, model: int, mix: MixArrays) -> float:
    tasks = [t for t in _gpu_tasks(mix) if t[0] <= cpu_free]
    memo: dict = {}
    total = 0.0
    for g in gpus:
        total += gpu_waste(int(g), model, tasks, memo)
    return total


def stranded(gpus: Sequence[int], cpu_free: int, rho: float, mem_free: int = 0, sigma: float = 0.0) -> float:
    """Idle GPU milli beyond what the free CPU feeds at ``rho`` and the free memory at ``sigma`` per GPU
    milli; a ratio <= 0 leaves its resource out (both: 0)."""
    fed = [free / ratio for free, ratio in ((cpu_free, rho), (mem_free, sigma)) if ratio > 0.0]
    if not fed:
        return 0.0
    return max(0.0, sum(gpus) - min(fed))


def strand_scores(gpu_free, cpu_free, model, feasible, frag_before, cpu, num, milli, mix: MixArrays,
                  lookahead: float, stranding: float, rho: float, relief: float = 1.0,
                  reserve: Sequence[float] | None = None, memory_free=None, mem: int = 0,
                  sigma: float = 0.0) -> tuple[list[float], list[int]]:
    """score = int(sigmoid(-delta / 1000) * 100), delta = dF + lookahead * dV + stranding * dS
    + reserve[model + 1] * num * milli, where a fall of S (dS < 0) counts at weight ``relief``; S counts
    ``memory_free`` at ``sigma`` after the pod's ``mem`` (None: CPU only)."""
    if memory_free is None:
        memory_free, sigma = [0] * len(cpu_free), 0.0

    def delta(before: list[int], after: list[int], n: int) -> float:
        cpu_after = int(cpu_free[n]) - cpu
        mem_before = int(memory_free[n])
        d = node_frag(after, cpu_after, int(model[n]), mix) - float(frag_before[n])
        if lookahead != 0.0:
            d += lookahead * (node_waste(after, cpu_after, int(model[n]), mix)
                              - node_waste(before, int(cpu_free[n]), int(model[n]), mix))
        if stranding != 0.0:
            grown = (stranded(after, cpu_after, rho, mem_before - mem, sigma)
                     - stranded(before, int(cpu_free[n]), rho, mem_before, sigma))
            d += stranding * (grown if grown > 0.0 else relief * grown)
        if reserve is not None:
            d += reserve[int(model[n]) + 1] * num * milli
        return d

    def score(d: float) -> float:
        return float(int(100.0 / (1.0 + math.exp(d / 1000.0))))

    scores, choice = [], []
    for n in range(len(cpu_free)):
        if not feasible[n]:
            scores.append(-1.0)
            choice.append(-1)
            continue
        gpus = [int(g) for g in gpu_free[n]]
        if num == 1 and milli < GPU_MILLI:
            best, best_gpu = -1.0, -1
            for i, g in enumerate(gpus):
                if g >= milli:
                    after = gpus.copy()
                    after[i] -= milli
                    s = score(delta(gpus, after, n))
                    if s > best:
                        best, best_gpu = s, i
            scores.append(best)
            choice.append(best_gpu)
        else:
            after = gpus.copy()
            left = num
            for i in sorted(range(len(gpus)), key=lambda i: gpus[i]):  # least free first, stable
                if left and after[i] >= milli:
                    after[i] -= milli
                    left -= 1
            scores.append(score(delta(gpus, after, n)))
            choice.append(-1)
    return scores, choice
