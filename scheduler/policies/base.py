"""What every placement policy shares: the score contract, node selection and GPU choice.

A policy maps (cluster, pod) to a score per node (higher is better, ``INFEASIBLE`` where the pod does
not fit) and, for GPU-sharing pods, the GPU it would use on each node. Selection and the tie-break
are separate and explicit (``select_node``), so the simulator and the extender apply the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from gpufleet.scheduler import kernels
from gpufleet.scheduler.model import GPU_MILLI, Cluster, PodRequest

INFEASIBLE = kernels.INFEASIBLE


@dataclass(frozen=True)
class NodeScores:
    """Scores float64[N] (``INFEASIBLE`` = filtered out) and the preferred share GPU int32[N] (-1: none)."""

    score: np.ndarray
    share_gpu: np.ndarray

    @property
    def feasible(self) -> np.ndarray:
        return self.score > INFEASIBLE


class Policy(Protocol):
    name: str

    def score(self, cluster: Cluster, pod: PodRequest) -> NodeScores: ...


def feasible(cluster: Cluster, pod: PodRequest) -> np.ndarray:
    """bool[N]: the filter every policy starts from (CPU, memory, GPU model, GPU capacity)."""
    return kernels.feasible_nodes(
        cluster.gpu_free, cluster.cpu_free, cluster.memory_free, cluster.gpu_model,
        pod.cpu_milli, pod.memory_mib, pod.num_gpu, pod.gpu_milli, cluster.model_mask(pod.gpu_models),
    )


def masked(score: np.ndarray, ok: np.ndarray) -> NodeScores:
    """Scores with infeasible nodes marked, and no share-GPU preference."""
    out = np.where(ok, score, INFEASIBLE).astype(np.float64)
    return NodeScores(out, np.full(len(out), -1, dtype=np.int32))


def shifted(raw: np.ndarray, ok: np.ndarray, share_gpu: np.ndarray | None = None) -> NodeScores:
    """Scores from a raw criterion of any sign (higher is better): feasible nodes shifted to start at
    0, so they stay above ``INFEASIBLE`` with their order and ties kept."""
    base = raw[ok].min() if ok.any() else 0.0
    score = np.where(ok, raw - base, INFEASIBLE).astype(np.float64)
    share = np.full(len(raw), -1, dtype=np.int32) if share_gpu is None else np.where(ok, share_gpu, -1)
    return NodeScores(score, share.astype(np.int32))


def select_node(scores: NodeScores, rank: np.ndarray) -> int:
    """The node with the highest score; ties go to the lowest ``rank`` (-1 if no node is feasible).

    The FGD paper's scheduler breaks ties by node name, and names carry a seed-shuffled prefix, so
    ``rank`` is a seeded permutation there; pass ``np.arange(N)`` for "first node wins".
    """
    best = scores.score.max()
    if best <= INFEASIBLE:
        return -1
    candidates = np.flatnonzero(scores.score == best)
    return int(candidates[np.argmin(rank[candidates])])


def best_fit_gpu(free: np.ndarray, milli: int) -> int:
    """The GPU with the least free capacity that still fits ``milli``; the first such on ties."""
    pick = -1
    for i, f in enumerate(free.tolist()):
        if f >= milli and (pick < 0 or f < free[pick]):
            pick = i
    return pick


def choose_gpus(cluster: Cluster, node: int, pod: PodRequest, share_gpu: int = -1) -> tuple[int, ...]:
    """GPU indices for ``pod`` on ``node``: the policy's share GPU (else best fit) for GPU-sharing pods,
    the lowest-index fully free GPUs for whole-GPU pods."""
    if pod.num_gpu == 0:
        return ()
    free = cluster.gpu_free[node]
    if pod.is_gpu_share:
        gpu = share_gpu if share_gpu >= 0 else best_fit_gpu(free, pod.gpu_milli)
        return (gpu,) if gpu >= 0 else ()
    whole = np.flatnonzero(free == GPU_MILLI)[: pod.num_gpu]
    return tuple(int(g) for g in whole) if len(whole) == pod.num_gpu else ()
