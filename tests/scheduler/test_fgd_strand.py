"""fgd-strand: its kernels agree with the plain-Python twins, the look-ahead tables hold the values
worked out by hand, and the policy avoids the stranding and the share splits that FGD does not see."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpufleet.scheduler import kernels, kernels_strand, reference
from gpufleet.scheduler.model import Cluster, Node, PodRequest
from gpufleet.scheduler.policies import POLICIES, choose_gpus, make_policy, select_node
from gpufleet.scheduler.policies.fgd_strand import (
    NAME,
    StrandOptions,
    StrandPolicy,
    bound_demand,
    cpu_per_gpu_milli,
    fit_bound_demand,
    fits_every_model,
    memory_per_gpu_milli,
    model_reserve,
)
from gpufleet.scheduler.simulator import SimulationConfig, simulate
from gpufleet.scheduler.trace import read_nodes, read_pods
from gpufleet.scheduler.workload import PodShape, WorkloadMix

from .conftest import DATA, arange_rank, clusters, mixes, pods, tiny_cluster

SETTINGS = settings(max_examples=200, deadline=None)
WEIGHTS = st.sampled_from([0.0, 0.25, 1.0, 3.0])


def tables(mix: WorkloadMix, cluster: Cluster) -> kernels_strand.WasteTables:
    return kernels_strand.waste_tables(mix.arrays(cluster), len(cluster.model_names))


@SETTINGS
@given(cluster=clusters(), mix=mixes())
def test_node_waste_matches_reference(cluster, mix):
    fast = kernels_strand.node_waste(cluster.gpu_free, cluster.cpu_free, cluster.gpu_model, tables(mix, cluster))
    arrays = mix.arrays(cluster)
    slow = [reference.node_waste(list(cluster.gpu_free[n]), int(cluster.cpu_free[n]), int(cluster.gpu_model[n]),
                                 arrays) for n in range(len(cluster))]
    np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-9)


SIGMAS = st.sampled_from([0.0, 1.0, 16.384, 50.0, 262.0])


@SETTINGS
@given(cluster=clusters(), rho=st.sampled_from([0.0, 0.5, 3.152, 12.0]), sigma=SIGMAS)
def test_stranded_matches_reference(cluster, rho, sigma):
    fast = kernels_strand.stranded(cluster.gpu_free, cluster.cpu_free, rho, cluster.memory_free, sigma)
    slow = [reference.stranded(list(cluster.gpu_free[n]), int(cluster.cpu_free[n]), rho,
                               int(cluster.memory_free[n]), sigma) for n in range(len(cluster))]
    np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-9)
    cpu_only = kernels_strand.stranded(cluster.gpu_free, cluster.cpu_free, rho)
    assert (fast >= cpu_only).all()  # memory can only strand more
    if sigma == 0.0:
        assert fast.tolist() == cpu_only.tolist()  # sigma 0 turns the memory term off exactly


@SETTINGS
@given(cluster=clusters(), pod=pods(), mix=mixes(), lookahead=WEIGHTS, stranding=WEIGHTS,
       relief=st.sampled_from([0.0, 0.25, 1.0]), reserve=WEIGHTS, sigma=st.one_of(st.none(), SIGMAS))
def test_strand_scores_and_gpu_choice_match_reference(cluster, pod, mix, lookahead, stranding, relief, reserve,
                                                      sigma):
    """``sigma`` None: the mix's own memory per GPU milli (``memory_per_gpu_milli``)."""
    arrays = mix.arrays(cluster)
    ok = kernels.feasible_nodes(cluster.gpu_free, cluster.cpu_free, cluster.memory_free, cluster.gpu_model,
                                pod.cpu_milli, pod.memory_mib, pod.num_gpu, pod.gpu_milli,
                                cluster.model_mask(pod.gpu_models))
    before = kernels.node_fragmentation(cluster.gpu_free, cluster.cpu_free, cluster.gpu_model, arrays)
    rho = cpu_per_gpu_milli(mix)
    sigma = memory_per_gpu_milli(mix) if sigma is None else sigma
    memory = (cluster.memory_free, pod.memory_mib, sigma)
    weights = reserve * model_reserve(bound_demand(mix, cluster), cluster.gpu_free, cluster.gpu_model)
    args = (cluster.gpu_free, cluster.cpu_free, cluster.gpu_model, ok, before, pod.cpu_milli, pod.num_gpu,
            pod.gpu_milli, arrays)
    fast_score, fast_gpu = kernels_strand.strand_scores(*args, tables(mix, cluster), lookahead, stranding, rho,
                                                        relief, weights, *memory)
    slow_score, slow_gpu = reference.strand_scores(*args, lookahead, stranding, rho, relief, weights.tolist(),
                                                   cluster.memory_free.tolist(), pod.memory_mib, sigma)
    np.testing.assert_allclose(fast_score, slow_score, rtol=1e-12, atol=1e-9)
    assert fast_gpu.tolist() == slow_gpu
    if sigma == 0.0:  # the memory term off is exactly the CPU-only policy
        cpu_only = kernels_strand.strand_scores(*args, tables(mix, cluster), lookahead, stranding, rho, relief,
                                                weights)
        assert fast_score.tolist() == cpu_only[0].tolist() and fast_gpu.tolist() == cpu_only[1].tolist()


@SETTINGS
@given(cluster=clusters(), pod=pods(), mix=mixes())
def test_without_relief_stranding_only_ever_lowers_a_score(cluster, pod, mix):
    arrays = mix.arrays(cluster)
    ok = kernels.feasible_nodes(cluster.gpu_free, cluster.cpu_free, cluster.memory_free, cluster.gpu_model,
                                pod.cpu_milli, pod.memory_mib, pod.num_gpu, pod.gpu_milli,
                                cluster.model_mask(pod.gpu_models))
    before = kernels.node_fragmentation(cluster.gpu_free, cluster.cpu_free, cluster.gpu_model, arrays)
    args = (cluster.gpu_free, cluster.cpu_free, cluster.gpu_model, ok, before, pod.cpu_milli, pod.num_gpu,
            pod.gpu_milli, arrays, tables(mix, cluster), 0.25)
    without, _ = kernels_strand.strand_scores(*args, 0.0, 1.0, 0.0)
    penalised, _ = kernels_strand.strand_scores(*args, 1.0, 1.0, 0.0)
    assert (penalised <= without).all()


def test_without_the_new_terms_the_scores_are_fgds():
    cluster = tiny_cluster([1000, 470, 0, 350], [1000, 1000], [810, 190])
    mix = WorkloadMix(shapes=(PodShape(3152, 810, 1, ()), PodShape(4000, 320, 1, ()), PodShape(11300, 1000, 1, ())),
                      probs=(0.5, 0.2, 0.3))
    arrays = mix.arrays(cluster)
    ok = np.ones(3, dtype=np.bool_)
    before = kernels.node_fragmentation(cluster.gpu_free, cluster.cpu_free, cluster.gpu_model, arrays)
    for pod in (PodRequest(4000, 0, 1, 320), PodRequest(11300, 0, 1, 1000)):
        args = (cluster.gpu_free, cluster.cpu_free, cluster.gpu_model, ok, before, pod.cpu_milli, pod.num_gpu,
                pod.gpu_milli, arrays)
        ours = kernels_strand.strand_scores(*args, tables(mix, cluster), 0.0, 0.0, 1.0)
        fgd = kernels.fgd_scores(*args)
        assert ours[0].tolist() == fgd[0].tolist() and ours[1].tolist() == fgd[1].tolist()


def test_waste_tables_hold_the_hand_worked_bellman_values():
    # 810m and 160m shares, equally likely. From 1000 free: half the time 810 arrives (190 left, then a
    # 160 leaves 30), half the time 160 (840 left, then 810 -> 30 or 160s down to 40): 0.5*30 + 0.5*35.
    cluster = tiny_cluster([1000])
    mix = WorkloadMix(shapes=(PodShape(1000, 810, 1, ()), PodShape(1000, 160, 1, ())), probs=(0.5, 0.5))
    t = tables(mix, cluster)
    w = t.waste[cluster.gpu_model[0] + 1, 2]
    assert (w[0], w[30], w[190], w[680], w[840], w[1000]) == pytest.approx((0, 30, 30, 40, 35, 32.5))
    assert t.cpu.tolist() == [1000, 1000]


def test_a_gpu_on_a_node_whose_cpu_fits_no_task_stays_free_for_good():
    cluster = tiny_cluster([1000, 600], cpu=500)
    mix = WorkloadMix(shapes=(PodShape(1000, 500, 1, ()),), probs=(1.0,))
    assert kernels_strand.node_waste(cluster.gpu_free, cluster.cpu_free, cluster.gpu_model,
                                     tables(mix, cluster)).tolist() == [1600.0]
    cluster.cpu_free[0] = 1000  # now the 500m task fits each GPU by CPU: 1000 -> 0, 600 -> 100
    assert kernels_strand.node_waste(cluster.gpu_free, cluster.cpu_free, cluster.gpu_model,
                                     tables(mix, cluster)).tolist() == [100.0]


def test_a_task_restricted_to_another_gpu_model_does_not_fill_the_gpu():
    nodes = [Node("t4", 64000, 262144, 1, "T4"), Node("g2", 64000, 262144, 1, "G2")]
    cluster = Cluster.from_nodes(nodes)
    mix = WorkloadMix(shapes=(PodShape(1000, 1000, 1, ("G2",)),), probs=(1.0,))
    waste = kernels_strand.node_waste(cluster.gpu_free, cluster.cpu_free, cluster.gpu_model, tables(mix, cluster))
    assert waste.tolist() == [1000.0, 0.0]


def test_rho_counts_the_cpu_of_cpu_only_pods_and_is_zero_without_gpu_demand():
    mix = WorkloadMix(shapes=(PodShape(8000, 1000, 1, ()), PodShape(4000, 500, 1, ()), PodShape(12000, 0, 0, ())),
                      probs=(0.5, 0.25, 0.25))
    assert cpu_per_gpu_milli(mix) == pytest.approx((4000 + 1000 + 3000) / (500 + 125))
    assert cpu_per_gpu_milli(WorkloadMix(shapes=(PodShape(12000, 0, 0, ()),), probs=(1.0,))) == 0.0


def test_sigma_is_the_mixs_memory_per_gpu_milli_and_zero_without_memory():
    mix = WorkloadMix.from_pods([PodRequest(8000, 40960, 1, 1000), PodRequest(8000, 20480, 1, 1000),
                                 PodRequest(4000, 8192, 1, 500), PodRequest(12000, 65536)], popularity=1.0)
    assert mix.memory == (30720.0, 8192.0, 65536.0)  # mean memory of each shape's pods
    assert memory_per_gpu_milli(mix) == pytest.approx((0.5 * 30720 + 0.25 * 8192 + 0.25 * 65536)
                                                      / (0.5 * 1000 + 0.25 * 500))
    assert memory_per_gpu_milli(WorkloadMix(mix.shapes, mix.probs)) == 0.0  # no memory in the mix
    assert memory_per_gpu_milli(WorkloadMix.from_pods([PodRequest(12000, 65536)])) == 0.0  # no GPU demand
    assert mix.head(1) == WorkloadMix(mix.shapes[:1], (1.0,), (30720.0,), model_demand=())
    with pytest.raises(ValueError, match="one value per shape"):
        WorkloadMix(mix.shapes, mix.probs, (1.0,))


def place(policy_name: str, cluster: Cluster, pod: PodRequest, mix: WorkloadMix):
    policy = make_policy(policy_name, mix=mix)
    scores = policy.score(cluster, pod)
    node = select_node(scores, arange_rank(cluster))
    return node, choose_gpus(cluster, node, pod, int(scores.share_gpu[node])) if node >= 0 else ()


def test_a_cpu_only_pod_goes_where_its_cpu_does_not_strand_gpus():
    # Both nodes keep enough CPU for the one-GPU task after the pod, so FGD sees no difference and its
    # tie goes to node 0; there the 15 CPUs leave 10 for two idle GPUs that need 10 each.
    mix = WorkloadMix(shapes=(PodShape(10000, 1000, 1, ()),), probs=(1.0,))
    cluster = tiny_cluster([1000, 1000], [1000, 1000], cpu=40000)
    cluster.cpu_free[0] = 25000
    pod = PodRequest(15000, 0)
    assert place("fgd", cluster, pod, mix)[0] == 0
    assert place(NAME, cluster, pod, mix)[0] == 1


def test_a_memory_heavy_pod_goes_where_its_memory_does_not_strand_gpus():
    # The mix's GPU pods ask 10 GiB per GPU (sigma 10.24 MiB per milli); CPU is plentiful everywhere.
    # A 15 GiB CPU-only pod on node 0 (25 GiB free) leaves 10 GiB, which feeds one of its two idle
    # GPUs; node 1 (60 GiB free) keeps memory for both. FGD and the mix without memory tie and take node 0.
    with_memory = WorkloadMix(shapes=(PodShape(1000, 1000, 1, ()),), probs=(1.0,), memory=(10240.0,))
    without = WorkloadMix(with_memory.shapes, with_memory.probs)
    cluster = tiny_cluster([1000, 1000], [1000, 1000])
    cluster.memory_free[:] = [25600, 61440]
    pod = PodRequest(1000, 15360)
    assert place("fgd", cluster, pod, with_memory)[0] == 0
    assert place(NAME, cluster, pod, without)[0] == 0
    assert place(NAME, cluster, pod, with_memory)[0] == 1
    assert kernels_strand.stranded(cluster.gpu_free, cluster.cpu_free - 1000, cpu_per_gpu_milli(with_memory),
                                   cluster.memory_free - 15360, memory_per_gpu_milli(with_memory)).tolist() == [
        1000.0, 0.0]


def test_a_small_share_completes_a_gpu_rather_than_leaving_a_gap_no_common_task_fills():
    # 320m on the GPU with 350 free leaves 30; on the one with 530 free it leaves 210, which only the
    # rare 160m task fills.
    mix = WorkloadMix(shapes=(PodShape(1000, 470, 1, ()), PodShape(1000, 320, 1, ()), PodShape(1000, 650, 1, ()),
                              PodShape(1000, 160, 1, ()), PodShape(1000, 1000, 1, ())),
                      probs=(0.3, 0.2, 0.2, 0.02, 0.28))
    cluster = tiny_cluster([530, 350])
    assert place(NAME, cluster, PodRequest(1000, 0, 1, 320), mix) == (0, (1,))


def test_a_pod_free_to_run_anywhere_leaves_the_model_that_bound_pods_need():
    # Half the GPU demand may run only on T4. The CPU-rich T4 node is where the CPU-heavy pod strands
    # nothing, so without the model reserve it goes there (FGD ties and takes node 0, the G2). The T4
    # holds half the free GPU and the T4-bound pods want half the demand: each milli taken there
    # displaces one milli of theirs (R = 1000), more than the G2 strands (dS 600 + dV 250).
    mix = WorkloadMix(shapes=(PodShape(16000, 1000, 1, ()), PodShape(4000, 1000, 1, ("T4",))), probs=(0.5, 0.5))
    cluster = Cluster.from_nodes([Node("g2", 16000, 262144, 2, "G2"), Node("t4", 64000, 262144, 2, "T4")])
    bound = bound_demand(mix, cluster)
    assert bound.tolist() == [0.0, 0.5]
    assert model_reserve(bound, cluster.gpu_free, cluster.gpu_model).tolist() == [0.0, 0.0, 1.0]
    pod = PodRequest(16000, 0, 1, 1000)
    blind = StrandPolicy(mix, StrandOptions(reserve=0.0)).score(cluster, pod)
    aware = StrandPolicy(mix).score(cluster, pod)
    assert select_node(blind, arange_rank(cluster)) == 1
    assert select_node(aware, arange_rank(cluster)) == 0
    assert place("fgd", cluster, pod, mix)[0] == 0
    # A T4-bound pod has only T4 nodes: no reserve for it; and with the T4 full, the G2 pays none either.
    assert StrandPolicy(mix).reserve(cluster, PodRequest(4000, 0, 1, 1000, ("T4",))) is None
    cluster.gpu_free[1] = 0
    assert model_reserve(bound, cluster.gpu_free, cluster.gpu_model).tolist() == [0.0, 0.0, 0.0]


def test_model_bound_demand_counts_every_pod_not_only_the_shapes_the_mix_keeps():
    # 40 T4-bound pods, each of its own CPU size (so each shape is rare), beside 100 pods free to run
    # anywhere: the popularity cut and a cap on shapes drop most of the T4 shapes, not their demand.
    pods = [PodRequest(8000, 0, 1, 1000) for _ in range(100)]
    pods += [PodRequest(1000 + 100 * i, 0, 1, 500, ("T4",)) for i in range(40)]
    pods += [PodRequest(4000, 0, 2, 1000, ("G2", "T4")) for _ in range(5)]
    cluster = Cluster.from_nodes([Node("g2", 16000, 262144, 2, "G2"), Node("t4", 64000, 262144, 2, "T4")])
    total = 100 * 1000 + 40 * 500 + 5 * 2000
    for mix in (WorkloadMix.from_pods(pods), WorkloadMix.from_pods(pods).head(2)):
        assert sum(bool(s.gpu_models) for s in mix.shapes) < 40
        assert bound_demand(mix, cluster) == pytest.approx([5000 / total, (20000 + 5000) / total])
    shapes_only = WorkloadMix(mix.shapes, mix.probs)  # a hand-written mix: read off its shapes
    assert bound_demand(shapes_only, cluster)[1] < 20000 / total


def big_nodes() -> Cluster:
    """A CPU-poor 8-GPU G2, a CPU- and memory-rich 8-GPU G3 and a 2-GPU T4, as on openb."""
    return Cluster.from_nodes([Node("g2", 96000, 393216, 8, "G2"), Node("g3", 128000, 786432, 8, "G3"),
                               Node("t4", 104000, 524288, 2, "T4")])


def test_demand_bound_by_size_counts_the_models_whose_nodes_a_typical_shape_fits():
    shapes = (PodShape(8000, 1000, 1, ()),  # fits every model
              PodShape(120000, 1000, 8, ()),  # 120 CPUs: only the G3
              PodShape(64000, 1000, 8, ()),  # 8 GPUs: the G2 and the G3, half each
              PodShape(16000, 1000, 2, ("T4",)),  # a model list: bound_demand's, not this
              PodShape(4000, 0, 0, ()))  # CPU-only: no GPU demand
    mix = WorkloadMix(shapes, (0.5, 0.1, 0.1, 0.2, 0.1))
    cluster = big_nodes()
    assert cluster.model_names == ["G2", "G3", "T4"]
    total = 500 + 800 + 800 + 400
    assert fit_bound_demand(mix, cluster) == pytest.approx([400 / total, (800 + 400) / total, 0.0])
    # Memory counts: a 1-GPU shape whose pods ask 600 GiB on average fits only the G3.
    heavy = WorkloadMix(shapes[:1], (1.0,), (614400.0,))
    assert fit_bound_demand(heavy, cluster).tolist() == [0.0, 1.0, 0.0]
    assert not fit_bound_demand(WorkloadMix(shapes[:1], (1.0,)), cluster).any()
    assert fits_every_model(cluster, PodRequest(8000, 0, 1, 1000))
    assert not fits_every_model(cluster, PodRequest(8000, 0, 4, 1000))
    assert not fits_every_model(cluster, PodRequest(8000, 614400, 1, 1000))


def test_a_pod_that_fits_anywhere_leaves_the_big_node_only_big_pods_fit():
    # A fifth of the pods are 8-GPU ones that need 600 GiB: only the G3 holds them (F does not see memory).
    # The 1-GPU pod strands a little memory on the G2 (dS 54), so without the reserve it takes the G3;
    # the G3 holds half the free GPU and the big pods want two thirds of the demand: R = 1000 there.
    mix = WorkloadMix((PodShape(16000, 1000, 1, ()), PodShape(64000, 1000, 8, ())), (0.8, 0.2),
                      (32768.0, 614400.0))
    cluster = Cluster.from_nodes([Node("g2", 96000, 393216, 8, "G2"), Node("g3", 128000, 786432, 8, "G3")])
    pod = PodRequest(16000, 65536, 1, 1000)
    assert fit_bound_demand(mix, cluster) == pytest.approx([0.0, 1600 / 2400])
    blind = StrandPolicy(mix, StrandOptions(reserve=0.0)).score(cluster, pod)
    aware = StrandPolicy(mix).score(cluster, pod)
    assert select_node(blind, arange_rank(cluster)) == 1
    assert select_node(aware, arange_rank(cluster)) == 0
    assert StrandPolicy(mix).reserve(cluster, pod).tolist() == [0.0, 0.0, 1.0]
    # The big pod itself fits only the G3: it pays no reserve (it competes with its kind on equal terms).
    assert StrandPolicy(mix).reserve(cluster, PodRequest(64000, 614400, 8, 1000)) is None


def test_the_policy_is_registered_and_needs_a_mix():
    assert NAME in POLICIES
    with pytest.raises(ValueError, match="needs a workload mix"):
        make_policy(NAME)
    assert isinstance(make_policy(NAME, mix=WorkloadMix.uniform([PodShape(1000, 1000, 1, ())])), StrandPolicy)


def test_tables_follow_the_cluster_they_score():
    mix = WorkloadMix(shapes=(PodShape(1000, 1000, 1, ("G2",)),), probs=(1.0,))
    policy = StrandPolicy(mix)
    one = Cluster.from_nodes([Node("a", 8000, 1024, 1, "G2")])
    two = Cluster.from_nodes([Node("a", 8000, 1024, 1, "T4"), Node("b", 8000, 1024, 1, "G2")])
    assert policy.tables(one).waste.shape[0] == 2
    assert policy.tables(two).waste.shape[0] == 3
    assert policy.score(two, PodRequest(1000, 0, 1, 1000, ("G2",))).feasible.tolist() == [False, True]


def test_a_slice_of_the_real_trace_replays_with_every_placement_valid():
    nodes = read_nodes(DATA / "openb_node_list_gpu_node.csv")[:60]
    pods = read_pods(DATA / "openb_pod_list_default.csv")[:400]
    result = simulate(nodes, pods, SimulationConfig(policy=NAME, seed=7))
    assert 0 < result.scheduled <= result.pods
    curve = [result.alloc_at[k] for k in sorted(result.alloc_at, key=int)]
    assert curve == sorted(curve) and 0 < curve[-1] <= 100
