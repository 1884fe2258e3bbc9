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
