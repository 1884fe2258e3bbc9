"""`gpufleet device-plugin` against a fake kubelet speaking the real v1beta1 gRPC API on unix sockets:
registration, allocation for whole and shared pods from `gpufleet.io/gpu-ids`, restarts of either side."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from gpufleet.autoscaler.deviceplugin.assignment import ASSIGNED_ANNOTATION, Gpu, gpu_uuid_of
from gpufleet.autoscaler.deviceplugin.fakekubelet import FakeDevicePluginKubelet, wait_until
from gpufleet.autoscaler.deviceplugin.plugin import DevicePluginRunner, PluginConfig
from gpufleet.autoscaler.deviceplugin.pods import PodSourceError
from gpufleet.proto.kubelet.deviceplugin.v1beta1 import api_pb2

NODE = "gpu-node-0"
GPUS = [Gpu(i, f"GPU-{i:08d}-aaaa-bbbb-cccc-{i:012d}", 81920) for i in range(8)]


class ListedPods:
    """The node's pods as a list the test edits; records marks and can fail the next list."""

    def __init__(self) -> None:
        self.objects: list[dict[str, Any]] = []
        self.marks: list[tuple[str, str, str]] = []
        self.fail_lists = 0
        self._lock = threading.Lock()

    def pods(self) -> list[dict[str, Any]]:
        with self._lock:
            if self.fail_lists:
                self.fail_lists -= 1
                raise PodSourceError("injected")
            return [dict(p) for p in self.objects]

    def mark_assigned(self, namespace: str, name: str, value: str) -> None:
        with self._lock:
            self.marks.append((namespace, name, value))
            for p in self.objects:
                if p["metadata"]["name"] == name:
                    p["metadata"]["annotations"][ASSIGNED_ANNOTATION] = value


def pod(name: str, ids: str, *, gpus: int = 0, milli: int = 0, scheduled: str = "2026-12-02T05:00:00Z",
        node: str = NODE) -> dict[str, Any]:
    limits = {}
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)
    if milli:
        limits["gpufleet.io/gpu-milli"] = str(milli)
    return {"metadata": {"name": name, "namespace": "ml", "uid": f"uid-{name}",
                         "annotations": {"gpufleet.io/gpu-ids": ids}},
            "spec": {"nodeName": node, "containers": [{"name": "main", "resources": {"limits": limits}}]},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True",
                                                           "lastTransitionTime": scheduled}]}}


@pytest.fixture
def rig() -> Iterator[tuple[FakeDevicePluginKubelet, DevicePluginRunner, ListedPods]]:
    with tempfile.TemporaryDirectory(prefix="dp-") as socket_dir:  # short path: unix sockets max 107 chars
        pods = ListedPods()
        kubelet = FakeDevicePluginKubelet(socket_dir).start()
        runner = DevicePluginRunner(GPUS, pods, PluginConfig(socket_dir=socket_dir, node=NODE, cdi=True,
                                                             poll_s=0.05)).start()
        kubelet.wait_for(lambda: len(kubelet.endpoints) == 2 and all(
            e.devices for e in kubelet.endpoints.values()))
        try:
            yield kubelet, runner, pods
        finally:
            runner.stop()
            kubelet.stop()


def envs(response) -> dict[str, str]:
    return dict(response.envs)


def test_both_resources_register_with_the_kubelet_and_list_their_devices(rig):
    kubelet, _, _ = rig
    assert {(r.version, r.resource_name) for r in kubelet.registrations} == {
        ("v1beta1", "nvidia.com/gpu"), ("v1beta1", "gpufleet.io/gpu-milli")}
    assert all(r.options.get_preferred_allocation_available for r in kubelet.registrations)
    assert sorted(kubelet.devices("nvidia.com/gpu")) == sorted(g.uuid for g in GPUS)
    milli = kubelet.devices("gpufleet.io/gpu-milli")
    assert len(milli) == 8000 and set(milli.values()) == {"Healthy"}
    assert {gpu_uuid_of(d) for d in milli} == {g.uuid for g in GPUS}


def test_a_whole_gpu_pod_gets_the_gpus_the_extender_chose(rig):
    kubelet, _, pods = rig
    pods.objects.append(pod("train", "2,5", gpus=2))
    devices, response = kubelet.admit("nvidia.com/gpu", 2)
    assert envs(response)["NVIDIA_VISIBLE_DEVICES"] == f"{GPUS[2].uuid},{GPUS[5].uuid}"
    assert envs(response)["GPUFLEET_GPU_IDS"] == "2,5"
    assert sorted(devices) == sorted([GPUS[2].uuid, GPUS[5].uuid])  # the preferred allocation steered the kubelet
    assert [c.name for c in response.cdi_devices] == [f"nvidia.com/gpu={GPUS[2].uuid}", f"nvidia.com/gpu={GPUS[5].uuid}"]
    assert pods.marks == [("ml", "train", "nvidia.com/gpu:2,5")]
    assert "GPUFLEET_GPU_MILLI" not in envs(response)


def test_a_share_gets_its_gpu_and_its_memory_limit_and_the_kubelet_counts_it_on_that_gpu(rig):
    kubelet, _, pods = rig
    pods.objects.append(pod("infer", "3", milli=250))
    devices, response = kubelet.admit("gpufleet.io/gpu-milli", 250)
    got = envs(response)
    assert got["NVIDIA_VISIBLE_DEVICES"] == GPUS[3].uuid
    assert got["GPUFLEET_GPU_MILLI"] == "250" and got["GPUFLEET_GPU_MEMORY_LIMIT_MIB"] == str(81920 // 4)
    assert got["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == f"0={81920 // 4}M"
    assert {gpu_uuid_of(d) for d in devices} == {GPUS[3].uuid}


def test_pods_are_served_in_the_order_they_were_bound(rig):
    kubelet, _, pods = rig
    pods.objects += [pod("late", "1", milli=500, scheduled="2026-12-02T05:00:09Z"),
                     pod("early", "6", milli=500, scheduled="2026-12-02T05:00:01Z")]
    _, first = kubelet.admit("gpufleet.io/gpu-milli", 500)
    _, second = kubelet.admit("gpufleet.io/gpu-milli", 500)
    assert [envs(first)["GPUFLEET_GPU_IDS"], envs(second)["GPUFLEET_GPU_IDS"]] == ["6", "1"]
    assert [m[1] for m in pods.marks] == ["early", "late"]


def test_pods_of_other_nodes_running_pods_and_other_amounts_are_not_matched(rig):
    kubelet, _, pods = rig
    running = pod("running", "0", milli=300)
    running["status"]["phase"] = "Running"
    pods.objects += [pod("elsewhere", "0", milli=300, node="other"), running, pod("bigger", "0", milli=400)]
    devices, response = kubelet.admit("gpufleet.io/gpu-milli", 300)
    assert pods.marks == []
    # no pod: the share stays on one GPU, the one the plugin preferred for packing
    assert len({gpu_uuid_of(d) for d in devices}) == 1
    assert envs(response)["NVIDIA_VISIBLE_DEVICES"] == gpu_uuid_of(devices[0])


def test_without_pods_whole_gpus_fall_back_to_the_kubelets_devices(rig):
    kubelet, _, pods = rig
    pods.fail_lists = 5
    devices, response = kubelet.admit("nvidia.com/gpu", 3)
    assert envs(response)["NVIDIA_VISIBLE_DEVICES"].split(",") == devices


def test_unknown_device_ids_are_refused(rig):
    kubelet, _, _ = rig
    stub = kubelet.endpoints["nvidia.com/gpu"].stub
    with pytest.raises(grpc.RpcError) as err:
        stub.Allocate(api_pb2.AllocateRequest(container_requests=[
            api_pb2.ContainerAllocateRequest(devices_ids=["GPU-nope"])]), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_an_unhealthy_gpu_is_sent_to_the_kubelet_on_the_open_stream(rig):
    kubelet, runner, _ = rig
    runner.set_health(GPUS[4].uuid, False)
    kubelet.wait_for(lambda: kubelet.devices("nvidia.com/gpu").get(GPUS[4].uuid) == "Unhealthy")
    milli = kubelet.devices("gpufleet.io/gpu-milli")
    kubelet.wait_for(lambda: sum(h == "Unhealthy" for h in kubelet.devices("gpufleet.io/gpu-milli").values()) == 1000)
    assert len(milli) == 8000


def test_the_plugin_registers_again_after_a_kubelet_restart_and_still_allocates(rig):
    kubelet, _, pods = rig
    before = len(kubelet.registrations)
    kubelet.restart()
    kubelet.wait_for(lambda: len(kubelet.registrations) >= before + 2 and len(kubelet.endpoints) == 2
                     and all(e.devices for e in kubelet.endpoints.values()), timeout_s=15)
    pods.objects.append(pod("after", "7", gpus=1))
    _, response = kubelet.admit("nvidia.com/gpu", 1)
    assert envs(response)["NVIDIA_VISIBLE_DEVICES"] == GPUS[7].uuid


def test_a_restarted_plugin_registers_again_and_does_not_serve_an_assigned_pod_twice(rig):
    kubelet, runner, pods = rig
    pods.objects.append(pod("first", "1", milli=100))
    kubelet.admit("gpufleet.io/gpu-milli", 100)
    runner.stop()
    before = len(kubelet.registrations)
    again = DevicePluginRunner(GPUS, pods, runner.config).start()
    try:
        kubelet.wait_for(lambda: len(kubelet.registrations) >= before + 2, timeout_s=15)
        wait_until(lambda: all(e.devices for e in kubelet.endpoints.values()))
        pods.objects.append(pod("second", "4", milli=100))
        _, response = kubelet.admit("gpufleet.io/gpu-milli", 100)
        assert envs(response)["GPUFLEET_GPU_IDS"] == "4"  # "first" is marked assigned: not matched again
    finally:
        again.stop()
