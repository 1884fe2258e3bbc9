"""The numba kernels agree with their plain-Python references on random clusters, pods and mixes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpufleet.scheduler import kernels, reference
from gpufleet.scheduler.workload import PodShape, WorkloadMix

from .conftest import clusters, mixes, pods, tiny_cluster

SETTINGS = settings(max_examples=300, deadline=None)


@SETTINGS
@given(cluster=clusters(), mix=mixes())
def test_node_fragmentation_matches_reference(cluster, mix):
    arrays = mix.arrays(cluster)
    fast = kernels.node_fragmentation(cluster.gpu_free, cluster.cpu_free, cluster.gpu_model, arrays)
    slow = reference.node_fragmentation(cluster.gpu_free, cluster.cpu_free, cluster.gpu_model, arrays)
    np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-9)


@SETTINGS
@given(cluster=clusters(), pod=pods())
def test_feasibility_matches_reference(cluster, pod):
    args = (cluster.gpu_free, cluster.cpu_free, cluster.memory_free, cluster.gpu_model, pod.cpu_milli,
            pod.memory_mib, pod.num_gpu, pod.gpu_milli, cluster.model_mask(pod.gpu_models))
    assert kernels.feasible_nodes(*args).tolist() == reference.feasible_nodes(*args)


@SETTINGS
@given(cluster=clusters(), pod=pods(), mix=mixes())
@pytest.mark.parametrize("quantise", [True, False])
def test_fgd_scores_and_gpu_choice_match_reference(cluster, pod, mix, quantise):
    arrays = mix.arrays(cluster)
    ok = kernels.feasible_nodes(cluster.gpu_free, cluster.cpu_free, cluster.memory_free, cluster.gpu_model,
                                pod.cpu_milli, pod.memory_mib, pod.num_gpu, pod.gpu_milli,
                                cluster.model_mask(pod.gpu_models))
    before = kernels.node_fragmentation(cluster.gpu_free, cluster.cpu_free, cluster.gpu_model, arrays)
    args = (cluster.gpu_free, cluster.cpu_free, cluster.gpu_model, ok, before, pod.cpu_milli, pod.num_gpu,
            pod.gpu_milli, arrays, quantise)
    fast_score, fast_gpu = kernels.fgd_scores(*args)
    slow_score, slow_gpu = reference.fgd_scores(*args)
    np.testing.assert_allclose(fast_score, slow_score, rtol=1e-12, atol=1e-9)
    assert fast_gpu.tolist() == slow_gpu


@SETTINGS
@given(cluster=clusters(), data=st.data())
def test_best_node_matches_reference(cluster, data):
    n = len(cluster.cpu_free)
    # Few distinct scores, so ties (broken by free GPU, then CPU, then order) are common.
    score = np.array(data.draw(st.lists(st.sampled_from([-1.0, 0.0, 37.0, 51.5, 99.0]), min_size=n, max_size=n)))
    feasible = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    args = (score, feasible, cluster.gpu_free, cluster.cpu_free)
    assert kernels.best_node(*args) == reference.best_node(*args)


def test_best_node_breaks_ties_as_most_allocated_would():
    gpu_free = np.array([[1000, 1000], [500, 0], [500, 0], [0, 0]], dtype=np.int32)
    cpu_free = np.array([1000, 4000, 2000, 0], dtype=np.int64)
    score = np.array([90.0, 90.0, 90.0, 95.0])
    assert kernels.best_node(score, np.array([True, True, True, False]), gpu_free, cpu_free) == 2
    assert kernels.best_node(score, np.array([True, True, False, False]), gpu_free, cpu_free) == 1
    assert kernels.best_node(score, np.array([True, True, True, True]), gpu_free, cpu_free) == 3
    assert kernels.best_node(score, np.zeros(4, dtype=bool), gpu_free, cpu_free) == -1


def test_fragment_of_a_node_counts_only_gpus_too_small_for_each_task():
    cluster = tiny_cluster([200, 1000, 1000, 500])
    mix = WorkloadMix(shapes=(PodShape(1000, 500, 1, ()), PodShape(1000, 1000, 2, ()),
                              PodShape(1000, 1000, 4, ())), probs=(0.5, 0.25, 0.25))
    frag = kernels.node_fragmentation(cluster.gpu_free, cluster.cpu_free, cluster.gpu_model,
                                      mix.arrays(cluster))
    # 500m task: only the 200m GPU is a fragment; 2 GPUs: 200+500; 4 GPUs: cannot run, all 2700 idle.
    assert frag[0] == pytest.approx(0.5 * 200 + 0.25 * 700 + 0.25 * 2700)


def test_a_node_without_cpu_for_a_task_is_all_fragment_for_it():
    cluster = tiny_cluster([1000, 1000], cpu=500)
    mix = WorkloadMix(shapes=(PodShape(1000, 500, 1, ()),), probs=(1.0,))
    frag = kernels.node_fragmentation(cluster.gpu_free, cluster.cpu_free, cluster.gpu_model,
                                      mix.arrays(cluster))
    assert frag[0] == 2000


def test_kernel_wrappers_reject_wrong_dtypes_and_shapes():
    cluster = tiny_cluster([1000])
    mix = WorkloadMix(shapes=(PodShape(0, 0, 0, ()),), probs=(1.0,)).arrays(cluster)
    with pytest.raises(TypeError):
        kernels.node_fragmentation(cluster.gpu_free.astype(np.int64), cluster.cpu_free, cluster.gpu_model, mix)
    with pytest.raises(ValueError):
        kernels.node_fragmentation(cluster.gpu_free, cluster.cpu_free[:0], cluster.gpu_model, mix)
