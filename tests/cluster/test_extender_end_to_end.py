"""The gpufleet extender behind the real kube-scheduler, on the session's local cluster (8 nodes x 8
GPUs, extender started by `cluster up`): opted-in pods land on the node the extender put first and
carry the GPUs it chose; other pods schedule as before; pods schedule with the extender down; and a
restart in the middle of a burst hands no GPU out twice."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpufleet.scheduler.localcluster.cluster import ClusterInfo, ClusterOptions, LocalCluster
from gpufleet.scheduler.localcluster.decisions import read_decisions
from gpufleet.scheduler.localcluster.gpuids import HeldGpus, assignment_problems, parse_ids
from gpufleet.scheduler.localcluster.podloader import PodLoader
from gpufleet.scheduler.localcluster.scrape import scrape
from gpufleet.scheduler.localcluster.tracepods import gpu_milli_of

pytestmark = pytest.mark.cluster

EXTENDER = "gpufleet-extender"


@pytest.fixture()
def loader(local_cluster: ClusterInfo) -> Iterator[PodLoader]:
    with PodLoader(local_cluster.kubeconfig) as pod_loader:
        yield pod_loader


@pytest.fixture()
def namespace(loader: PodLoader) -> Iterator[str]:
    """A fresh namespace, deleted (and waited for, so its GPUs are free again) afterwards."""
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    loader.ensure_namespace(name)
    yield name
    loader.delete_namespace(name)


@pytest.fixture()
def cluster(local_cluster: ClusterInfo) -> LocalCluster:
    return LocalCluster(ClusterOptions(state_dir=Path(local_cluster.state_dir), timeout_s=120))


def gpu_pod(name: str, gpus: int = 1, milli: int | None = None, placement: str | None = "fgd",
            scheduler: str = "gpufleet-scheduler") -> dict:
    annotations = {}
    if placement:
        annotations["gpufleet.io/placement"] = placement
    if milli:
        annotations["gpufleet.io/gpu-milli"] = str(milli)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "annotations": annotations},
            "spec": {"schedulerName": scheduler, "terminationGracePeriodSeconds": 0,
                     "automountServiceAccountToken": False,
                     "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10", "resources": {
                         "requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"nvidia.com/gpu": str(gpus)}}}]}}


def wait_bound(loader: PodLoader, namespace: str, count: int, timeout_s: float = 60.0) -> dict[str, dict]:
    """The namespace's pods by name once ``count`` of them are bound and Running."""
    deadline = time.monotonic() + timeout_s
    while True:
        pods = {p["metadata"]["name"]: p for p in loader.list_pods(namespace)}
        running = [p for p in pods.values() if p["spec"].get("nodeName") and p["status"].get("phase") == "Running"]
        if len(running) >= count:
            return pods
        if time.monotonic() > deadline:
            pending = sorted(n for n, p in pods.items() if not p["spec"].get("nodeName"))
            raise AssertionError(f"{len(running)} of {count} pods bound and Running after {timeout_s:.0f} s; "
                                 f"unbound: {pending[:10]}")
        time.sleep(0.25)


def gpu_ids(pod: dict) -> str | None:
    return (pod["metadata"].get("annotations") or {}).get("gpufleet.io/gpu-ids")


def extender_log(info: ClusterInfo) -> Path:
    return Path(info.state_dir) / "logs" / f"{EXTENDER}.log"


def decisions_total(info: ClusterInfo, policy: str) -> float:
    samples = scrape(f"http://127.0.0.1:{info.ports['extender']}/metrics")
    return samples.total("gpufleet_extender_decisions_total", policy=policy)


def test_opted_in_pods_are_bound_to_the_extenders_top_node_with_its_gpu_ids(local_cluster, loader, namespace):
    shapes = [("four", 4, None, "fgd"), ("two", 2, None, "fgd"), ("one", 1, None, "fgd"),
              ("half", 1, 500, "fgd"), ("quarter", 1, 250, "fgd"), ("packed", 1, None, "binpack"),
              ("spread", 2, None, "spread"), ("cheap", 1, None, "cost")]
    loader.create(namespace, [gpu_pod(n, g, m, p) for n, g, m, p in shapes], ordered=True)
    pods = wait_bound(loader, namespace, len(shapes))
    decisions = read_decisions(extender_log(local_cluster))
    for name, gpus, _milli, policy in shapes:
        pod = pods[name]
        decision = decisions.get(f"{namespace}/{name}")
        assert decision is not None, f"no extender decision logged for {name}"
        assert decision.policy == policy
        assert pod["spec"]["nodeName"] == decision.node, f"{name}: bound to {pod['spec']['nodeName']}, " \
                                                         f"the extender chose {decision.node}"
        assert parse_ids(gpu_ids(pod)) == decision.gpus and len(decision.gpus) == gpus
    events = [e for e in json.loads(loader.core.list_namespaced_event(namespace, _preload_content=False).data)["items"]
              if e["reason"] == "GpufleetPlacement"]
    assert events, "the extender posted no GpufleetPlacement event"
    for event in events:
        name = event["involvedObject"]["name"]
        assert f"best={pods[name]['spec']['nodeName']} " in event["message"]


def test_pods_that_did_not_opt_in_schedule_as_before_and_are_scored_neutrally(local_cluster, loader, namespace):
    before = decisions_total(local_cluster, "off")
    names = [f"plain-{i}" for i in range(3)]
    loader.create(namespace, [gpu_pod(n, placement=None, scheduler="default-scheduler") for n in names])
    pods = wait_bound(loader, namespace, len(names))
    assert all(pods[n]["spec"]["schedulerName"] == "default-scheduler" for n in names)
    assert decisions_total(local_cluster, "off") >= before + len(names)
    decided = read_decisions(extender_log(local_cluster))
    assert not [n for n in names if f"{namespace}/{n}" in decided]
    events = json.loads(loader.core.list_namespaced_event(namespace, _preload_content=False).data)["items"]
    assert not [e for e in events if e["reason"] == "GpufleetPlacement"]


def test_with_the_extender_stopped_pods_still_schedule(local_cluster, cluster, loader, namespace):
    cluster.stop_component(EXTENDER)
    try:
        loader.create(namespace, [gpu_pod("opted-in", 2), gpu_pod("default-profile", 1, scheduler="default-scheduler"),
                                  gpu_pod("plain", 1, placement=None, scheduler="default-scheduler")])
        pods = wait_bound(loader, namespace, 3)
        assert all(gpu_ids(p) is None for p in pods.values())  # kube-scheduler bound them itself
    finally:
        cluster.start_component(EXTENDER)


def test_restarting_the_extender_in_the_middle_of_a_burst_hands_no_gpu_out_twice(local_cluster, cluster, loader,
                                                                                 namespace):
    shapes = [(1, None)] * 12 + [(2, None)] * 6 + [(1, 500)] * 8 + [(1, 250)] * 8  # 40 of 64 GPU devices
    random.Random(4).shuffle(shapes)
    manifests = [gpu_pod(f"burst-{i:02d}", g, m) for i, (g, m) in enumerate(shapes)]
    first, second, third = manifests[:14], manifests[14:24], manifests[24:]
    loader.create(namespace, first)
    cluster.stop_component(EXTENDER)  # while kube-scheduler is still working through the first part
    loader.create(namespace, second)
    cluster.start_component(EXTENDER)  # rebuilds its state from the pods' gpu-ids
    loader.create(namespace, third)
    pods = wait_bound(loader, namespace, len(manifests), timeout_s=90)
    assert any(gpu_ids(pods[m["metadata"]["name"]]) for m in third), "the restarted extender bound nothing"

    everything = json.loads(loader.core.list_pod_for_all_namespaces(_preload_content=False).data)["items"]
    held = []
    for pod in everything:
        gpus, milli = gpu_milli_of(pod)
        if pod["spec"].get("nodeName") and gpus:
            held.append(HeldGpus(pod=f"{pod['metadata']['namespace']}/{pod['metadata']['name']}",
                                 node=pod["spec"]["nodeName"], ids=parse_ids(gpu_ids(pod)) or (), gpus=gpus,
                                 milli=milli))
    capacity = {f"gpu-node-{i:05d}": 8 for i in range(local_cluster.nodes)}
    assert not assignment_problems(held, capacity)
