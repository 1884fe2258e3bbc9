"""A slice of the openb trace through the real kube-scheduler: with the gpufleet extender (FGD) it
leaves fewer GPUs unallocated than the default scheduler alone on the same pods, in the same order,
on the same nodes, and hands no GPU out twice. The comparison is the one `gpufleet demo` and
bench/trace_replay.py run (gpufleet.scheduler.localcluster.comparison)."""

from __future__ import annotations

import pytest

from gpufleet.scheduler.localcluster.cluster import find_repo_root
from gpufleet.scheduler.localcluster.comparison import ComparisonConfig, compare, prepare
from gpufleet.scheduler.localcluster.tracepods import DEFAULT_TRACE

pytestmark = pytest.mark.cluster

#: Nodes of the openb profile (evenly spaced over the trace's 1,213) and the trace variant whose
#: multi-GPU pods make fragmentation matter; about 200 pods at 130% of the GPUs.
NODES = 40
TRACE = DEFAULT_TRACE.with_name("openb_pod_list_multigpu50.csv")


def test_the_extender_leaves_fewer_gpus_unallocated_than_the_default_scheduler(cluster_binaries, tmp_path):
    root = find_repo_root()
    config = ComparisonConfig(trace=root / TRACE, nodes=NODES, seed=42, tune=1.3, policy="fgd", simulate=False,
                              cluster_timeout_s=120, replay_timeout_s=180)
    comparison = compare(prepare(config, root), tmp_path)
    gpufleet, default = comparison.gpufleet, comparison.default
    assert default is not None and comparison.simulated is None

    ours, theirs = gpufleet.allocation, default.allocation
    summary = (f"gpufleet: {ours.alloc_pct:.1f}% allocated, {ours.free_gpus:.1f} GPUs free; "
               f"default: {theirs.alloc_pct:.1f}%, {theirs.free_gpus:.1f} GPUs free")
    assert ours.unmet_gpus > 0 and theirs.unmet_gpus > 0, "the slice must ask for more than fits: " + summary
    assert ours.free_gpus < theirs.free_gpus, summary
    assert not gpufleet.problems and not default.problems
    assert gpufleet.fidelity is not None and gpufleet.fidelity.decided >= 0.9 * gpufleet.fidelity.bound
    assert gpufleet.fidelity.on_top_node >= 0.98 * gpufleet.fidelity.decided, gpufleet.fidelity.misses
    assert default.fidelity is None  # no extender, no decisions
