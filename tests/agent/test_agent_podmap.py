"""Joining GPUs to pods by the device IDs the kubelet reports, in every spelling providers use."""

from __future__ import annotations

import pytest

from gpufleet.autoscaler.agent.podmap import DeviceIndex, PodRef, is_nvidia_resource, join
from gpufleet.autoscaler.gpu.model import GpuDevice, MigDevice
from gpufleet.autoscaler.kubelet.podresources import ContainerDevices

GPU0 = "GPU-1c5c3a0b-0000-4000-8000-000000000000"
GPU1 = "GPU-2d6d4b1c-0000-4000-8000-000000000001"
MIG10 = "MIG-aaaaaaaa-0000-4000-8000-000000000010"
MIG11 = "MIG-bbbbbbbb-0000-4000-8000-000000000011"

DEVICES = (
    GpuDevice(0, GPU0, "NVIDIA H100 80GB HBM3", 80 * 2**30, "00000000:10:00.0", minor_number=0),
    GpuDevice(1, GPU1, "NVIDIA A100-SXM4-80GB", 80 * 2**30, "00000000:11:00.0", minor_number=3, mig_enabled=True,
              mig_devices=(MigDevice(MIG10, 0, 1, 0, "NVIDIA A100-SXM4-80GB MIG 3g.40gb", 40 * 2**30),
                           MigDevice(MIG11, 1, 2, 0, "NVIDIA A100-SXM4-80GB MIG 3g.40gb", 40 * 2**30))),
)


@pytest.mark.parametrize(
    ("device_id", "uuid"),
    [
        (GPU0, GPU0),                                   # device plugin, uuid strategy
        (GPU0.upper().replace("GPU-", "GPU-"), GPU0),   # case differs
        (f"{GPU0}::3", GPU0),                           # time-slicing replica / EKS suffix
        (MIG11, MIG11),                                 # MIG strategy mixed/single
        (f"{MIG10}::1", MIG10),
        (f"MIG-{GPU1}/2/0", MIG11),                     # MIG before R470: MIG-<gpu uuid>/<gi>/<ci>
        ("0", GPU0),                                    # index strategy
        ("1:0", MIG10),                                 # index strategy, MIG slot
        ("nvidia0", GPU0),                              # GKE: /dev/nvidia<minor>
        ("nvidia3", GPU1),                              # minor number, not the index
        ("nvidia3/gi2", MIG11),                         # GKE MIG
        ("gpu-1", GPU1),                                # NVIDIA DRA driver device name
        ("k8s.gpu.nvidia.com/device=gpu-0", GPU0),      # CDI name
        (f"nvidia.com/gpu={GPU1}", GPU1),
        ("nvidia1", None),                              # no device with minor 1
        ("7", None),
        ("GPU-ffffffff-0000-4000-8000-00000000ffff", None),
        ("", None),
    ],
)
def test_every_device_id_spelling_resolves_to_the_right_uuid(device_id: str, uuid: str | None) -> None:
    assert DeviceIndex(DEVICES).resolve(device_id) == uuid


@pytest.mark.parametrize(
    ("resource", "nvidia"),
    [("nvidia.com/gpu", True), ("nvidia.com/mig-3g.40gb", True), ("nvidia.com/gpu.shared", True),
     ("dra:gpu.nvidia.com", True), ("amd.com/gpu", False), ("example.com/fpga", False), ("dra:foo.example", False)],
)
def test_only_nvidia_resources_are_joined(resource: str, nvidia: bool) -> None:
    assert is_nvidia_resource(resource) is nvidia


def test_join_maps_each_gpu_to_its_containers_and_keeps_unallocated_gpus_out() -> None:
    containers = [
        ContainerDevices("ml", "trainer", "main", "nvidia.com/gpu", (GPU0,)),
        ContainerDevices("ml", "trainer", "sidecar", "example.com/fpga", ("fpga0",)),
        ContainerDevices("research", "nb", "jupyter", "nvidia.com/mig-3g.40gb", (MIG10,)),
    ]
    result = join(containers, DeviceIndex(DEVICES))
    assert result.ok
    assert result.pods_of(GPU0) == (PodRef("ml", "trainer", "main", "nvidia.com/gpu"),)
    assert result.pods_of(MIG10) == (PodRef("research", "nb", "jupyter", "nvidia.com/mig-3g.40gb"),)
    assert result.pods_of(MIG11) == () and result.pods_of(GPU1) == ()
    assert result.unresolved == ()


def test_a_time_sliced_gpu_is_held_by_every_container_sharing_it() -> None:
    containers = [
        ContainerDevices("a", "p1", "c", "nvidia.com/gpu", (f"{GPU0}::0",)),
        ContainerDevices("b", "p2", "c", "nvidia.com/gpu", (f"{GPU0}::1",)),
        ContainerDevices("a", "p1", "c", "nvidia.com/gpu", (f"{GPU0}::2",)),  # same container twice
    ]
    holders = join(containers, DeviceIndex(DEVICES)).pods_of(GPU0)
    assert [h.pod for h in holders] == ["p1", "p2"]


def test_ids_from_other_nodes_or_unknown_schemes_are_reported_as_unresolved() -> None:
    containers = [ContainerDevices("a", "p", "c", "nvidia.com/gpu", ("GPU-elsewhere", "nvidia9"))]
    result = join(containers, DeviceIndex(DEVICES))
    assert result.by_uuid == {} and result.unresolved == ("GPU-elsewhere", "nvidia9")


def test_allocatable_devices_are_normalised_to_uuids() -> None:
    allocatable = [("nvidia.com/gpu", f"{GPU0}::0"), ("nvidia.com/gpu", f"{GPU0}::1"),
                   ("nvidia.com/mig-3g.40gb", MIG10), ("example.com/fpga", "fpga0"), ("nvidia.com/gpu", "nope")]
    result = join([], DeviceIndex(DEVICES), allocatable)
    assert result.allocatable == frozenset({GPU0, MIG10})
