"""The pure parts behind replays and benchmarks: progress lines, Prometheus histograms, the extender's
decision log, GPU-id double-booking checks, trace pods as Pod manifests, allocation and prices."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from gpufleet.scheduler.localcluster.allocation import Placed, allocation, node_prices
from gpufleet.scheduler.localcluster.decisions import fidelity, parse_decisions
from gpufleet.scheduler.localcluster.gpuids import HeldGpus, assignment_problems, parse_ids
from gpufleet.scheduler.localcluster.nodes import uniform_nodes
from gpufleet.scheduler.localcluster.progress import Progress, format_seconds
from gpufleet.scheduler.localcluster.scrape import Samples, difference, quantile
from gpufleet.scheduler.localcluster.tracepods import (
    ReplayPod,
    choose_placements,
    gpu_milli_of,
    model_nodes,
    pod_manifest,
    simulator_order,
)
from gpufleet.scheduler.localcluster.usage import difference as cpu_difference
from gpufleet.scheduler.model import PodRequest
from gpufleet.scheduler.simulator import inflate
from gpufleet.scheduler.workload import WorkloadMix


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_reports_rate_and_time_left_at_most_once_per_interval():
    clock, lines = Ticks(), []
    meter = Progress("pods created", 100, lines.append, every_s=1.0, clock=clock)
    meter.update(0)
    clock.now = 0.5
    meter.update(10)  # within the interval: no line
    clock.now = 2.0
    meter.update(40)
    meter.finish(100)
    assert lines[1] == "pods created 40/100 (40%) 20/s, 3 s left"
    assert lines[-1] == "pods created 100/100 (100%) 50/s in 2 s"
    assert format_seconds(185) == "3 min 05 s" and format_seconds(float("nan")) == "?"


HISTOGRAM = """# TYPE scheduler_scheduling_attempt_duration_seconds histogram
scheduler_scheduling_attempt_duration_seconds_bucket{profile="a",result="scheduled",le="0.001"} 10
scheduler_scheduling_attempt_duration_seconds_bucket{profile="a",result="scheduled",le="0.01"} 90
scheduler_scheduling_attempt_duration_seconds_bucket{profile="a",result="scheduled",le="+Inf"} 100
scheduler_scheduling_attempt_duration_seconds_sum{profile="a",result="scheduled"} 0.5
scheduler_scheduling_attempt_duration_seconds_count{profile="a",result="scheduled"} 100
scheduler_scheduling_attempt_duration_seconds_bucket{profile="b",result="scheduled",le="0.001"} 0
scheduler_scheduling_attempt_duration_seconds_bucket{profile="b",result="scheduled",le="0.01"} 0
scheduler_scheduling_attempt_duration_seconds_bucket{profile="b",result="scheduled",le="+Inf"} 0
# TYPE scheduler_schedule_attempts_total counter
scheduler_schedule_attempts_total{profile="a",result="scheduled"} 100
scheduler_schedule_attempts_total{profile="a",result="error"} 3
"""


def test_histograms_sum_over_labels_and_quantiles_interpolate_like_promql():
    samples = Samples.parse(HISTOGRAM)
    buckets = samples.histogram("scheduler_scheduling_attempt_duration_seconds")
    assert buckets == [(0.001, 10.0), (0.01, 90.0), (math.inf, 100.0)]
    assert quantile(0.5, buckets) == pytest.approx(0.001 + 0.009 * 40 / 80)
    assert quantile(0.05, buckets) == pytest.approx(0.0005)
    assert quantile(0.99, buckets) == 0.01  # in the +Inf bucket: the largest finite bound
    assert math.isnan(quantile(0.5, [(1.0, 0.0), (math.inf, 0.0)]))
    assert samples.total("scheduler_schedule_attempts_total", result="error") == 3
    assert difference(buckets, [(0.001, 5.0)]) == [(0.001, 5.0), (0.01, 90.0), (math.inf, 100.0)]


def test_the_last_decision_per_pod_is_read_from_the_extender_log_and_compared_with_bindings():
    log = [
        "2026-11-28 07:00:00,000 INFO gpufleet.scheduler.extender.service pod=ns/a policy=fgd node=n1 gpus=0,1\n",
        "2026-11-28 07:00:00,001 INFO gpufleet.scheduler.extender.service pod=ns/a/x node=n1 gpus=0,1 bound\n",
        "2026-11-28 07:00:01,000 INFO gpufleet.scheduler.extender.service pod=ns/b policy=binpack node=n2 gpus=3\n",
        "2026-11-28 07:00:02,000 INFO gpufleet.scheduler.extender.service pod=ns/b policy=binpack node=n3 gpus=\n",
    ]
    decisions = parse_decisions(log)
    assert decisions["ns/a"].gpus == (0, 1) and decisions["ns/b"].node == "n3" and decisions["ns/b"].gpus == ()
    measured = fidelity(decisions, {"ns/a": "n1", "ns/b": "n2", "ns/c": "n4"})
    assert (measured.bound, measured.decided, measured.on_top_node) == (3, 2, 1)
    assert measured.misses == (("ns/b", "n3", "n2"), ("ns/c", "-", "n4"))


@pytest.mark.parametrize(("held", "problem"), [
    ([HeldGpus("a", "n", (0, 1), 2, 1000), HeldGpus("b", "n", (2,), 1, 1000)], None),
    ([HeldGpus("a", "n", (0,), 1, 1000), HeldGpus("b", "n", (0,), 1, 500)], "GPU 0 is double-booked"),
    ([HeldGpus("a", "n", (3,), 1, 600), HeldGpus("b", "n", (3,), 1, 500)], "GPU 3 is double-booked"),
    ([HeldGpus("a", "n", (3,), 1, 500), HeldGpus("b", "n", (3,), 1, 500)], None),
    ([HeldGpus("a", "n", (8,), 1, 1000)], "node has GPUs 0..7"),
    ([HeldGpus("a", "n", (0, 1), 1, 1000)], "for a request of 1"),
    ([HeldGpus("a", "n", tuple(range(6)), 6, 1000), HeldGpus("b", "n", (), 3, 1000)], "held without gpu-ids"),
    ([HeldGpus("a", "elsewhere", (0,), 1, 1000)], "not a known node"),
])
def test_gpu_assignments_are_checked_for_double_bookings_per_node(held, problem):
    problems = assignment_problems(held, {"n": 8})
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0]


def test_gpu_ids_parse_or_are_none():
    assert parse_ids("0,3") == (0, 3)
    assert parse_ids("") is None and parse_ids(None) is None and parse_ids("a,b") is None


@pytest.mark.parametrize(("form", "annotations", "limits"), [
    ("resource", {"gpufleet.io/placement": "fgd"}, {"gpufleet.io/gpu-milli": "500"}),
    ("device", {"gpufleet.io/placement": "fgd", "gpufleet.io/gpu-milli": "500"}, {"nvidia.com/gpu": "1"}),
])
def test_trace_pods_become_pods_kube_scheduler_and_the_extender_read_as_intended(form, annotations, limits):
    share = ReplayPod(7, PodRequest(4000, 2048, 1, 500, ("T4",), "p"), "fgd")
    manifest = pod_manifest(share, "t", "run1", share_form=form)
    assert manifest["metadata"]["name"] == "t-00007"
    assert manifest["metadata"]["annotations"] == annotations
    assert manifest["spec"]["schedulerName"] == "gpufleet-scheduler"
    resources = manifest["spec"]["containers"][0]["resources"]
    assert resources == {"requests": {"cpu": "4000m", "memory": "2048Mi"}, "limits": limits}
    term = manifest["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["Tesla-T4"]
    assert gpu_milli_of(manifest) == (1, 500)
    plain = pod_manifest(ReplayPod(1, PodRequest(0, 0, 2, 1000), None), "t", "run1")
    assert plain["spec"]["schedulerName"] == "default-scheduler" and "annotations" not in plain["metadata"]
    assert gpu_milli_of(plain) == (2, 1000)
    from gpufleet.scheduler.extender.pods import parse_pod

    parsed = parse_pod({**manifest, "metadata": {**manifest["metadata"], "namespace": "ns", "uid": "u"}})
    assert (parsed.request.num_gpu, parsed.request.gpu_milli, parsed.placement) == (1, 500, "fgd")


def test_the_replay_order_is_the_simulators_and_opt_in_is_seeded():
    nodes = model_nodes(uniform_nodes(4))
    trace = [PodRequest(1000, 0, 1, 1000, name=f"p{i}") for i in range(20)]
    import numpy as np

    assert simulator_order(nodes, trace, seed=3, tune=1.0) == inflate(trace, 32_000, 1.0, np.random.default_rng(3))
    pods = choose_placements(trace, "fgd", opt_in=0.5, seed=1)
    assert pods == choose_placements(trace, "fgd", opt_in=0.5, seed=1)
    assert 0 < sum(1 for p in pods if p.placement) < 20
    assert all(p.placement is None for p in choose_placements(trace, "fgd", opt_in=0.0))
    with pytest.raises(ValueError):
        choose_placements(trace, "fgd", opt_in=1.5)


def test_allocation_counts_bound_demand_occupied_nodes_and_their_price():
    specs = uniform_nodes(3)  # p4de.24xlarge, the third (index 2) on-demand too
    pods = [ReplayPod(0, PodRequest(1000, 0, 8, 1000), "fgd"), ReplayPod(1, PodRequest(1000, 0, 1, 500), "fgd"),
            ReplayPod(2, PodRequest(1000, 0, 8, 1000), "fgd")]
    placed = [Placed(pods[0], "gpu-node-00000", "0,1,2,3,4,5,6,7"), Placed(pods[1], "gpu-node-00001", "2"),
              Placed(pods[2], "")]
    mix = WorkloadMix.from_pods([p.request for p in pods])
    result = allocation(specs, placed, mix)
    assert (result.gpus, result.bound, result.allocated_milli, result.devices_allocated) == (24, 2, 8500, 9)
    assert result.free_gpus == pytest.approx(15.5) and result.unmet_gpus == pytest.approx(8.0)
    prices, estimated = node_prices(specs)
    assert result.occupied_nodes == 2 and result.cost_per_hour == pytest.approx(prices[0] + prices[1])
    assert not estimated.any() and result.fragmented_gpus >= 0


def test_nodes_the_catalog_lacks_are_priced_at_the_median_per_gpu_and_marked_estimated():
    from gpufleet.scheduler.localcluster.nodes import openb_nodes

    node_list = Path(__file__).resolve().parents[2] / "bench/data/alibaba-gpu-v2023/openb_node_list_gpu_node.csv"
    specs = openb_nodes(node_list, 30)
    prices, estimated = node_prices(specs)
    assert estimated.any() and not estimated.all() and (prices > 0).all()


def test_cpu_time_of_a_component_restarted_between_snapshots_counts_from_its_restart():
    assert cpu_difference({"a": 5.0, "b": 1.0, "c": 2.0}, {"a": 3.0, "b": 4.0}) == {"a": 2.0, "b": 1.0, "c": 2.0}
