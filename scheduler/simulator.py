"""Trace replay with the FGD paper's protocol (Weng et al., ATC'23, and its simulator).

1. Shuffle the pods with the seed. 2. Inflate: append pods sampled with replacement from the trace until
the GPU request would pass ``tune`` x cluster GPU capacity (or deflate a larger trace by dropping random
pods). 3. Schedule one pod at a time, arrival only;
a pod that fits nowhere is dropped. After every pod record allocated and arrived GPU-milli (arrived
includes failed pods), then discretise as the paper's ``merge_alloc_discrete.py`` does: the allocation at
arrived X% is the mean over events whose arrived percentage rounds to X (else within X +/- 1).

The typical-pod mix for FGD and the fragmentation report are built from the trace before inflation
(``learn_mix_every``: the policy's mix is instead learnt from the pods placed so far, as the extender
learns it from the running pods, starting from ``DEFAULT_MIX``).
Ties between equal scores go to a seeded node priority order, as the paper's renamed nodes do.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from gpufleet.scheduler import kernels
from gpufleet.scheduler.model import Cluster, Node, PodRequest
from gpufleet.scheduler.policies import choose_gpus, make_policy, select_node
from gpufleet.scheduler.workload import DEFAULT_MIX, WorkloadMix, learnt_mix

ARRIVED_PERCENTS = range(131)


@dataclass(frozen=True)
class SimulationConfig:
    policy: str
    seed: int = 42
    tune: float = 1.3  # inflate GPU demand to this multiple of cluster GPU capacity
    quantise: bool = True  # FGD's integer scores (see policies.fgd.FGDOptions)
    seeded_tie_break: bool = True  # ties to a seeded node order (False: lowest node index)
    interruptible: bool = False  # the cost policy: pods may run on spot without a penalty
    learn_mix_every: int = 0  # >0: the policy's mix re-learnt from the placed pods every N arrivals (the extender's way)


@dataclass
class SimulationResult:
    policy: str
    seed: int
    pods: int
    scheduled: int
    seconds: float
    alloc_at: dict[str, float]  # arrived % -> allocated % of GPU capacity
    frag_at: dict[str, float]  # arrived % -> fragmentation (% of GPU capacity) under the trace's mix
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"policy": self.policy, "seed": self.seed, "pods": self.pods, "scheduled": self.scheduled,
                "failed": self.pods - self.scheduled, "seconds": round(self.seconds, 3),
                "alloc_at": self.alloc_at, "frag_at": self.frag_at, **self.extra}


def inflate(pods: Sequence[PodRequest], total_gpu_milli: int, tune: float,
            rng: np.random.Generator) -> list[PodRequest]:
    """Shuffle, then append random trace pods until the next one would push GPU demand past
    ``tune`` x capacity (the paper's stop test adds the sampled pod's per-GPU milli), or, for a trace
    that asks for more than that, remove random pods until it does not."""
    order = rng.permutation(len(pods))
    out = [pods[i] for i in order]
    if tune <= 0:
        return out
    demand = sum(p.total_gpu_milli for p in out)
    target = tune * total_gpu_milli
    if demand > target:  # a trace that asks for more: drop random pods until it fits the target
        while demand > target:
            demand -= out.pop(int(rng.integers(len(out)))).total_gpu_milli
        return out
    while True:
        pod = pods[int(rng.integers(len(pods)))]
        if demand + pod.gpu_milli > target:
            return out
        demand += pod.total_gpu_milli
        out.append(pod)


def discretise(arrived_pct: np.ndarray, value_pct: np.ndarray) -> dict[str, float]:
    """Per integer arrived percent: mean value over events that round to it (else within +/- 1)."""
    rounded = np.round(arrived_pct)  # numpy rounds half to even, like Python's round()
    values = np.round(value_pct, 2)
    out = {}
    for x in ARRIVED_PERCENTS:
        hit = rounded == x
        if not hit.any():
            hit = (rounded >= x - 1) & (rounded <= x + 1)
            if not hit.any():
                continue
        out[str(x)] = round(float(values[hit].mean()), 2)
    return out


def _occupied_price(cluster: Cluster) -> float:
    """USD/h of the nodes that hold at least one pod at the end (0 when the nodes carry no prices)."""
    used = (cluster.gpu_free.sum(axis=1) < cluster.gpu_count.astype(np.int64) * 1000) | (
        cluster.cpu_free < cluster.cpu_capacity)
    return round(float(cluster.price_per_hour[used].sum()), 2)


def simulate(nodes: Sequence[Node], trace: Sequence[PodRequest], config: SimulationConfig,
             progress: Callable[[int, int], None] | None = None) -> SimulationResult:
    """Replay ``trace`` on an empty cluster of ``nodes`` under ``config``; see the module docstring."""
    if config.learn_mix_every < 0:
        raise ValueError(f"learn_mix_every must be >= 0, got {config.learn_mix_every}")
    start = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    cluster = Cluster.from_nodes(nodes)
    capacity = cluster.total_gpu_milli
    pods = inflate(trace, capacity, config.tune, rng)
    rank = rng.permutation(len(cluster)) if config.seeded_tie_break else np.arange(len(cluster))
    mix = WorkloadMix.from_pods(trace)
    from gpufleet.scheduler.policies.cost import CostOptions
    from gpufleet.scheduler.policies.fgd import FGDOptions

    def policy_for(mix: WorkloadMix):
        return make_policy(config.policy, mix=mix, rng=rng, options=FGDOptions(quantise=config.quantise),
                           cost_options=CostOptions(interruptible=config.interruptible))

    learn = config.learn_mix_every
    policy_mix = DEFAULT_MIX if learn > 0 else mix
    policy = policy_for(policy_mix)
    running: list[PodRequest] = []
    report_mix = mix.arrays(cluster)
    frag = kernels.node_fragmentation(cluster.gpu_free, cluster.cpu_free, cluster.gpu_model, report_mix)

    arrived = np.empty(len(pods), dtype=np.int64)
    allocated = np.empty(len(pods), dtype=np.int64)
    fragmented = np.empty(len(pods), dtype=np.float64)
    arrived_total = allocated_total = scheduled = 0
    for i, pod in enumerate(pods):
        if learn > 0 and i > 0 and i % learn == 0 and (learnt := learnt_mix(running)) != policy_mix:
            policy_mix, policy = learnt, policy_for(learnt)
        arrived_total += pod.total_gpu_milli
        scores = policy.score(cluster, pod)
        node = select_node(scores, rank)
        if node >= 0:
            gpus = choose_gpus(cluster, node, pod, int(scores.share_gpu[node]))
            cluster.place(node, pod, gpus)
            allocated_total += pod.total_gpu_milli
            scheduled += 1
            running.append(pod)
            kernels.node_fragmentation(cluster.gpu_free, cluster.cpu_free, cluster.gpu_model, report_mix,
                                       nodes=np.array([node]), out=frag)
        arrived[i], allocated[i], fragmented[i] = arrived_total, allocated_total, frag.sum()
        if progress is not None and (i % 500 == 0 or i == len(pods) - 1):
            progress(i + 1, len(pods))
    arrived_pct = arrived / capacity * 100
    return SimulationResult(
        policy=config.policy, seed=config.seed, pods=len(pods), scheduled=scheduled,
        seconds=time.perf_counter() - start,
        alloc_at=discretise(arrived_pct, allocated / capacity * 100),
        frag_at=discretise(arrived_pct, fragmented / capacity * 100),
        extra={"tune": config.tune, "nodes": len(cluster), "gpus": capacity // 1000,
               "typical_pods": len(policy_mix), "occupied_usd_per_hour": _occupied_price(cluster),
               **({"learn_mix_every": learn} if learn > 0 else {})},
    )
