"""The sharing contract's safety net on the real kube-scheduler (docs/designs/014-gpu-sharing.md):
`gpufleet.io/gpu-milli` is in the extender's managedResources with ignoredByScheduler false, so with
the extender down (ignorable) kube-scheduler still never puts more shares on a node than it
advertises; with the extender up, a share lands on one GPU named in gpufleet.io/gpu-ids."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gpufleet.scheduler.localcluster.cluster import ClusterOptions, LocalCluster
from gpufleet.scheduler.localcluster.podloader import PodLoader

pytestmark = pytest.mark.cluster

EXTENDER = "gpufleet-extender"


def share(name: str, milli: int) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "annotations": {"gpufleet.io/placement": "fgd"}},
            "spec": {"schedulerName": "gpufleet-scheduler", "terminationGracePeriodSeconds": 0,
                     "automountServiceAccountToken": False,
                     "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10", "resources": {
                         "requests": {"cpu": "100m"}, "limits": {"gpufleet.io/gpu-milli": str(milli)}}}]}}


def settle(loader: PodLoader, namespace: str, bound: int, pending: int, timeout_s: float = 90.0) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        pods = loader.list_pods(namespace)
        on_node = [p for p in pods if p["spec"].get("nodeName")]
        refused = [p for p in pods if not p["spec"].get("nodeName") and any(
            c.get("reason") == "Unschedulable" for c in p["status"].get("conditions") or [])]
        if len(on_node) >= bound and len(refused) >= pending:
            return pods
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(on_node)} bound, {len(refused)} refused after {timeout_s:.0f} s")
        time.sleep(0.25)


def test_shares_fit_per_gpu_with_the_extender_and_per_node_without_it(tmp_path: Path, cluster_binaries):
    cluster = LocalCluster(ClusterOptions(state_dir=tmp_path / "c", profile="uniform", nodes=1, gpus_per_node=2,
                                          timeout_s=180.0))
    info = cluster.up()
    try:
        with PodLoader(info.kubeconfig) as loader:
            # Extender up: 600m + 600m cannot share a GPU, so they take both; a third 600m fits nowhere,
            # although the node still advertises 800m free.
            loader.ensure_namespace("up")
            loader.create("up", [share(f"a-{i}", 600) for i in range(3)])
            pods = settle(loader, "up", bound=2, pending=1)
            ids = sorted(p["metadata"]["annotations"]["gpufleet.io/gpu-ids"] for p in pods if p["spec"].get("nodeName"))
            assert ids == ["0", "1"]
            (refused,) = [p for p in pods if not p["spec"].get("nodeName")]
            message = next(c["message"] for c in refused["status"]["conditions"] if c["type"] == "PodScheduled")
            assert "no single GPU has 600m free" in message
            loader.delete_namespace("up")

            # Extender down: kube-scheduler alone still counts shares against the node's 2,000m.
            cluster.stop_component(EXTENDER)
            loader.ensure_namespace("down")
            loader.create("down", [share(f"b-{i}", 700) for i in range(3)])
            pods = settle(loader, "down", bound=2, pending=1)
            (refused,) = [p for p in pods if not p["spec"].get("nodeName")]
            message = next(c["message"] for c in refused["status"]["conditions"] if c["type"] == "PodScheduled")
            assert "Insufficient gpufleet.io/gpu-milli" in message
    finally:
        cluster.down()
