"""A slice of the openb trace through the real kube-scheduler: with the gpufleet extender (FGD) it
leaves fewer GPUs unallocated than the default scheduler alone on the same pods, in the same order,
on the same nodes, and hands no GPU out twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpufleet.scheduler.localcluster.cluster import (
    OPENB_NODE_LIST,
    ClusterOptions,
    LocalCluster,
    find_repo_root,
)
from gpufleet.scheduler.localcluster.nodes import openb_nodes
from gpufleet.scheduler.localcluster.tracepods import DEFAULT_TRACE
from gpufleet.scheduler.localcluster.tracereplay import (
    Plan,
    ReplayResult,
    plan,
    replay,
    with_placement,
    write_pod_list,
)

pytestmark = pytest.mark.cluster

#: Nodes of the openb profile (evenly spaced over the trace's 1,213) and the trace variant whose
#: multi-GPU pods make fragmentation matter; about 200 pods at 130% of the GPUs.
NODES = 40
TRACE = DEFAULT_TRACE.with_name("openb_pod_list_multigpu50.csv")


def _run(tmp_path: Path, name: str, the_plan: Plan, specs, extender_args: tuple[str, ...] | None) -> ReplayResult:
    options = ClusterOptions(state_dir=tmp_path / name, profile="openb", nodes=NODES, timeout_s=120,
                             start_extender=extender_args is not None, extender_args=extender_args or ())
    cluster = LocalCluster(options)
    info = cluster.up()
    try:
        return replay(cluster, info, specs, the_plan, name, timeout_s=180)
    finally:
        cluster.down()


def test_the_extender_leaves_fewer_gpus_unallocated_than_the_default_scheduler(cluster_binaries, tmp_path):
    root = find_repo_root()
    specs = openb_nodes(root / OPENB_NODE_LIST, NODES)
    the_plan = plan(specs, root / TRACE, seed=42, tune=1.3, policy="fgd")
    mix = write_pod_list(tmp_path / "mix.csv", the_plan.trace)
    gpufleet = _run(tmp_path, "gpufleet", the_plan, specs, ("--workload-mix", str(mix)))
    plain = Plan(with_placement(the_plan.pods, None), the_plan.mix, the_plan.trace, the_plan.seed, the_plan.tune)
    default = _run(tmp_path, "default", plain, specs, None)

    ours, theirs = gpufleet.allocation, default.allocation
    summary = (f"gpufleet: {ours.alloc_pct:.1f}% allocated, {ours.free_gpus:.1f} GPUs free; "
               f"default: {theirs.alloc_pct:.1f}%, {theirs.free_gpus:.1f} GPUs free")
    assert ours.unmet_gpus > 0 and theirs.unmet_gpus > 0, "the slice must ask for more than fits: " + summary
    assert ours.free_gpus < theirs.free_gpus, summary
    assert not gpufleet.problems and not default.problems
    assert gpufleet.fidelity is not None and gpufleet.fidelity.decided >= 0.9 * gpufleet.fidelity.bound
    assert gpufleet.fidelity.on_top_node >= 0.98 * gpufleet.fidelity.decided, gpufleet.fidelity.misses
