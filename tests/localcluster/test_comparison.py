"""The comparison's setup, before any cluster runs: openb nodes, the simulator's order, a seeded opt-in
share, and the default scheduler's copy of the same pods (same order, none opted in)."""

from __future__ import annotations

import pytest

from gpufleet.scheduler.localcluster.cluster import find_repo_root
from gpufleet.scheduler.localcluster.comparison import ComparisonConfig, prepare
from gpufleet.scheduler.localcluster.tracepods import DEFAULT_TRACE, model_nodes, simulator_order

TRACE = DEFAULT_TRACE.with_name("openb_pod_list_multigpu50.csv")


@pytest.mark.parametrize(("opt_in", "seed"), [(1.0, 42), (0.5, 7), (0.0, 3)])
def test_the_setup_is_the_simulators_order_with_a_seeded_opt_in_share(opt_in, seed):
    root = find_repo_root()
    config = ComparisonConfig(trace=root / TRACE, nodes=12, seed=seed, opt_in=opt_in)
    setup = prepare(config, root)
    assert len(setup.specs) == 12 and setup.gpus == sum(s.gpus for s in setup.specs)
    order = simulator_order(model_nodes(setup.specs), setup.plan.trace, seed, config.tune)
    assert [p.request for p in setup.plan.pods] == order
    assert all(p.request.num_gpu for p in setup.plan.pods)  # gpu_only by default
    assert {p.placement for p in setup.plan.pods if p.placement} <= {"fgd"}
    assert abs(setup.plan.opted_in - opt_in * len(order)) <= max(3, 0.15 * len(order))
    assert prepare(config, root).plan == setup.plan


def test_the_default_schedulers_plan_has_the_same_pods_in_the_same_order_none_opted_in():
    root = find_repo_root()
    setup = prepare(ComparisonConfig(trace=root / TRACE, nodes=12, opt_in=1.0), root)
    plain = setup.plan.without_placement()
    assert [(p.index, p.request) for p in plain.pods] == [(p.index, p.request) for p in setup.plan.pods]
    assert plain.opted_in == 0 and setup.plan.opted_in == len(setup.plan.pods)
    assert (plain.mix, plain.trace, plain.seed, plain.tune) == (setup.plan.mix, setup.plan.trace, 42, 1.3)
