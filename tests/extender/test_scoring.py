"""Policies rank candidate nodes the way their names promise, and scores map to 0..10 with one best."""

from __future__ import annotations

import numpy as np
import pytest

from gpufleet.core.clock import FakeClock
from gpufleet.core.pricing import PriceCatalog
from gpufleet.scheduler.extender.nodes import parse_node
from gpufleet.scheduler.extender.pods import parse_pod
from gpufleet.scheduler.extender.scoring import Scorer, _to_scores
from gpufleet.scheduler.extender.state import ClusterState

from . import payloads as P

CATALOG = PriceCatalog.default()


def state_of(nodes, pods=()) -> ClusterState:
    state = ClusterState(clock=FakeClock(), resources=())
    state.replace_nodes([parse_node(n, CATALOG) for n in nodes])
    state.replace_pods([parse_pod(p) for p in pods])
    return state


def running(name, node, gpus, ids, milli=None):
    annotations = {"gpufleet.io/gpu-ids": ids}
    if milli:
        annotations["gpufleet.io/gpu-milli"] = str(milli)
    return P.pod(name, gpus=gpus, cpu="1", node_name=node, phase="Running", annotations=annotations)


def rank(state, policy, gpus=1, names=None, **pod_kwargs):
    pod = parse_pod(P.pod(gpus=gpus, annotations={"gpufleet.io/placement": policy, **pod_kwargs.pop("ann", {})},
                          **pod_kwargs))
    names = names or list(state.cluster.index)
    return names, Scorer().rank(state, pod, policy, names)


def best_of(names, ranking):
    return names[ranking.best]


def test_score_mapping_gives_10_to_one_best_1_to_9_to_other_feasible_and_0_to_infeasible():
    raw = np.array([5.0, 1.0, 3.0, -np.inf, 5.0])
    ok = np.array([True, True, True, False, True])
    assert _to_scores(raw, ok, 4).tolist() == [9, 1, 5, 0, 10]
    assert _to_scores(np.array([2.0, 2.0]), np.array([True, True]), 0).tolist() == [10, 9]
    assert _to_scores(np.array([1.0, 0.999999]), np.array([True, True]), 0).tolist() == [10, 1]


def test_fgd_keeps_a_whole_8_gpu_node_free_by_filling_a_partly_used_one():
    state = state_of([P.node("empty"), P.node("used")], [running("a", "used", 4, "0,1,2,3")])
    names, ranking = rank(state, "fgd", gpus=2)
    assert best_of(names, ranking) == "used"
    assert ranking.scores.tolist() == [ranking.scores[0], 10] and ranking.scores[0] < 10
    assert ranking.best_gpus == (4, 5)


def test_fgd_puts_a_gpu_share_on_an_already_shared_gpu():
    state = state_of([P.node("n")], [running("s", "n", 1, "3", milli=500)])
    pod = parse_pod(P.pod(gpus=1, annotations={"gpufleet.io/placement": "fgd", "gpufleet.io/gpu-milli": "500"}))
    ranking = Scorer().rank(state, pod, "fgd", ["n"])
    assert ranking.best_gpus == (3,)


def test_binpack_prefers_the_fullest_node_and_spread_the_emptiest():
    state = state_of([P.node("empty"), P.node("half"), P.node("most")],
                     [running("a", "half", 4, "0,1,2,3"), running("b", "most", 6, "0,1,2,3,4,5")])
    names, ranking = rank(state, "binpack")
    assert best_of(names, ranking) == "most"
    assert ranking.scores.tolist() == [1, 7, 10]
    names, ranking = rank(state, "spread")
    assert best_of(names, ranking) == "empty"
    assert ranking.scores[0] == 10 and ranking.scores[2] < ranking.scores[1] < 10


def test_cost_prefers_the_cheaper_gpu_hour():
    state = state_of([P.node("dear", annotations={"gpufleet.io/price-per-hour": "40"}),
                      P.node("cheap", annotations={"gpufleet.io/price-per-hour": "16"})])
    names, ranking = rank(state, "cost")
    assert best_of(names, ranking) == "cheap"
    part = ranking.top[0]
    assert part.node == "cheap" and part.price_per_gpu_hour == pytest.approx(2.0)


def test_cost_sends_interruptible_pods_to_spot_and_keeps_others_on_demand():
    state = state_of([P.node("od"), P.node("spot", capacity_type="spot")])
    names, ranking = rank(state, "cost", ann={"gpufleet.io/interruptible": "true"})
    assert best_of(names, ranking) == "spot"
    names, ranking = rank(state, "cost")
    assert best_of(names, ranking) == "od"


def test_cost_weighs_fragmentation_so_a_cheap_node_loses_when_it_strands_gpus():
    # Same price; "used" has 4 GPUs taken, so a 4-GPU pod there leaves no fragment, while on "empty" it
    # would split a whole node.
    state = state_of([P.node("empty"), P.node("used")], [running("a", "used", 4, "0,1,2,3")])
    names, ranking = rank(state, "cost", gpus=4)
    assert best_of(names, ranking) == "used"
    assert ranking.top[0].fragmentation_delta_gpus <= ranking.top[1].fragmentation_delta_gpus


def test_nodes_without_room_or_of_excluded_models_score_zero_and_unknown_names_too():
    state = state_of([P.node("full"), P.node("h100", product=P.H100), P.node("ok")],
                     [running("a", "full", 8, "0,1,2,3,4,5,6,7")])
    pod = P.pod(gpus=1, annotations={"gpufleet.io/placement": "binpack"})
    pod["spec"]["nodeSelector"] = {"nvidia.com/gpu.product": P.A100}
    ranking = Scorer().rank(state, parse_pod(pod), "binpack", ["full", "h100", "ok", "ghost"])
    assert ranking.scores.tolist() == [0, 0, 10, 0]


def test_when_nothing_fits_there_is_no_best_node_and_all_scores_are_zero():
    state = state_of([P.node("small", gpus=2)])
    _names, ranking = rank(state, "fgd", gpus=4)
    assert ranking.best == -1 and ranking.scores.tolist() == [0]


@pytest.mark.parametrize("policy", ["off", "nonsense"])
def test_pods_that_did_not_opt_in_get_the_same_score_everywhere(policy):
    state = state_of([P.node("a"), P.node("b", capacity_type="spot")], [running("x", "a", 3, "0,1,2")])
    pod = parse_pod(P.pod(gpus=1))
    ranking = Scorer().rank(state, pod, policy, ["a", "b", "zz"])
    assert ranking.neutral and ranking.scores.tolist() == [0, 0, 0] and ranking.best == -1


def test_ties_go_to_the_node_kube_scheduler_would_pack_first():
    # Two nodes with equal FGD score (both can take the pod without new fragments); the fuller one wins.
    state = state_of([P.node("a"), P.node("b")], [running("x", "b", 2, "0,1")])
    names, ranking = rank(state, "binpack", names=["a", "b"])
    assert best_of(names, ranking) == "b"


def test_the_mix_is_learnt_from_running_gpu_pods_once_there_are_enough():
    pods = [running(f"p{i}", f"n{i % 4}", 1, str(i // 4)) for i in range(24)]
    state = state_of([P.node(f"n{i}") for i in range(4)], pods)
    scorer = Scorer()
    scorer.refresh_mix(state)
    assert scorer.mix.shapes == ((1000, 1000, 1, ()),) and scorer.mix.probs == (1.0,)
    few = Scorer()
    few.refresh_mix(state_of([P.node("n")], pods[:4]))
    assert len(few.mix) == 5  # the default mix until 20 GPU pods run


def test_the_learnt_mix_counts_cpu_only_arrivals_on_gpu_nodes_but_not_per_node_pods():
    """CPU-only pods on GPU nodes take the CPU and memory GPU pods need, so the mix counts them (as the
    paper's mix and the simulator do), except one-per-node pods: a DaemonSet's, a static pod's mirror,
    and any pod on a node without GPUs."""
    gpu = [running(f"p{i}", f"n{i % 4}", 1, str(i // 4)) for i in range(24)]
    job = [P.pod(f"etl-{i}", gpus=0, cpu="8", node_name=f"n{i % 4}", phase="Running") for i in range(8)]
    daemon = []
    for i in range(4):
        d = P.pod(f"exporter-{i}", gpus=0, cpu="2", node_name=f"n{i}", phase="Running")
        d["metadata"]["ownerReferences"][0].update(kind="DaemonSet", apiVersion="apps/v1", name="exporter")
        daemon.append(d)
    static = [P.pod(f"proxy-n{i}", gpus=0, cpu="3", node_name=f"n{i}", phase="Running",
                    annotations={"kubernetes.io/config.mirror": "0b3c"}) for i in range(4)]
    elsewhere = [P.pod(f"web-{i}", gpus=0, cpu="5", node_name="cpu-only", phase="Running") for i in range(8)]
    nodes = [P.node(f"n{i}") for i in range(4)] + [P.node("cpu-only", gpus=0)]
    scorer = Scorer()
    scorer.refresh_mix(state_of(nodes, gpu + job + daemon + static + elsewhere))
    assert dict(zip(scorer.mix.shapes, scorer.mix.probs)) == pytest.approx(
        {(1000, 1000, 1, ()): 0.75, (8000, 0, 0, ()): 0.25})
    assert scorer.mix.memory is not None  # the pods' memory comes with them (fgd-strand's memory term)


def test_a_fixed_workload_mix_is_used_as_given_and_never_relearnt():
    from gpufleet.scheduler.workload import PodShape, WorkloadMix

    fixed = WorkloadMix((PodShape(8000, 1000, 1, ()), PodShape(0, 1000, 8, ())), (0.5, 0.5))
    pods = [running(f"p{i}", f"n{i % 4}", 1, str(i // 4)) for i in range(24)]
    scorer = Scorer(mix=fixed)
    scorer.refresh_mix(state_of([P.node(f"n{i}") for i in range(4)], pods))
    assert scorer.mix == fixed


def test_fgd_strand_ranks_like_the_simulator_policy_on_the_candidate_rows():
    """The extender's fgd-strand is the registry's policy applied to the candidate rows: same best node."""
    from gpufleet.scheduler.policies import make_policy
    from gpufleet.scheduler.workload import DEFAULT_MIX

    state = state_of([P.node(f"n{i}", gpus=8, cpu=str(16 + 8 * i)) for i in range(4)],
                     [running("a", "n1", 2, "0,1"), running("b", "n3", 1, "0")])
    names, ranking = rank(state, "fgd-strand", cpu="6")
    assert ranking.policy == "fgd-strand" and ranking.best >= 0
    expected = make_policy("fgd-strand", mix=DEFAULT_MIX).score(state.cluster, parse_pod(P.pod(gpus=1, cpu="6")).request)
    row = state.cluster.index[names[ranking.best]]
    assert expected.score[row] == expected.score.max()


def test_fgd_strand_in_the_extender_counts_memory_when_the_mix_has_it():
    """The memory term reaches the extender: a pod that would leave too little memory for the node's
    other free GPUs goes to the node with memory to spare (the mix asks 64 GiB per GPU)."""
    from gpufleet.scheduler.workload import PodShape, WorkloadMix

    mix = WorkloadMix(shapes=(PodShape(4000, 1000, 1, ()),), probs=(1.0,), memory=(65536.0,))
    state = state_of([P.node("tight", gpus=4, cpu="64", memory="262144Mi"),
                      P.node("roomy", gpus=4, cpu="64", memory="524288Mi")])
    pod = parse_pod(P.pod(gpus=1, cpu="4", memory="128Gi", annotations={"gpufleet.io/placement": "fgd-strand"}))
    assert Scorer(mix=mix).rank(state, pod, "fgd-strand", ["tight", "roomy"]).best == 1
    without = WorkloadMix(mix.shapes, mix.probs)
    assert Scorer(mix=without).rank(state, pod, "fgd-strand", ["tight", "roomy"]).best == 0


def test_fgd_strand_in_the_extender_leaves_the_model_that_model_bound_demand_needs():
    """The model reserve reaches the extender: with half the mix bound to T4, a pod free to run anywhere
    goes to the G2 node, although the CPU-rich T4 node is where it would strand nothing."""
    from gpufleet.scheduler.workload import PodShape, WorkloadMix

    mix = WorkloadMix(shapes=(PodShape(16000, 1000, 1, ()), PodShape(4000, 1000, 1, ("T4",))), probs=(0.5, 0.5))
    state = state_of([P.node("g2", gpus=2, cpu="16", product="G2"), P.node("t4", gpus=2, cpu="64", product="T4")])
    pod = parse_pod(P.pod(gpus=1, cpu="16", annotations={"gpufleet.io/placement": "fgd-strand"}))
    assert Scorer(mix=mix).rank(state, pod, "fgd-strand", ["g2", "t4"]).best == 0


def test_fgd_strand_in_the_extender_leaves_the_big_node_that_only_big_pods_fit():
    """Demand bound by size reaches the extender: a fifth of the mix is 8-GPU pods that need 600 GiB, which
    only the G3 node holds, so a 1-GPU pod goes to the G2, although it strands a little memory there."""
    from gpufleet.scheduler.workload import PodShape, WorkloadMix

    mix = WorkloadMix((PodShape(16000, 1000, 1, ()), PodShape(64000, 1000, 8, ())), (0.8, 0.2), (32768.0, 614400.0))
    state = state_of([P.node("g2", gpus=8, cpu="96", memory="384Gi", product="G2"),
                      P.node("g3", gpus=8, cpu="128", memory="768Gi", product="G3")])
    pod = parse_pod(P.pod(gpus=1, cpu="16", memory="64Gi", annotations={"gpufleet.io/placement": "fgd-strand"}))
    assert Scorer(mix=mix).rank(state, pod, "fgd-strand", ["g2", "g3"]).best == 0  # without R: the G3
