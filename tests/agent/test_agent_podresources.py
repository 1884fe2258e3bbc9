"""The PodResources client against a fake kubelet speaking the real gRPC protocol over a unix socket."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from gpufleet.autoscaler.agent.pods import KubeletPodSource
from gpufleet.autoscaler.kubelet.fake import FakeKubelet
from gpufleet.autoscaler.kubelet.podresources import ContainerDevices, PodResourcesClient, PodResourcesError

TRAINER = ContainerDevices("ml", "trainer", "main", "nvidia.com/gpu", ("GPU-a", "GPU-b"))
DRA = ContainerDevices("ml", "dra-pod", "main", "dra:gpu.nvidia.com", ("gpu-3",))


def test_list_returns_every_container_with_its_devices_including_dra_claims(kubelet: FakeKubelet) -> None:
    kubelet.set_containers([TRAINER, ContainerDevices("ml", "trainer", "side", "example.com/fpga", ("f0",)), DRA])
    client = PodResourcesClient(kubelet.socket_path)
    try:
        containers = client.list()
    finally:
        client.close()
    assert TRAINER in containers and DRA in containers and len(containers) == 3
    assert kubelet.calls["List"] == 1


def test_allocatable_lists_every_device_and_is_none_when_the_kubelet_lacks_it(kubelet: FakeKubelet) -> None:
    kubelet.set_allocatable([("nvidia.com/gpu", "GPU-a"), ("nvidia.com/gpu", "GPU-b")])
    client = PodResourcesClient(kubelet.socket_path)
    try:
        assert client.allocatable() == (("nvidia.com/gpu", "GPU-a"), ("nvidia.com/gpu", "GPU-b"))
        kubelet.allocatable_implemented = False
        assert client.allocatable() is None
    finally:
        client.close()


def test_a_missing_socket_is_a_pod_resources_error_saying_what_was_asked(socket_dir: Path) -> None:
    client = PodResourcesClient(str(socket_dir / "absent.sock"), timeout_s=0.5)
    try:
        with pytest.raises(PodResourcesError, match=r"listing pod resources at unix://.*absent.sock: UNAVAILABLE"):
            client.list()
    finally:
        client.close()


def test_a_kubelet_error_is_wrapped_and_the_next_call_works(kubelet: FakeKubelet) -> None:
    kubelet.set_containers([TRAINER])
    kubelet.fail_next("GetAllocatableResources", grpc.StatusCode.INTERNAL, "boom")
    client = PodResourcesClient(kubelet.socket_path)
    try:
        with pytest.raises(PodResourcesError, match="getting allocatable resources.*INTERNAL: boom"):
            client.allocatable()
        assert client.allocatable() == ()
    finally:
        client.close()


def test_the_kubelet_pod_source_never_raises_and_recovers(kubelet: FakeKubelet) -> None:
    kubelet.set_containers([TRAINER])
    kubelet.allocatable_implemented = False
    source = KubeletPodSource(PodResourcesClient(kubelet.socket_path))
    try:
        first = source.snapshot()
        assert first.ok and first.containers == (TRAINER,) and first.allocatable == ()
        kubelet.fail_next("List", grpc.StatusCode.UNAVAILABLE, "restarting")
        failed = source.snapshot()
        assert not failed.ok and "UNAVAILABLE: restarting" in failed.error
        assert source.snapshot().ok
        assert kubelet.calls["GetAllocatableResources"] == 1  # UNIMPLEMENTED is remembered
    finally:
        source.close()
