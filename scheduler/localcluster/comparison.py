"""One comparison on the real control plane: the same openb pods, in the same order, on the same nodes,
placed by kube-scheduler with the gpufleet extender, by kube-scheduler alone, and by the simulator.

``prepare`` picks the nodes and puts the trace's pods in the simulator's order (a seeded ``opt_in``
share carries the policy); ``compare`` runs the simulator on that order, then brings a fresh local
cluster up with the extender (fed the same pods as its workload mix), replays the pods, takes it down,
and does the same on a cluster without the extender with the pods un-annotated. ``gpufleet demo``,
``bench/trace_replay.py`` and ``tests/cluster/test_trace_replay.py`` all run this; they differ only in
what they print (a :class:`Listener`) and how long they wait.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gpufleet.scheduler.localcluster.cluster import (
    OPENB_NODE_LIST,
    ClusterInfo,
    ClusterOptions,
    LocalCluster,
    find_repo_root,
)
from gpufleet.scheduler.localcluster.nodes import NodeSpec, openb_nodes
from gpufleet.scheduler.localcluster.tracereplay import (
    Plan,
    ReplayResult,
    plan,
    replay,
    simulate_same_order,
    write_pod_list,
)
from gpufleet.scheduler.simulator import SimulationResult

log = logging.getLogger(__name__)

#: Labels of the two real runs (state folders, pod labels, Listener calls).
WITH_EXTENDER = "gpufleet"
DEFAULT_ONLY = "default"


@dataclass(frozen=True)
class ComparisonConfig:
    """What to compare, and how long to wait for it."""

    #: An openb pod list CSV.
    trace: Path
    #: openb nodes, evenly spaced over the trace's node list.
    nodes: int
    seed: int = 42
    #: Arrived GPU demand / GPU capacity.
    tune: float = 1.3
    #: The placement the opted-in pods ask for (gpufleet.io/placement).
    policy: str = "fgd"
    #: Share of the pods that opt in (seeded).
    opt_in: float = 1.0
    #: Keep only pods that ask for GPUs (the openb node list has no CPU nodes).
    gpu_only: bool = True
    #: Turn GPU shares into whole GPUs.
    whole_gpus: bool = False
    #: Run the simulator on the same order (seconds, plus numba's compile the first time).
    simulate: bool = True
    #: Run the default-scheduler-only cluster too.
    baseline: bool = True
    #: Seconds allowed for each wait while a cluster comes up.
    cluster_timeout_s: float = 300.0
    #: Seconds allowed for the pods of one replay to settle.
    replay_timeout_s: float = 600.0


@dataclass(frozen=True)
class Setup:
    """The nodes and the pods in order, decided before any cluster runs."""

    config: ComparisonConfig
    specs: list[NodeSpec]
    plan: Plan

    @property
    def gpus(self) -> int:
        return sum(s.gpus for s in self.specs)


@dataclass(frozen=True)
class Comparison:
    """The three placements of one setup (``simulated``/``default`` are None when not run)."""

    setup: Setup
    simulated: SimulationResult | None
    gpufleet: ReplayResult
    default: ReplayResult | None


@dataclass(frozen=True)
class Listener:
    """Where the comparison reports what it does; every hook is optional."""

    #: The simulator's result, before any cluster starts.
    simulated: Callable[[SimulationResult], None] | None = None
    #: (label, with the extender?) before a cluster comes up.
    starting: Callable[[str, bool], None] | None = None
    #: (label) -> where that cluster's own progress lines go (None: the log).
    cluster_progress: Callable[[str], Callable[[str], None] | None] | None = None
    #: (label) -> where the replay's progress lines go.
    replay_progress: Callable[[str], Callable[[str], None] | None] | None = None
    #: (label, cluster, state folder) when a cluster is left running (``keep``).
    kept: Callable[[str, ClusterInfo, Path], None] | None = None


def prepare(config: ComparisonConfig, root: Path | None = None) -> Setup:
    """The openb nodes and the trace's pods in the simulator's order for them."""
    root = root or find_repo_root()
    specs = openb_nodes(root / OPENB_NODE_LIST, config.nodes)
    the_plan = plan(specs, config.trace, seed=config.seed, tune=config.tune, policy=config.policy,
                    opt_in=config.opt_in, gpu_only=config.gpu_only, whole_gpus=config.whole_gpus)
    return Setup(config=config, specs=specs, plan=the_plan)


def compare(setup: Setup, work_dir: Path, listener: Listener = Listener(), *, keep: bool = False) -> Comparison:
    """Simulator, then a cluster with the extender, then one without; each cluster is taken down
    after its replay (``keep``: the one with the extender is left running). The clusters' state goes
    to ``work_dir/state/<label>``, the extender's workload mix to ``work_dir/workload-mix.csv``."""
    config = setup.config
    simulated = None
    if config.simulate:
        simulated = simulate_same_order(setup.specs, setup.plan, policy=config.policy)
        if listener.simulated:
            listener.simulated(simulated)
    mix = write_pod_list(work_dir / "workload-mix.csv", setup.plan.trace).resolve()
    gpufleet = _run(setup, WITH_EXTENDER, setup.plan, work_dir, ("--workload-mix", str(mix)), listener, keep)
    default = None
    if config.baseline:
        default = _run(setup, DEFAULT_ONLY, setup.plan.without_placement(), work_dir, None, listener, False)
    return Comparison(setup=setup, simulated=simulated, gpufleet=gpufleet, default=default)


def _run(setup: Setup, label: str, the_plan: Plan, work_dir: Path, extender_args: tuple[str, ...] | None,
         listener: Listener, keep: bool) -> ReplayResult:
    config = setup.config
    options = ClusterOptions(state_dir=work_dir / "state" / label, profile="openb", nodes=config.nodes,
                             timeout_s=config.cluster_timeout_s, start_extender=extender_args is not None,
                             extender_args=extender_args or ())
    if listener.starting:
        listener.starting(label, extender_args is not None)
    cluster = LocalCluster(options, progress=listener.cluster_progress(label) if listener.cluster_progress else None)
    info = cluster.up()
    emit = listener.replay_progress(label) if listener.replay_progress else None
    try:
        return replay(cluster, info, setup.specs, the_plan, label, emit=emit, timeout_s=config.replay_timeout_s)
    finally:
        if keep:
            log.info("comparison: left running label=%s state_dir=%s", label, options.state_dir)
            if listener.kept:
                listener.kept(label, info, options.state_dir)
        else:
            cluster.down()
