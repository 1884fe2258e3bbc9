"""Pods and Nodes as the API server writes them become the model's requests and nodes."""

from __future__ import annotations

import pytest

from gpufleet.core.names import capacity_type
from gpufleet.core.pricing import PriceCatalog
from gpufleet.scheduler.extender.errors import WireError
from gpufleet.scheduler.extender.nodes import parse_node
from gpufleet.scheduler.extender.pods import parse_pod

from . import payloads as P

CATALOG = PriceCatalog.default()


def test_a_real_shaped_pod_gives_its_requests_annotations_and_identity():
    pod = parse_pod(P.pod("trainer-0", "ml", gpus=2, cpu="3500m", memory="16Gi",
                          annotations={"gpufleet.io/placement": "cost", "gpufleet.io/interruptible": "true"}))
    assert (pod.name, pod.namespace, pod.key, pod.phase) == ("trainer-0", "ml", "ml/trainer-0", "Pending")
    assert pod.uid and not pod.node_name and not pod.deleting and not pod.terminal
    assert pod.request is not None
    assert (pod.request.cpu_milli, pod.request.memory_mib, pod.request.num_gpu, pod.request.gpu_milli) == \
        (3500, 16384, 2, 1000)
    assert pod.placement == "cost" and pod.interruptible
    assert pod.model_rule.is_any and pod.problems == ()


def _with_containers(containers, init=(), overhead=None, pod_level=None):
    p = P.pod()
    p["spec"]["containers"] = containers
    p["spec"]["initContainers"] = list(init)
    if overhead:
        p["spec"]["overhead"] = overhead
    if pod_level:
        p["spec"]["resources"] = {"requests": pod_level}
    return parse_pod(p).request


def _c(cpu="0", gpu=None, sidecar=False, where="requests"):
    resources = {"requests": {"cpu": cpu}}
    if gpu is not None:
        resources.setdefault(where, {})["nvidia.com/gpu"] = str(gpu)
    c = {"name": "c", "image": "x", "resources": resources}
    if sidecar:
        c["restartPolicy"] = "Always"
    return c


@pytest.mark.parametrize(("containers", "init", "cpu", "gpus"), [
    ([_c("1", 1), _c("2", 1)], [], 3000, 2),                       # containers add up
    ([_c("1", 1)], [_c("4", 2)], 4000, 2),                          # an init container's peak wins
    ([_c("1", 1)], [_c("500m", sidecar=True)], 1500, 1),            # sidecars run alongside
    ([_c("1")], [_c("1", sidecar=True), _c("3", 1)], 4000, 1),      # init after a sidecar adds to it
    ([_c("1", 1, where="limits")], [], 1000, 1),                     # limits stand in for requests
])
def test_pod_requests_follow_kubernetes_rules_for_init_and_sidecar_containers(containers, init, cpu, gpus):
    request = _with_containers(containers, init)
    assert (request.cpu_milli, request.num_gpu) == (cpu, gpus)


def test_overhead_adds_and_pod_level_resources_replace_container_sums():
    assert _with_containers([_c("1", 1)], overhead={"cpu": "250m"}).cpu_milli == 1250
    assert _with_containers([_c("1", 1)], pod_level={"cpu": "6"}).cpu_milli == 6000


@pytest.mark.parametrize(("annotation", "gpus", "expected", "problem"), [
    ("500", 1, (1, 500), None),
    ("1000", 1, (1, 1000), None),
    ("250", 0, (1, 250), None),          # a share without nvidia.com/gpu still asks for part of one GPU
    ("abc", 1, (1, 1000), "not an integer"),
    ("0", 1, (1, 1000), "must be in 1..1000"),
    ("500", 2, (2, 1000), "share of one GPU"),
])
def test_gpu_milli_annotation_asks_for_a_share_or_is_noted_and_ignored(annotation, gpus, expected, problem):
    pod = parse_pod(P.pod(gpus=gpus, annotations={"gpufleet.io/gpu-milli": annotation}))
    assert (pod.request.num_gpu, pod.request.gpu_milli) == expected
    assert (problem is None) == (pod.problems == ())
    if problem:
        assert problem in pod.problems[0]


def test_an_unknown_placement_value_is_noted_and_treated_as_no_opt_in():
    pod = parse_pod(P.pod(annotations={"gpufleet.io/placement": "fastest"}))
    assert pod.placement is None and "fastest" in pod.problems[0]


@pytest.mark.parametrize(("value", "ids"), [("0,1,3", (0, 1, 3)), ("7", (7,)), ("", None), ("a,b", None),
                                            ("1,1", None), ("-1", None)])
def test_gpu_ids_annotation_is_read_when_valid(value, ids):
    assert parse_pod(P.pod(annotations={"gpufleet.io/gpu-ids": value})).gpu_ids == ids


def test_node_selector_and_required_affinity_on_the_gpu_product_restrict_models():
    p = P.pod()
    p["spec"]["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [
            {"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In", "values": [P.A100, P.H100]},
                                  {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]},
        ]}}}
    rule = parse_pod(p).model_rule
    assert rule.resolve(["Tesla-T4", P.A100, P.H100]) == (P.A100, P.H100)
    p["spec"]["nodeSelector"] = {"nvidia.com/gpu.product": P.H100}
    assert parse_pod(p).model_rule.resolve(["Tesla-T4", P.A100, P.H100]) == (P.H100,)


def test_not_in_excludes_models_and_a_term_without_the_product_key_allows_all():
    p = P.pod()
    terms = [{"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "NotIn", "values": ["Tesla-T4"]}]}]
    p["spec"]["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": terms}}}
    assert parse_pod(p).model_rule.resolve(["Tesla-T4", P.A100]) == (P.A100,)
    terms.append({"matchExpressions": [{"key": "zone", "operator": "Exists"}]})
    assert parse_pod(p).model_rule.is_any
    p["spec"]["nodeSelector"] = {"nvidia.com/gpu.product": "B200"}
    assert parse_pod(p).model_rule.resolve(["Tesla-T4", P.A100]) == ("\x00no-model",)


def test_structural_problems_are_all_reported_with_their_paths():
    p = P.pod()
    p["metadata"]["annotations"] = {"gpufleet.io/placement": 3}
    p["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "lots"
    p["spec"]["initContainers"] = "nope"
    with pytest.raises(WireError) as caught:
        parse_pod(p)
    problems = caught.value.problems
    assert any(x.startswith("Pod.metadata.annotations.gpufleet.io/placement") for x in problems)
    assert any(x.startswith("Pod.spec.containers[0].resources.requests.cpu") for x in problems)
    assert any(x.startswith("Pod.spec.initContainers: expected an array") for x in problems)


def test_replicas_sharing_a_spec_parse_to_their_own_identity_and_a_bad_spec_fails_every_time():
    first = parse_pod(P.pod("web-0", node_name="gpu-a", annotations={"gpufleet.io/gpu-ids": "3"}))
    second = parse_pod(P.pod("web-1", node_name="gpu-b"))  # the same containers: the spec's parse is reused
    assert (first.name, first.node_name, first.gpu_ids, first.request.name) == ("web-0", "gpu-a", (3,), "ml/web-0")
    assert (second.name, second.node_name, second.gpu_ids, second.request.name) == ("web-1", "gpu-b", None, "ml/web-1")
    assert second.request.cpu_milli == first.request.cpu_milli == 4000 and second.request.num_gpu == 1
    bigger = P.pod("web-2", cpu="6")
    assert parse_pod(bigger).request.cpu_milli == 6000
    bad = P.pod("web-3", cpu="lots")
    for _ in range(2):  # a spec that failed is never kept as parsed
        with pytest.raises(WireError, match=r"Pod.spec.containers\[0\].resources.requests.cpu"):
            parse_pod(bad)
    bad["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "4"
    assert parse_pod(bad).request == parse_pod(P.pod("web-3")).request


def test_a_real_shaped_node_gives_allocatable_gpu_model_price_and_capacity_type():
    info = parse_node(P.node("gpu-000"), CATALOG)
    node = info.node
    assert (node.name, node.gpus, node.gpu_model, node.cpu_milli, node.memory_mib) == \
        ("gpu-000", 8, P.A100, 95690, 1136590)
    assert (info.instance_type, info.capacity_type, info.zone, info.price_source) == \
        ("p4de.24xlarge", "on-demand", "us-east-1a", "catalog")
    assert node.price_per_hour == pytest.approx(CATALOG.get("p4de.24xlarge").on_demand)
    assert not node.spot


def test_spot_nodes_use_the_catalog_spot_price_or_an_estimate_from_the_median_discount():
    gcp = parse_node(P.node("g", instance_type="a2-highgpu-8g", capacity_type="spot"), CATALOG)
    assert gcp.node.spot and gcp.price_source == "catalog"
    assert gcp.node.price_per_hour == pytest.approx(15.42416)
    aws = parse_node(P.node("a", capacity_type="spot"), CATALOG)
    assert aws.price_source == "catalog-spot-estimate"
    assert aws.node.price_per_hour == pytest.approx(CATALOG.get("p4de.24xlarge").on_demand * CATALOG.spot_ratio)
    assert 0.3 < CATALOG.spot_ratio < 0.8


def test_the_price_annotation_overrides_the_catalog_and_a_bad_one_is_noted():
    info = parse_node(P.node("n", annotations={"gpufleet.io/price-per-hour": "12.5"}), CATALOG)
    assert (info.node.price_per_hour, info.price_source) == (12.5, "annotation")
    bad = parse_node(P.node("n", annotations={"gpufleet.io/price-per-hour": "-3"}), CATALOG)
    assert bad.price_source == "catalog" and "price-per-hour" in bad.problems[0]


def test_unknown_instance_types_have_no_price_and_the_model_falls_back_to_labels():
    obj = P.node("n", instance_type="custom.8gpu")
    del obj["metadata"]["labels"]["nvidia.com/gpu.product"]
    obj["metadata"]["labels"]["gpufleet.io/gpu-model"] = "A100"
    info = parse_node(obj, CATALOG)
    assert (info.node.gpu_model, info.node.price_per_hour, info.price_source) == ("A100", 0.0, "unknown")


@pytest.mark.parametrize(("labels", "expected"), [
    ({"karpenter.sh/capacity-type": "spot"}, "spot"),
    ({"karpenter.sh/capacity-type": "on-demand"}, "on-demand"),
    ({"eks.amazonaws.com/capacityType": "SPOT"}, "spot"),
    ({"eks.amazonaws.com/capacityType": "ON_DEMAND"}, "on-demand"),
    ({"cloud.google.com/gke-spot": "true"}, "spot"),
    ({"cloud.google.com/gke-preemptible": "true"}, "spot"),
    ({"kubernetes.azure.com/scalesetpriority": "spot"}, "spot"),
    ({"kubernetes.azure.com/scalesetpriority": "regular"}, "on-demand"),
    ({}, ""),
])
def test_capacity_type_is_read_from_karpenter_eks_gke_and_aks_labels(labels, expected):
    assert capacity_type(labels) == expected


def test_a_node_with_absurdly_many_gpus_or_bad_quantities_is_rejected():
    obj = P.node("n")
    obj["status"]["allocatable"]["nvidia.com/gpu"] = "100000"
    obj["status"]["allocatable"]["cpu"] = "many"
    with pytest.raises(WireError) as caught:
        parse_node(obj, CATALOG)
    assert len(caught.value.problems) == 2


def test_daemonset_and_static_pods_are_per_node_and_a_bad_owner_list_is_a_wire_error():
    job = P.pod("etl-0", gpus=0)
    daemon = P.pod("exporter-x1", gpus=0)
    daemon["metadata"]["ownerReferences"][0].update(kind="DaemonSet", apiVersion="apps/v1")
    mirror = P.pod("kube-proxy-n1", gpus=0, annotations={"kubernetes.io/config.mirror": "9f2c"})
    assert [parse_pod(p).per_node for p in (job, daemon, mirror)] == [False, True, True]
    bad = P.pod("etl-1", gpus=0)
    bad["metadata"]["ownerReferences"] = {"kind": "DaemonSet"}
    with pytest.raises(WireError, match=r"Pod.metadata.ownerReferences: expected an array"):
        parse_pod(bad)
