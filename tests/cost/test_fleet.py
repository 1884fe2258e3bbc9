"""Fleet planning and replays on the scheduler's cluster model; Karpenter's launch rule; peak sets."""

from __future__ import annotations

import numpy as np
import pytest

from gpufleet.autoscaler.cost.catalog import parse_catalog
from gpufleet.autoscaler.cost.fleet import Fleet, peak_set, plan, replay
from gpufleet.autoscaler.cost.recommend import baseline, karpenter_choice, nodepool_patches, recommend_fleet
from gpufleet.autoscaler.cost.sizing import Usage, Workload
from gpufleet.scheduler.model import PodRequest

PRICES = """cloud,instance_type,gpu_model,gpu_count,gpu_memory_per_gpu_mib,vcpu,memory_gib,ondemand_usd_per_hour,spot_usd_per_hour
aws,t4.1,t4,1,16384,16,64,1.2,
aws,t4.4,t4,4,16384,48,192,3.9,
aws,l4.1,l4,1,22888,16,64,1.3,
aws,l4.8,l4,8,22888,192,768,13.4,
"""
CATALOG = parse_catalog(PRICES)


def pod(cpu=12000, gpus=1, milli=1000, models=("t4@16384",), name="p"):
    return PodRequest(cpu_milli=cpu, memory_mib=1024, num_gpu=gpus, gpu_milli=milli, gpu_models=models, name=name)


def test_karpenter_picks_the_cheapest_type_that_holds_the_request():
    assert karpenter_choice(pod(models=()), CATALOG.types).name == "t4.1"
    assert karpenter_choice(pod(gpus=2, models=()), CATALOG.types).name == "t4.4"
    assert karpenter_choice(pod(cpu=100_000, models=()), CATALOG.types).name == "l4.8"
    assert karpenter_choice(pod(gpus=16, models=()), CATALOG.types) is None


def test_the_planner_packs_four_one_gpu_pods_onto_one_four_gpu_node():
    pods = [(pod(name=f"p{i}"),) for i in range(4)]
    chosen = plan(pods, [1.2] * 4, CATALOG.types)
    assert [t.name for t, _ in chosen.nodes] == ["t4.4"] and not chosen.unplaceable
    assert chosen.usd_per_hour() == pytest.approx(3.9)


def test_shares_share_a_gpu_in_the_plan():
    pods = [(pod(cpu=2000, milli=250, name=f"s{i}"),) for i in range(4)]
    assert [t.name for t, _ in plan(pods, [0.3] * 4, CATALOG.types).nodes] == ["t4.1"]


def test_a_pod_no_type_holds_is_reported_unplaceable():
    chosen = plan([(pod(gpus=16),)], [1.0], CATALOG.types)
    assert chosen.nodes == () and chosen.unplaceable == (0,)


def test_the_baseline_removes_empty_nodes_and_reports_its_peak():
    pods = [pod(models=(), name=f"p{i}") for i in range(3)]
    arrivals, departures = np.array([0.0, 10.0, 20.0]), np.array([15.0, 30.0, 40.0])
    result = baseline(pods, arrivals, departures, CATALOG)
    assert result.failed == ()
    assert result.peak_usd_per_hour == pytest.approx(2 * 1.2)  # never more than two pods at once
    assert result.mean_usd_per_hour == pytest.approx((1.2 * 10 + 2.4 * 5 + 1.2 * 5 + 2.4 * 10 + 1.2 * 10) / 40)


def test_a_fixed_fleet_replay_reports_the_pods_that_fit_nowhere():
    fleet = Fleet(CATALOG.gpu_classes, width=8)
    fleet.open(CATALOG.get("t4.1"))
    result = replay(fleet, [(pod(name="a"),), (pod(name="b"),)], np.zeros(2), np.full(2, np.inf))
    assert result.failed == (1,)


def test_peak_set_is_the_pods_alive_at_the_heaviest_moment():
    arrivals = np.array([0.0, 5.0, 6.0, 20.0])
    departures = np.array([10.0, 7.0, 30.0, 25.0])
    assert peak_set(arrivals, departures, np.array([1.0, 1.0, 1.0, 5.0])).tolist() == [2, 3]
    assert peak_set(arrivals, departures, np.ones(4)).tolist() == [0, 1, 2]


def test_measured_small_pods_cost_less_than_karpenter_on_their_requests():
    usage = Usage(memory_p99_gib=3.0, compute_p99=0.1)
    pods = [Workload(f"w{i}", 2000, 1024, 1, 1000, usage=usage) for i in range(8)]
    rec = recommend_fleet(pods, np.zeros(8), np.full(8, np.inf), CATALOG)
    assert rec.shortfall == ()
    assert rec.recommended_usd_per_hour < rec.baseline_usd_per_hour
    assert rec.nodepools[0]["spec"]["template"]["spec"]["requirements"][0]["values"] == sorted(
        {k.partition(":")[0] for k in rec.node_types})


def test_a_nodepool_patch_names_the_mix_types_and_capacity_and_an_empty_mix_has_none():
    [pool] = nodepool_patches({"l4.1:spot": 2, "t4.4:spot": 1})
    assert pool["spec"]["template"]["spec"]["requirements"] == [
        {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["l4.1", "t4.4"]},
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]}]
    assert nodepool_patches({}) == ()  # Karpenter refuses operator In without values
