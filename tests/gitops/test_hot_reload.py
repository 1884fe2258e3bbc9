"""PlacementPolicy objects on the local cluster: the CRDs' CEL rules accept and reject on the real API
server, the running extender applies a changed policy within 5 s (no restart), an object it cannot
apply gets Stalled with a reason while the last good generation keeps placing pods, and a fix makes
it Ready again, and a policy with a podSelector places the pods it selects while the namespace-wide one
places the rest. Pods carry no placement annotation: only the PlacementPolicy opts them in."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from gpufleet.scheduler.localcluster.cluster import ClusterInfo
from gpufleet.scheduler.localcluster.podloader import PodLoader
from tests.gitops.conftest import FIXTURES, REPO, gpu_pod

pytestmark = pytest.mark.cluster


def kubectl_run(kubectl: Path, cluster: ClusterInfo, *args: str, stdin: str | None = None,
                check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([str(kubectl), "--kubeconfig", cluster.kubeconfig, *args], input=stdin,
                          capture_output=True, text=True, timeout=60, check=False)
    if check:
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return done


@pytest.fixture(scope="module")
def crds(local_cluster: ClusterInfo, kubectl: Path) -> None:
    kubectl_run(kubectl, local_cluster, "apply", "-k", str(REPO / "deploy/crds"))
    kubectl_run(kubectl, local_cluster, "wait", "--for=condition=Established", "--timeout=60s",
                "crd/placementpolicies.gpufleet.io", "crd/reclaimpolicies.gpufleet.io",
                "crd/pricecatalogs.gpufleet.io", "crd/gpubudgets.gpufleet.io")


@pytest.fixture()
def loader(local_cluster: ClusterInfo) -> Iterator[PodLoader]:
    with PodLoader(local_cluster.kubeconfig) as pod_loader:
        yield pod_loader


def node_of(loader: PodLoader, namespace: str, name: str, timeout_s: float = 60.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for pod in loader.list_pods(namespace):
            if pod["metadata"]["name"] == name and pod["spec"].get("nodeName"):
                return pod["spec"]["nodeName"]
        time.sleep(0.2)
    raise AssertionError(f"pod {namespace}/{name} not bound after {timeout_s:.0f} s")


def policy(name: str, namespace: str, generation_spec: dict) -> str:
    return yaml.safe_dump({"apiVersion": "gpufleet.io/v1alpha1", "kind": "PlacementPolicy", "metadata": {"name": name},
                           "spec": {"namespaceSelector": {"matchExpressions": [
                               {"key": "kubernetes.io/metadata.name", "operator": "In", "values": [namespace]}]},
                               **generation_spec}})


def wait_status(kubectl: Path, cluster: ClusterInfo, name: str, generation: int, timeout_s: float) -> dict:
    """The object once its status reports ``generation`` (observedGeneration)."""
    deadline = time.monotonic() + timeout_s
    while True:
        obj = json.loads(kubectl_run(kubectl, cluster, "get", "placementpolicy", name, "-o", "json").stdout)
        if (obj.get("status") or {}).get("observedGeneration") == generation \
                and obj["metadata"]["generation"] == generation:
            return obj
        if time.monotonic() > deadline:
            raise AssertionError(f"placementpolicy {name}: generation {generation} not observed after "
                                 f"{timeout_s:.0f} s: {obj.get('status')}")
        time.sleep(0.1)


def conditions(obj: dict) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in obj["status"]["conditions"]}


def test_cel_rules_accept_and_reject_on_the_cluster(local_cluster, kubectl, crds):
    good = kubectl_run(kubectl, local_cluster, "apply", "--dry-run=server", "-f",
                       str(REPO / "deploy/gitops/example/placement.yaml"), "-f",
                       str(REPO / "deploy/gitops/example/reclaim.yaml"), "-f",
                       str(REPO / "deploy/gitops/example/prices.yaml"), "-f",
                       str(REPO / "deploy/gitops/example/budgets.yaml"))
    assert good.stdout.count("(server dry run)") == 6
    for fixture, message in [("reclaim-kube-system.yaml", "must not select kube-system"),
                             ("reclaim-schedules.yaml", "a schedule needs a duration"),
                             ("price-problems.yaml", "spotPerHour must not exceed onDemandPerHour")]:
        bad = kubectl_run(kubectl, local_cluster, "create", "-f", str(FIXTURES / "bad" / fixture), check=False)
        assert bad.returncode != 0 and message in bad.stderr, bad.stderr


def test_a_changed_policy_applies_within_5_s_and_a_stalled_one_keeps_the_last_good(local_cluster, kubectl, crds,
                                                                                  loader, k8s_api_client):
    assert local_cluster.extender_url, "the local cluster runs the extender"
    namespace = f"hot-{uuid.uuid4().hex[:6]}"
    name = namespace
    loader.ensure_namespace(namespace)
    try:
        kubectl_run(kubectl, local_cluster, "apply", "-f", "-", stdin=policy(name, namespace, {"policy": "binpack"}))
        # The first object may wait for the informer's retry (the CRD came after the extender started).
        first = wait_status(kubectl, local_cluster, name, 1, timeout_s=60)
        assert conditions(first)["Ready"] == ("True", "Applied")

        loader.create(namespace, [gpu_pod("anchor", 4)])
        anchor = node_of(loader, namespace, "anchor")
        loader.create(namespace, [gpu_pod("packed", 1)])
        assert node_of(loader, namespace, "packed") == anchor  # binpack: least left over

        from kubernetes import client

        objects = client.CustomObjectsApi(k8s_api_client)
        started = time.monotonic()
        objects.patch_cluster_custom_object("gpufleet.io", "v1alpha1", "placementpolicies", name,
                                            {"spec": {"policy": "spread"}})
        while True:  # the extender writes the status once the new generation is in effect
            second = objects.get_cluster_custom_object("gpufleet.io", "v1alpha1", "placementpolicies", name)
            if (second.get("status") or {}).get("observedGeneration") == 2 or time.monotonic() - started > 30:
                break
            time.sleep(0.05)
        latency = time.monotonic() - started
        print(f"hot reload: generation 2 in effect (status written) {latency:.2f} s after the patch")
        assert conditions(second)["Ready"] == ("True", "Applied")
        assert latency <= 5.0, f"applied after {latency:.1f} s"
        loader.create(namespace, [gpu_pod("spread", 1)])
        spread_node = node_of(loader, namespace, "spread")
        assert spread_node != anchor  # spread: most left over

        broken = {"policy": "binpack", "workloadMix": {"source": "ConfigMap", "configMap": {
            "namespace": namespace, "name": "mix", "key": "pods.csv"}}}
        kubectl_run(kubectl, local_cluster, "apply", "-f", "-", stdin=policy(name, namespace, broken))
        third = wait_status(kubectl, local_cluster, name, 3, timeout_s=30)
        assert conditions(third) == {"Ready": ("False", "WorkloadMixUnavailable"),
                                    "Stalled": ("True", "WorkloadMixUnavailable")}
        assert "generation 2 (policy spread) keeps running" in third["status"]["conditions"][0]["message"]
        loader.create(namespace, [gpu_pod("still-spread", 1)])
        assert node_of(loader, namespace, "still-spread") not in (anchor, spread_node)

        kubectl_run(kubectl, local_cluster, "apply", "-f", "-", stdin=policy(name, namespace, {"policy": "binpack"}))
        fourth = wait_status(kubectl, local_cluster, name, 4, timeout_s=30)
        assert conditions(fourth) == {"Ready": ("True", "Applied")}
        loader.create(namespace, [gpu_pod("packed-again", 1)])
        assert node_of(loader, namespace, "packed-again") == anchor
        ready = kubectl_run(kubectl, local_cluster, "wait", "--for=condition=Ready", "--timeout=10s",
                            f"placementpolicy/{name}")
        assert "condition met" in ready.stdout
    finally:
        kubectl_run(kubectl, local_cluster, "delete", "placementpolicy", name, "--ignore-not-found", check=False)
        loader.delete_namespace(namespace)


def test_a_pod_selector_policy_places_the_pods_it_selects_and_the_namespace_wide_one_the_rest(
        local_cluster, kubectl, crds, loader):
    namespace = f"sel-{uuid.uuid4().hex[:6]}"
    wide, selective = f"{namespace}-wide", f"{namespace}-spread"
    loader.ensure_namespace(namespace)
    try:
        kubectl_run(kubectl, local_cluster, "apply", "-f", "-", stdin=policy(wide, namespace, {"policy": "binpack"}))
        kubectl_run(kubectl, local_cluster, "apply", "-f", "-", stdin=policy(selective, namespace, {
            "policy": "spread", "podSelector": {"matchLabels": {"placement": "spread"}}}))
        for name in (wide, selective):
            assert conditions(wait_status(kubectl, local_cluster, name, 1, timeout_s=60))["Ready"] == ("True", "Applied")
        loader.create(namespace, [gpu_pod("anchor", 4)])
        anchor = node_of(loader, namespace, "anchor")
        selected = gpu_pod("selected", 1)
        selected["metadata"]["labels"] = {"placement": "spread"}
        loader.create(namespace, [selected])
        assert node_of(loader, namespace, "selected") != anchor  # spread: most left over
        loader.create(namespace, [gpu_pod("unselected", 1)])
        assert node_of(loader, namespace, "unselected") == anchor  # binpack: least left over
    finally:
        kubectl_run(kubectl, local_cluster, "delete", "placementpolicy", wide, selective, "--ignore-not-found",
                    check=False)
        loader.delete_namespace(namespace)


def test_a_price_catalog_is_applied_by_the_running_extender(local_cluster, kubectl, crds, k8s_api_client):
    from kubernetes import client

    objects = client.CustomObjectsApi(k8s_api_client)
    name = f"prices-{uuid.uuid4().hex[:6]}"
    body = {"apiVersion": "gpufleet.io/v1alpha1", "kind": "PriceCatalog", "metadata": {"name": name},
            "spec": {"instances": [{"instanceType": "p4de.24xlarge", "onDemandPerHour": 30.0, "spotPerHour": 12.0},
                                   {"instanceType": "p4de.24xlarge", "region": "us-east-1", "onDemandPerHour": 29.0}]}}
    objects.create_cluster_custom_object("gpufleet.io", "v1alpha1", "pricecatalogs", body)
    try:
        def observed(generation: int) -> dict | None:
            obj = objects.get_cluster_custom_object("gpufleet.io", "v1alpha1", "pricecatalogs", name)
            return obj if (obj.get("status") or {}).get("observedGeneration") == generation else None

        deadline = time.monotonic() + 60
        while (applied := observed(1)) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert applied is not None, "the extender did not report the PriceCatalog"
        assert conditions(applied)["Ready"] == ("True", "Applied")
        message = applied["status"]["conditions"][0]["message"]
        assert "1 instance prices in effect" in message and "1 region-specific entries in effect" in message
    finally:
        objects.delete_cluster_custom_object("gpufleet.io", "v1alpha1", "pricecatalogs", name)


def test_a_configmap_workload_mix_is_applied_and_an_edit_hot_reloads(local_cluster, kubectl, crds,
                                                                      k8s_api_client, loader):
    from kubernetes import client

    namespace = f"mix-{uuid.uuid4().hex[:6]}"
    name = namespace
    header = "name,cpu_milli,memory_mib,num_gpu,gpu_milli\n"
    loader.ensure_namespace(namespace)
    core, objects = client.CoreV1Api(k8s_api_client), client.CustomObjectsApi(k8s_api_client)

    def message_after(started: float, wanted: str, timeout_s: float = 30.0) -> tuple[str, float]:
        while True:
            obj = objects.get_cluster_custom_object("gpufleet.io", "v1alpha1", "placementpolicies", name)
            found = [c["message"] for c in (obj.get("status") or {}).get("conditions") or []
                     if c["type"] == "Ready" and wanted in c["message"]]
            if found:
                return found[0], time.monotonic() - started
            if time.monotonic() - started > timeout_s:
                raise AssertionError(f"{wanted!r} not in the status after {timeout_s:.0f} s: {obj.get('status')}")
            time.sleep(0.05)

    try:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "mix"}, "data": {
            "pods.csv": header + "a,1000,1024,1,1000\n"}})
        spec = {"policy": "fgd", "workloadMix": {"source": "ConfigMap", "configMap": {
            "namespace": namespace, "name": "mix", "key": "pods.csv"}}}
        kubectl_run(kubectl, local_cluster, "apply", "-f", "-", stdin=policy(name, namespace, spec))
        message, _ = message_after(time.monotonic(), f"ConfigMap {namespace}/mix key pods.csv (1 shapes)", 60)
        assert message.startswith("policy fgd in effect")

        started = time.monotonic()
        core.patch_namespaced_config_map("mix", namespace, {"data": {
            "pods.csv": header + "a,1000,1024,1,1000\nb,1000,1024,2,1000\nc,1000,1024,2,1000\n"}})
        _, latency = message_after(started, "(2 shapes)")
        print(f"ConfigMap mix hot reload: in effect (status written) {latency:.2f} s after the edit")
        assert latency <= 5.0, f"applied after {latency:.1f} s"

        started = time.monotonic()
        core.patch_namespaced_config_map("mix", namespace, {"data": {"pods.csv": header + "a,1,2,x,4\n"}})
        message, _ = message_after(started, "column num_gpu")
        assert f"ConfigMap {namespace}/mix key pods.csv" in message
        assert "generation 1 (policy fgd) with its workload mix keeps running" in message
        obj = objects.get_cluster_custom_object("gpufleet.io", "v1alpha1", "placementpolicies", name)
        assert conditions(obj)["Stalled"] == ("True", "WorkloadMixUnavailable")
        loader.create(namespace, [gpu_pod("placed", 1)])  # the last good mix keeps placing this policy's pods
        node_of(loader, namespace, "placed")
    finally:
        kubectl_run(kubectl, local_cluster, "delete", "placementpolicy", name, "--ignore-not-found", check=False)
        loader.delete_namespace(namespace)
