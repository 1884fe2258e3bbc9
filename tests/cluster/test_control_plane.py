"""The real control plane on loopback: kwok GPU nodes and the default scheduler (deploy/ manifests are
dry-run through kubectl apply -k in test_deploy_kustomizations.py)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster


def _wait(predicate, timeout: float = 60.0, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


@pytest.fixture()
def namespace(k8s_api_client):
    from kubernetes import client

    core = client.CoreV1Api(k8s_api_client)
    name = f"test-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    _wait(lambda: _has_default_service_account(core, name))
    yield name
    core.delete_namespace(name)
    # Other modules share this cluster and its nodes: leave them none of this test's pods.
    _wait(lambda: not core.list_namespaced_pod(name).items, timeout=60.0)


def _has_default_service_account(core, namespace: str) -> bool:
    from kubernetes.client.exceptions import ApiException

    try:
        core.read_namespaced_service_account("default", namespace)
        return True
    except ApiException as err:
        if err.status == 404:
            return False
        raise


def _pod(name: str, gpus: int = 0) -> dict:
    resources = {"requests": {"cpu": "100m", "memory": "128Mi"}}
    if gpus:
        resources["limits"] = {"nvidia.com/gpu": str(gpus)}
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10", "resources": resources}]},
    }


def test_kwok_nodes_are_ready_with_gpu_capacity_and_labels(k8s_api_client, local_cluster):
    from kubernetes import client

    nodes = client.CoreV1Api(k8s_api_client).list_node(label_selector="type=kwok").items
    assert len(nodes) == local_cluster.nodes
    for node in nodes:
        assert node.status.allocatable["nvidia.com/gpu"] == "8"
        assert node.status.capacity["nvidia.com/gpu"] == "8"
        assert {c.type: c.status for c in node.status.conditions}["Ready"] == "True"
        assert node.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-80GB"
        assert node.metadata.labels["karpenter.sh/capacity-type"] in {"on-demand", "spot"}
        assert node.metadata.annotations["kwok.x-k8s.io/node"] == "fake"


@pytest.mark.parametrize("gpus", [0, 2])
def test_the_default_scheduler_binds_a_plain_pod_and_kwok_runs_it(k8s_api_client, namespace, gpus):
    from kubernetes import client

    core = client.CoreV1Api(k8s_api_client)
    core.create_namespaced_pod(namespace, _pod("plain", gpus))
    pod = _wait(lambda: (p := core.read_namespaced_pod("plain", namespace)).status.phase == "Running" and p)
    assert pod.spec.node_name.startswith("gpu-node-")
    assert pod.spec.scheduler_name == "default-scheduler"


def test_a_pod_asking_for_more_gpus_than_any_node_has_stays_pending(k8s_api_client, namespace):
    from kubernetes import client

    core = client.CoreV1Api(k8s_api_client)
    core.create_namespaced_pod(namespace, _pod("too-big", gpus=9))
    events = _wait(lambda: [e for e in core.list_namespaced_event(namespace).items
                            if e.reason == "FailedScheduling" and e.involved_object.name == "too-big"])
    assert "nvidia.com/gpu" in events[0].message
    assert core.read_namespaced_pod("too-big", namespace).spec.node_name is None


def test_the_gpufleet_scheduler_profile_schedules_pods_too(k8s_api_client, namespace):
    from kubernetes import client

    core = client.CoreV1Api(k8s_api_client)
    pod = _pod("profiled", gpus=1)
    pod["spec"]["schedulerName"] = "gpufleet-scheduler"
    core.create_namespaced_pod(namespace, pod)
    _wait(lambda: core.read_namespaced_pod("profiled", namespace).spec.node_name)


def test_a_stopped_scheduler_leaves_pods_pending_until_it_is_started_again(k8s_api_client, local_cluster, namespace):
    from kubernetes import client

    from gpufleet.scheduler.localcluster.cluster import ClusterOptions, LocalCluster

    cluster = LocalCluster(ClusterOptions(state_dir=Path(local_cluster.state_dir)))
    core = client.CoreV1Api(k8s_api_client)
    cluster.stop_component("kube-scheduler")
    try:
        core.create_namespaced_pod(namespace, _pod("queued", gpus=1))
        time.sleep(2)
        assert core.read_namespaced_pod("queued", namespace).spec.node_name is None
    finally:
        cluster.start_component("kube-scheduler")
    _wait(lambda: core.read_namespaced_pod("queued", namespace).spec.node_name)
