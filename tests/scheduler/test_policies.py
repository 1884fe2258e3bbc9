"""Each paper policy picks the node (and GPU) that its rule says it should on small clusters."""

from __future__ import annotations

import numpy as np
import pytest

from gpufleet.scheduler.model import Cluster, ModelError, Node, PodRequest
from gpufleet.scheduler.policies import POLICIES, choose_gpus, make_policy, select_node
from gpufleet.scheduler.policies.cost import CostOptions
from gpufleet.scheduler.workload import PodShape, WorkloadMix

from .conftest import arange_rank, tiny_cluster

SHARE_MIX = WorkloadMix(shapes=(PodShape(1000, 500, 1, ()), PodShape(1000, 1000, 1, ())), probs=(0.5, 0.5))


def place(policy_name: str, cluster: Cluster, pod: PodRequest, mix: WorkloadMix = SHARE_MIX):
    policy = make_policy(policy_name, mix=mix, rng=np.random.default_rng(1))
    scores = policy.score(cluster, pod)
    node = select_node(scores, arange_rank(cluster))
    return node, choose_gpus(cluster, node, pod, int(scores.share_gpu[node])) if node >= 0 else ()


def test_fgd_puts_a_half_gpu_pod_beside_another_half_instead_of_breaking_a_whole_gpu():
    cluster = tiny_cluster([1000, 1000], [1000, 500])
    assert place("fgd", cluster, PodRequest(1000, 0, 1, 500)) == (1, (1,))


def test_fgd_does_not_strand_a_gpu_that_the_expected_two_gpu_tasks_cannot_use():
    mix = WorkloadMix(shapes=(PodShape(1000, 1000, 2, ()),), probs=(1.0,))
    cluster = tiny_cluster([1000, 1000], [1000, 1000, 1000])
    # Best fit would fill the 2-GPU node and leave one lone GPU; FGD takes one of the three instead.
    assert place("bestfit", cluster, PodRequest(1000, 0, 1, 1000))[0] == 0
    assert place("fgd", cluster, PodRequest(1000, 0, 1, 1000), mix) == (1, (0,))


@pytest.mark.parametrize("policy", ["bestfit", "packing", "clustering", "dotprod"])
def test_packing_style_policies_prefer_the_fuller_node(policy):
    cluster = tiny_cluster([1000, 1000, 1000, 1000], [0, 0, 0, 1000])
    cluster.pod_classes[1, 1] = 3  # three 1-GPU pods live on node 1
    assert place(policy, cluster, PodRequest(1000, 0, 1, 1000))[0] == 1


def test_dotprod_scores_fall_as_free_resources_align_with_the_request():
    cluster = tiny_cluster([1000, 1000, 1000, 1000], [1000], cpu=128000)
    cluster.cpu_free[1] = 0 + 1000
    score = make_policy("dotprod").score(cluster, PodRequest(1000, 0, 1, 1000)).score
    # node 0: <(1, 4/8), (1/128, 1/8)> / 2 = 0.0352 -> 96; node 1: <(1/128, 1/8), ...> / 2 = 0.0078 -> 99
    assert score.tolist() == [96.0, 99.0]


def test_share_pods_take_the_best_fitting_gpu_unless_the_policy_chooses():
    cluster = tiny_cluster([1000, 600, 300, 800])
    assert place("bestfit", cluster, PodRequest(1000, 0, 1, 500)) == (0, (1,))


def test_whole_gpu_pods_take_the_lowest_index_fully_free_gpus():
    cluster = tiny_cluster([500, 1000, 0, 1000, 1000])
    assert place("packing", cluster, PodRequest(1000, 0, 2, 1000)) == (0, (1, 3))


@pytest.mark.parametrize("policy", list(POLICIES))
def test_no_policy_places_a_pod_that_fits_nowhere(policy):
    cluster = tiny_cluster([300, 300], [1000])
    assert place(policy, cluster, PodRequest(1000, 0, 2, 1000)) == (-1, ())
    assert place(policy, cluster, PodRequest(128000, 0, 1, 100)) == (-1, ())


@pytest.mark.parametrize("policy", list(POLICIES))
def test_gpu_model_allow_lists_are_honoured(policy):
    cluster = Cluster.from_nodes([Node("t4", 64000, 65536, 2, "T4"), Node("v100", 64000, 65536, 2, "V100M32")])
    assert place(policy, cluster, PodRequest(1000, 0, 1, 1000, ("V100M32",)))[0] == 1
    assert place(policy, cluster, PodRequest(1000, 0, 1, 1000, ("A100",)))[0] == -1


def test_ties_go_to_the_lowest_rank():
    cluster = tiny_cluster([1000], [1000], [1000])
    scores = make_policy("bestfit").score(cluster, PodRequest(1000, 0, 1, 1000))
    assert select_node(scores, np.array([2, 0, 1])) == 1


def test_random_policy_spreads_over_feasible_nodes_only():
    cluster = tiny_cluster([1000], [0], [1000])
    policy = make_policy("random", rng=np.random.default_rng(3))
    picks = {select_node(policy.score(cluster, PodRequest(0, 0, 1, 500)), arange_rank(cluster))
             for _ in range(50)}
    assert picks == {0, 2}


def test_unknown_policy_names_are_rejected_with_the_choices():
    with pytest.raises(ValueError, match="choose one of random, dotprod"):
        make_policy("tetris")
    with pytest.raises(ValueError, match="needs a workload mix"):
        make_policy("fgd")


def test_placing_more_than_a_gpu_holds_is_refused_and_changes_nothing():
    cluster = tiny_cluster([400])
    before = cluster.gpu_free.copy()
    with pytest.raises(ModelError, match="cannot take 500m"):
        cluster.place(0, PodRequest(1000, 0, 1, 500), [0])
    assert (cluster.gpu_free == before).all() and cluster.version[0] == 0


def test_fgd_cache_follows_cluster_changes():
    cluster = tiny_cluster([1000, 1000], [1000, 1000])
    policy = make_policy("fgd", mix=SHARE_MIX)
    first = policy.fragmentation(cluster).copy()
    cluster.place(0, PodRequest(1000, 0, 1, 500), [0])
    second = policy.fragmentation(cluster)
    assert second[0] > first[0] and second[1] == first[1]


def priced_cluster() -> Cluster:
    return Cluster.from_nodes([
        Node("cheap-spot", 64000, 65536, 2, "V100M32", price_per_hour=2.0, spot=True),
        Node("dear", 64000, 65536, 2, "V100M32", price_per_hour=8.0),
        Node("cheap", 64000, 65536, 2, "V100M32", price_per_hour=4.0),
    ])


def test_the_cost_policy_takes_the_cheapest_on_demand_node_unless_the_pod_may_run_on_spot():
    pod = PodRequest(1000, 0, 1, 1000)
    assert place("cost", priced_cluster(), pod)[0] == 2
    spot_ok = make_policy("cost", mix=SHARE_MIX, cost_options=CostOptions(interruptible=True))
    assert select_node(spot_ok.score(priced_cluster(), pod), np.arange(3)) == 0


@pytest.mark.parametrize("policy", ["binpack", "spread"])
def test_binpack_and_spread_disagree_on_an_empty_and_a_used_node(policy):
    cluster = tiny_cluster([1000, 1000], [1000, 0])
    assert place(policy, cluster, PodRequest(1000, 0, 1, 1000))[0] == (1 if policy == "binpack" else 0)
