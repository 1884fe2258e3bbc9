"""The real control plane on loopback: kwok GPU nodes, the default scheduler, and deploy/ manifests."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
#: Files under deploy/ that are not Kubernetes API objects: the local cluster's own config (kwok
#: stages), component configuration files, and kustomize/helm inputs.
NOT_API_GROUPS = {"kubescheduler.config.k8s.io", "kwok.x-k8s.io", "kustomize.config.k8s.io"}


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


def _manifest_documents() -> list[tuple[str, dict]]:
    documents = []
    for path in sorted((REPO / "deploy").rglob("*")):
        relative = path.relative_to(REPO)
        if path.suffix not in {".yaml", ".yml"} or relative.parts[:2] == ("deploy", "local"):
            continue
        text = path.read_text()
        if "{{" in text:  # a template (helm), not a manifest
            continue
        for index, document in enumerate(yaml.safe_load_all(text)):
            if not isinstance(document, dict) or "kind" not in document or "apiVersion" not in document:
                continue
            if document["apiVersion"].split("/")[0] in NOT_API_GROUPS or document["kind"] == "Kustomization":
                continue
            documents.append((f"{relative}#{index} {document['kind']}", document))
    return documents


def test_every_manifest_under_deploy_is_accepted_by_a_server_side_dry_run(k8s_api_client):
    """Namespaces and CRDs are created for real first (later documents need them); every other
    document is created with dryRun=All, which runs validation and admission but stores nothing."""
    from kubernetes import dynamic
    from kubernetes.client.exceptions import ApiException

    documents = _manifest_documents()
    dyn = dynamic.DynamicClient(k8s_api_client)
    failures = []

    def create(label: str, document: dict, dry_run: str | None) -> None:
        try:
            resource = dyn.resources.get(api_version=document["apiVersion"], kind=document["kind"])
            namespace = None
            if resource.namespaced:
                namespace = document.get("metadata", {}).get("namespace", "default")
            resource.create(body=document, namespace=namespace, dry_run=dry_run)
        except ApiException as err:
            if err.status == 409 and dry_run is None:
                return
            try:
                message = json.loads(err.body)["message"]
            except (TypeError, ValueError, KeyError):
                message = err.body
            failures.append(f"{label}: {err.status} {err.reason}: {message}")
        except Exception as err:  # noqa: BLE001 - unknown kinds etc. are reported per document
            failures.append(f"{label}: {type(err).__name__}: {err}")

    first = [(lbl, d) for lbl, d in documents if d["kind"] in {"Namespace", "CustomResourceDefinition"}]
    for label, document in first:
        create(label, document, None)
    if any(d["kind"] == "CustomResourceDefinition" for _, d in first):
        time.sleep(2)  # let the new types be served
        dyn = dynamic.DynamicClient(k8s_api_client)
    for label, document in documents:
        if (label, document) not in first:
            create(label, document, "All")
    assert not failures, "\n".join(failures)


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
