"""GPU node profiles: openb mirrors the trace, uniform is identical nodes; both carry the labels."""

from pathlib import Path

import pytest

from gpufleet.scheduler.localcluster import nodes

REPO = Path(__file__).resolve().parents[2]
NODE_LIST = REPO / "bench" / "data" / "alibaba-gpu-v2023" / "openb_node_list_gpu_node.csv"


def test_openb_profile_mirrors_the_traces_1213_nodes_and_6212_gpus():
    specs = nodes.openb_nodes(NODE_LIST)
    assert len(specs) == 1213
    assert sum(s.gpus for s in specs) == 6212
    assert len({s.name for s in specs}) == 1213


def test_a_smaller_openb_cluster_keeps_the_gpu_model_mix():
    specs = nodes.openb_nodes(NODE_LIST, count=100)
    assert len(specs) == 100
    assert {"G2", "T4", "P100"} <= {s.gpu_model for s in specs}


def test_uniform_nodes_are_identical_8_gpu_a100s():
    specs = nodes.uniform_nodes(10)
    assert {(s.gpus, s.instance_type, s.gpu_product) for s in specs} == {(8, "p4de.24xlarge", "NVIDIA-A100-SXM4-80GB")}


@pytest.mark.parametrize("spec", [nodes.uniform_nodes(1)[0], nodes.openb_nodes(NODE_LIST, 1)[0]])
def test_node_manifest_has_gpu_capacity_labels_and_the_kwok_annotation(spec):
    manifest = spec.manifest()
    labels = manifest["metadata"]["labels"]
    for key in ("nvidia.com/gpu.product", "node.kubernetes.io/instance-type", "karpenter.sh/capacity-type",
                "topology.kubernetes.io/zone"):
        assert labels[key]
    assert labels["type"] == "kwok"
    assert manifest["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    for field in ("capacity", "allocatable"):
        assert manifest["status"][field]["nvidia.com/gpu"] == str(spec.gpus)
        assert set(manifest["status"][field]) == {"cpu", "memory", "pods", "nvidia.com/gpu", "gpufleet.io/gpu-milli"}
        assert manifest["status"][field]["gpufleet.io/gpu-milli"] == str(1000 * spec.gpus)


def test_a_quarter_of_the_nodes_are_spot_and_zones_rotate():
    specs = nodes.uniform_nodes(12)
    assert sum(s.capacity_type == "spot" for s in specs) == 3
    assert {s.zone for s in specs} == set(nodes.ZONES)


@pytest.mark.parametrize(("count", "expected"), [(0, []), (2, [0, 5]), (20, list(range(10)))])
def test_evenly_spaced_selection(count, expected):
    assert nodes.evenly_spaced(list(range(10)), count) == expected
