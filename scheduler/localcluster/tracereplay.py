"""Replaying a slice of the openb trace on the local cluster, and the same pods in the simulator.

``plan`` takes the cluster's nodes, puts the trace's pods in the simulator's order for those nodes
(seeded shuffle, inflated to ``tune`` x their GPU capacity) and chooses which pods opt in.
``replay`` queues them on a running cluster, lets kube-scheduler (and the extender, if the cluster
has one) place them, and reports the allocation, GPU-id double bookings and, for opted-in pods,
how often they landed on the extender's top node. ``simulate_same_order`` runs the simulator on
the same nodes and order. ``comparison.py`` puts the three together (what the demo, the benchmark and
the tests run).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gpufleet.scheduler.localcluster import extender as extender_seam
from gpufleet.scheduler.localcluster.allocation import Allocation, allocation, placements
from gpufleet.scheduler.localcluster.cluster import ClusterInfo, LocalCluster
from gpufleet.scheduler.localcluster.decisions import Fidelity, fidelity, read_decisions
from gpufleet.scheduler.localcluster.gpuids import HeldGpus, assignment_problems
from gpufleet.scheduler.localcluster.nodes import NodeSpec
from gpufleet.scheduler.localcluster.podloader import PodLoader
from gpufleet.scheduler.localcluster.replay import SchedulingRun, schedule_in_order
from gpufleet.scheduler.localcluster.tracepods import (
    ReplayPod,
    choose_placements,
    model_nodes,
    pod_manifest,
    simulator_order,
)
from gpufleet.scheduler.model import GPU_MILLI, PodRequest
from gpufleet.scheduler.simulator import SimulationConfig, SimulationResult, simulate
from gpufleet.scheduler.trace import read_pods
from gpufleet.scheduler.workload import WorkloadMix

log = logging.getLogger(__name__)

PREFIX = "t"


@dataclass(frozen=True)
class Plan:
    """The pods of one replay, in order, and the workload mix fragmentation is measured against."""

    pods: list[ReplayPod]
    mix: WorkloadMix
    trace: list  # the trace's PodRequests, before shuffling and inflation
    seed: int
    tune: float

    @property
    def opted_in(self) -> int:
        return sum(1 for p in self.pods if p.placement)

    def without_placement(self) -> Plan:
        """The same pods in the same order, none opted in (what the default scheduler alone gets)."""
        return Plan(with_placement(self.pods, None), self.mix, self.trace, self.seed, self.tune)


@dataclass
class ReplayResult:
    label: str
    run: SchedulingRun
    allocation: Allocation
    problems: list[str]
    fidelity: Fidelity | None


def plan(specs: Sequence[NodeSpec], trace_path: Path, *, seed: int = 42, tune: float = 1.3,
         policy: str | None = "fgd", opt_in: float = 1.0, max_pods: int | None = None,
         gpu_only: bool = True, whole_gpus: bool = False) -> Plan:
    """The simulator's pod order for ``specs``; a seeded ``opt_in`` share carries ``policy``.
    ``gpu_only`` keeps the pods that ask for GPUs (kube-scheduler asks the extender about those only;
    CPU-only pods belong on CPU nodes, which the openb node list lacks). ``whole_gpus`` turns GPU
    shares into whole GPUs (a cluster without a sharing layer)."""
    trace = read_pods(trace_path)
    if gpu_only:
        trace = [p for p in trace if p.num_gpu]
    if whole_gpus:
        trace = [whole(p) for p in trace]
    order = simulator_order(model_nodes(specs), trace, seed, tune)
    if max_pods is not None:
        order = order[:max_pods]
    return Plan(pods=choose_placements(order, policy, opt_in, seed), mix=WorkloadMix.from_pods(trace),
                trace=trace, seed=seed, tune=tune)


def write_pod_list(path: Path, pods: Sequence[PodRequest]) -> Path:
    """The pods as an openb pod list CSV (for ``gpufleet extender --workload-mix``)."""
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli", "gpu_spec"])
        for pod in pods:
            writer.writerow([pod.name, pod.cpu_milli, pod.memory_mib, pod.num_gpu, pod.gpu_milli,
                             "|".join(pod.gpu_models)])
    return path


def whole(request: PodRequest) -> PodRequest:
    """A GPU share as the whole GPU it occupies where GPUs are not shared."""
    if not request.is_gpu_share:
        return request
    return PodRequest(request.cpu_milli, request.memory_mib, 1, GPU_MILLI, request.gpu_models, request.name)


def with_placement(pods: Sequence[ReplayPod], policy: str | None) -> list[ReplayPod]:
    """The same pods, all with ``policy`` (None: all plain)."""
    return [ReplayPod(p.index, p.request, policy) for p in pods]


def replay(cluster: LocalCluster, info: ClusterInfo, specs: Sequence[NodeSpec], the_plan: Plan, label: str, *,
           namespace: str = "replay", emit: Callable[[str], None] | None = None,
           timeout_s: float = 600.0, gpufleet_profile: bool = True, share_form: str | None = None) -> ReplayResult:
    """Queue the plan's pods in ``namespace`` of a running cluster and report where they went.
    ``share_form``: how GPU shares ask (``tracepods.SHARE_FORMS``); by default the extended resource
    where the cluster runs the extender, else one whole device each (kube-scheduler alone cannot
    keep a share on one GPU)."""
    if share_form is None:
        share_form = "resource" if info.extender_url else "device"
    manifests = [pod_manifest(p, PREFIX, label, gpufleet_profile=gpufleet_profile, share_form=share_form)
                 for p in the_plan.pods]
    with PodLoader(info.kubeconfig) as loader:
        loader.ensure_namespace(namespace)
        run = schedule_in_order(cluster, info, loader, namespace, manifests, emit=emit, timeout_s=timeout_s)
    where = {o.name: (o.node, o.gpu_ids) for o in run.outcomes}
    placed = placements(the_plan.pods, where, PREFIX)
    result_allocation = allocation(specs, placed, the_plan.mix)
    held = [HeldGpus(pod=p.pod.name(PREFIX), node=p.node, ids=_ids(p.gpu_ids), gpus=p.pod.request.num_gpu,
                     milli=p.pod.request.gpu_milli) for p in placed if p.node and p.pod.request.num_gpu]
    problems = assignment_problems(held, {s.name: s.gpus for s in specs})
    measured: Fidelity | None = None
    if info.extender_url and "extender" in info.ports:
        decisions = read_decisions(cluster.processes.log_path(extender_seam.NAME))
        opted = {f"{namespace}/{p.pod.name(PREFIX)}": p.node for p in placed
                 if p.node and p.pod.placement and p.pod.request.num_gpu}
        measured = fidelity(decisions, opted)
    return ReplayResult(label=label, run=run, allocation=result_allocation, problems=problems, fidelity=measured)


def _ids(value: str | None) -> tuple[int, ...]:
    from gpufleet.scheduler.localcluster.gpuids import parse_ids

    return parse_ids(value) or ()


def simulate_same_order(specs: Sequence[NodeSpec], the_plan: Plan, policy: str = "fgd") -> SimulationResult:
    """The simulator on the same nodes, trace, seed and tune (hence the same pod order)."""
    return simulate(model_nodes(specs), the_plan.trace, SimulationConfig(policy=policy, seed=the_plan.seed,
                                                                        tune=the_plan.tune))
