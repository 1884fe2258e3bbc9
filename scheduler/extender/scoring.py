"""Scores for the candidate nodes of one pod, per placement policy, mapped to kube-scheduler's 0..10.

Only the candidate rows are scored: their slices of the cluster arrays go through the same numba
kernels the simulator uses (feasibility, FGD), so a request costs O(candidates), not O(cluster).

Policies (``gpufleet.io/placement``), each defined once in :mod:`gpufleet.scheduler.policies` (the
simulator uses the same modules): ``fgd`` (the FGD paper's score, quantised to 0..100), ``fgd-strand``
(FGD plus the GPU that free CPU can no longer feed, see docs/designs/012), ``binpack``,
``spread`` and ``cost`` (hourly USD: the pod's GPUs, the capacity it strands, a spot penalty for pods
that are not interruptible).

Mapping: the chosen node gets 10 (one node only: among equals, the one kube-scheduler's MostAllocated
would pack first), the other feasible ones 1..9 linearly in the policy's raw score, infeasible or
unknown nodes 0; kube-scheduler's choice then follows ours. Pods that did not opt in get 0 everywhere. Callers hold the state's lock. No I/O here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from itertools import repeat

import numpy as np

from gpufleet.scheduler import kernels, kernels_strand
from gpufleet.scheduler.extender.ledger import pick_gpus
from gpufleet.scheduler.extender.pods import PodInfo
from gpufleet.scheduler.extender.state import ClusterState
from gpufleet.scheduler.model import GPU_MILLI, Cluster, PodRequest
from gpufleet.scheduler.policies import binpack, cost, fgd_strand, spread
from gpufleet.scheduler.policies.fgd import FGDPolicy
from gpufleet.scheduler.workload import (
    DEFAULT_MIX,
    LEARN_MAX_SHAPES,
    LEARN_MIN_GPU_PODS,
    MixArrays,
    WorkloadMix,
    learnt_mix,
)

FGD, STRAND, BINPACK, SPREAD, COST, OFF = "fgd", fgd_strand.NAME, binpack.NAME, spread.NAME, cost.NAME, "off"
SCORED_POLICIES = (FGD, STRAND, BINPACK, SPREAD, COST)


@dataclass(frozen=True)
class ScoringConfig:
    """``interruption_penalty``: mean GPU-hours per requested GPU added to the cost of a spot node
    for pods without ``gpufleet.io/interruptible: "true"`` (default 1.0, i.e. more than a typical
    spot discount, so such pods prefer on-demand unless spot is far cheaper).
    ``fragmentation_weight``: multiplier on the stranded-capacity cost (default 1.0).
    ``mix_refresh_s``: how often the workload mix is re-learnt from the running pods (s, default 60;
    ``workload.learnt_mix``: GPU pods, and CPU-only ones on GPU nodes but for per-node pods);
    ``mix_min_pods``: below this many GPU pods the default mix is used (default 20);
    ``mix_max_shapes``: the most frequent request shapes kept in the mix (default 32).
    ``decide_in_filter``: filter leaves an opted-in pod only the node its policy ranks first, so
    kube-scheduler, with one feasible node, skips its score plugins and the prioritize call (default on;
    off, kube-scheduler's own scores count again, at the weight the scheduler configuration gives the
    extender)."""

    interruption_penalty: float = 1.0
    fragmentation_weight: float = 1.0
    mix_refresh_s: float = 60.0
    mix_min_pods: int = LEARN_MIN_GPU_PODS
    mix_max_shapes: int = LEARN_MAX_SHAPES
    decide_in_filter: bool = True


@dataclass(frozen=True)
class NodeParts:
    """Why one node scored what it did, for Events and logs."""

    node: str
    score: int
    raw: float
    fragmentation_delta_gpus: float | None
    price_per_gpu_hour: float | None
    spot: bool


def _no_parts() -> tuple[NodeParts, ...]:
    return ()


@dataclass(frozen=True)
class Ranking:
    policy: str
    best: int  # index into the requested names, -1 when no node is feasible (or the pod is neutral)
    best_gpus: tuple[int, ...]
    #: The 0..10 score of every requested name, worked out only when asked: prioritize needs them,
    #: filter deciding needs only the best node.
    score_all: Callable[[], np.ndarray]
    #: The top nodes and why they scored so, worked out only when asked (an Event's message, which
    #: the rate limit keeps for a few pods a second).
    explain: Callable[[], tuple[NodeParts, ...]] = _no_parts

    @cached_property
    def scores(self) -> np.ndarray:
        """int64 per requested name, 0..10."""
        return self.score_all()

    @property
    def top(self) -> tuple[NodeParts, ...]:
        return self.explain()

    @property
    def neutral(self) -> bool:
        return self.policy == OFF


def neutral(count: int) -> Ranking:
    return no_node(OFF, count)


def no_node(policy: str, count: int) -> Ranking:
    """A ranking with no best node: every one of the ``count`` names scores 0."""
    return Ranking(policy, -1, (), partial(np.zeros, count, dtype=np.int64))


class CompiledMix:
    """One mix's FGD policy, kernel arrays and fgd-strand tables, rebuilt when the cluster's
    generation (or its GPU model table) changes."""

    def __init__(self, mix: WorkloadMix) -> None:
        self.mix = mix
        self._key: int | None = None
        self._fgd: FGDPolicy | None = None
        self._arrays: MixArrays | None = None
        self._strand_key: tuple[int, int] | None = None
        self._strand: tuple[fgd_strand.StrandPolicy, kernels_strand.WasteTables] | None = None

    def policy(self, cluster: Cluster, generation: int) -> tuple[FGDPolicy, MixArrays]:
        if self._key != generation or self._fgd is None or self._arrays is None:
            self._key = generation
            self._fgd = FGDPolicy(self.mix)
            self._arrays = self.mix.arrays(cluster)
        return self._fgd, self._arrays

    def strand_policy(self, cluster: Cluster, generation: int
                      ) -> tuple[fgd_strand.StrandPolicy, kernels_strand.WasteTables]:
        key = (generation, len(cluster.model_names))
        if self._strand_key != key or self._strand is None:
            _, arrays = self.policy(cluster, generation)
            self._strand_key = key
            self._strand = (fgd_strand.StrandPolicy(self.mix),
                            kernels_strand.waste_tables(arrays, len(cluster.model_names)))
        return self._strand


#: How many PlacementPolicy mixes (ConfigMap ones) stay compiled; beyond, the least recently used goes.
POLICY_MIXES_KEPT = 16


class Scorer:
    """``mix``: a fixed workload mix (``gpufleet extender --workload-mix``), used as given and never
    re-learnt; None learns it from the running pods (``ScoringConfig``). ``rank(mix=...)`` scores one
    pod against another mix (a PlacementPolicy's ConfigMap mix) instead."""

    def __init__(self, config: ScoringConfig = ScoringConfig(), mix: WorkloadMix | None = None) -> None:
        self.config = config
        self._own = CompiledMix(mix or DEFAULT_MIX)
        self._fixed_mix = mix is not None
        self._mix_at: float | None = None
        self._policy_mixes: dict[WorkloadMix, CompiledMix] = {}  # insertion order = least recently used first
        self._cost_options = cost.CostOptions(config.interruption_penalty, config.fragmentation_weight)

    # -- workload mix and fragmentation --------------------------------------------------------

    @property
    def mix(self) -> WorkloadMix:
        return self._own.mix

    def refresh_mix(self, state: ClusterState) -> None:
        """Re-learn the mix from the running pods when ``mix_refresh_s`` has passed."""
        if self._fixed_mix:
            return
        now = state.clock.monotonic()
        if self._mix_at is not None and now - self._mix_at < self.config.mix_refresh_s:
            return
        self._mix_at = now
        mix = learnt_mix(self._arrivals(state), self.config.mix_min_pods, self.config.mix_max_shapes)
        if mix != self._own.mix:
            self._own = CompiledMix(mix)

    @staticmethod
    def _arrivals(state: ClusterState) -> Iterator[PodRequest]:
        """The confirmed pods the mix is learnt from: GPU pods, and CPU-only pods on GPU nodes (they take
        the CPU and memory GPU pods need) that are not per-node pods (a DaemonSet's or static ones)."""
        cluster = state.cluster
        for p in state.ledger:
            if p.assumed or p.per_node:
                continue
            if p.request.num_gpu == 0:
                row = cluster.index.get(p.node) if cluster is not None else None
                if row is None or cluster.gpu_count[row] == 0:
                    continue
            yield p.request

    def _compiled(self, mix: WorkloadMix | None) -> CompiledMix:
        """The scorer's own mix (None), or a policy's mix, compiled once and kept while in use."""
        if mix is None or mix == self._own.mix:
            return self._own
        compiled = self._policy_mixes.pop(mix, None) or CompiledMix(mix)
        self._policy_mixes[mix] = compiled
        while len(self._policy_mixes) > POLICY_MIXES_KEPT:
            self._policy_mixes.pop(next(iter(self._policy_mixes)))
        return compiled

    def fragmentation(self, state: ClusterState) -> np.ndarray:
        """F_n(M) of every row (milli-GPU) against the scorer's own mix, refreshed where rows changed."""
        if state.cluster is None:
            return np.zeros(0)
        fgd, _ = self._own.policy(state.cluster, state.generation)
        return fgd.fragmentation(state.cluster)

    # -- ranking -------------------------------------------------------------------------------

    def rank(self, state: ClusterState, pod: PodInfo, policy: str, names: Sequence[str],
             top: int = 3, cost_options: cost.CostOptions | None = None,
             mix: WorkloadMix | None = None) -> Ranking:
        """``cost_options``: the cost policy's weights of a PlacementPolicy (default: the flags');
        ``mix``: a PlacementPolicy's workload mix (default: the scorer's own)."""
        cluster = state.cluster
        request = pod.request
        if policy not in SCORED_POLICIES or cluster is None or request is None or request.num_gpu == 0:
            return neutral(len(names))
        self.refresh_mix(state)
        rows = rows_of(cluster.index, names)
        known = np.flatnonzero(rows >= 0)
        r = rows[known]
        mask = cluster.model_mask(pod.model_rule.resolve(cluster.model_names))
        gpu_free = cluster.gpu_free[r]
        cpu_free = cluster.cpu_free[r]
        model = cluster.gpu_model[r]
        ok = kernels.feasible_nodes(gpu_free, cpu_free, cluster.memory_free[r], model, request.cpu_milli,
                                    request.memory_mib, request.num_gpu, request.gpu_milli, mask)
        compiled = self._compiled(mix)
        fgd, mix_arrays = compiled.policy(cluster, state.generation)
        share = np.full(len(r), -1, dtype=np.int32)
        delta: np.ndarray | None = None
        if policy == FGD:
            before = fgd.fragmentation(cluster)[r]
            raw, share = kernels.fgd_scores(gpu_free, cpu_free, model, ok, before, request.cpu_milli,
                                            request.num_gpu, request.gpu_milli, mix_arrays, quantise=True)
        elif policy == STRAND:
            strand, tables = compiled.strand_policy(cluster, state.generation)
            # A model-bound pod pays no model reserve (the extender keeps its models in model_rule).
            reserve = strand.reserve(cluster, request) if pod.model_rule.is_any else None
            raw, share = strand.raw_scores(gpu_free, cpu_free, model, ok, fgd.fragmentation(cluster)[r], request,
                                           mix_arrays, tables, reserve, cluster.memory_free[r])
        elif policy == COST:
            before = fgd.fragmentation(cluster)[r]
            _, share = kernels.fgd_scores(gpu_free, cpu_free, model, ok, before, request.cpu_milli,
                                          request.num_gpu, request.gpu_milli, mix_arrays, quantise=False)
            delta = cost.fragmentation_delta(gpu_free, cpu_free, model, before, request, share, mix_arrays)
            raw = -cost.hourly_cost(cluster.price_per_hour[r], cluster.gpu_count[r], cluster.spot[r], ok, request,
                                    pod.interruptible, delta, cost_options or self._cost_options)
        elif policy == BINPACK:
            raw = binpack.raw_scores(gpu_free, cpu_free, request)
        else:
            raw = spread.raw_scores(gpu_free, cpu_free, cluster.gpu_count[r], cluster.cpu_capacity[r], request)
            if request.is_gpu_share:
                share = spread.most_free_gpu(gpu_free, request.gpu_milli)
        best_local = kernels.best_node(raw, ok, gpu_free, cpu_free)
        if best_local < 0:
            return no_node(policy, len(names))
        known_scores = _Once(partial(_to_scores, raw, ok, best_local))
        gpus = pick_gpus(cluster, int(r[best_local]), request, int(share[best_local]))
        return Ranking(policy, int(known[best_local]), gpus, partial(_spread, len(names), known, known_scores),
                       partial(_top_parts, cluster, r, known, names, known_scores, raw, delta, top))


def rows_of(index: dict[str, int], names: Sequence[str]) -> np.ndarray:
    """Row of every name, -1 for names the model does not have (a C-level loop: no Python frame per name)."""
    return np.fromiter(map(index.get, names, repeat(-1)), dtype=np.int64, count=len(names))


def _to_scores(raw: np.ndarray, ok: np.ndarray, best: int) -> np.ndarray:
    """The chosen node -> 10; other feasible -> 1..9 linear in raw (its equals get 9); infeasible -> 0.

    Exactly one 10, so with a large weight kube-scheduler lands the pod where the extender assumed it;
    equal nodes are broken here (``kernels.best_node``) rather than by kube-scheduler's random tie-break, which
    would make the decision and the binding disagree.
    """
    scores = np.zeros(len(raw), dtype=np.int64)
    top = raw[best]
    worst = raw[ok].min()
    if top > worst:
        scaled = 1 + np.floor(8.999 * (raw - worst) / (top - worst))
        scores[ok] = np.clip(scaled[ok], 1, 9).astype(np.int64)
    else:
        scores[ok] = 9
    scores[best] = 10
    return scores


class _Once:
    """``compute()``'s value, worked out at the first call (cheaper to make than ``functools.cache``)."""

    def __init__(self, compute: Callable[[], np.ndarray]) -> None:
        self._compute: Callable[[], np.ndarray] | None = compute
        self._value: np.ndarray | None = None

    def __call__(self) -> np.ndarray:
        if self._compute is not None:
            self._value, self._compute = self._compute(), None
        return self._value


def _spread(count: int, known: np.ndarray, known_scores: Callable[[], np.ndarray]) -> np.ndarray:
    """Scores of every requested name from those of the names the cluster knows (unknown -> 0)."""
    scores = np.zeros(count, dtype=np.int64)
    scores[known] = known_scores()
    return scores


def _top_parts(cluster: Cluster, r: np.ndarray, known: np.ndarray, names: Sequence[str],
               known_scores: Callable[[], np.ndarray], raw: np.ndarray, delta: np.ndarray | None,
               top: int) -> tuple[NodeParts, ...]:
    scores = known_scores()
    order = np.lexsort((-raw, -scores))[:top]
    per_gpu = cost.price_per_gpu_hour(cluster.price_per_hour[r], cluster.gpu_count[r])
    parts = []
    for i in order:
        if scores[i] == 0:
            break
        parts.append(NodeParts(
            node=names[int(known[i])], score=int(scores[i]), raw=float(raw[i]),
            fragmentation_delta_gpus=None if delta is None else float(delta[i]) / GPU_MILLI,
            price_per_gpu_hour=float(per_gpu[i]) if per_gpu[i] > 0 else None,
            spot=bool(cluster.spot[r[i]]),
        ))
    return tuple(parts)
