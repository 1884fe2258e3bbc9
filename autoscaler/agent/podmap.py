"""Join GPUs to the pods holding them, by the device IDs the kubelet reports. Pure: no I/O.

Device IDs come in several spellings, depending on the device plugin and the provider:

================================  ==============================================================
``GPU-<uuid>``                    NVIDIA device plugin, ``--device-id-strategy=uuid`` (default)
``GPU-<uuid>::<n>``               time-slicing replicas / EKS: the suffix is stripped
``MIG-<uuid>``                    MIG devices (``nvidia.com/mig-<profile>``)
``MIG-GPU-<uuid>/<gi>/<ci>``      MIG on drivers before R470
``<index>`` / ``<index>:<slot>``  ``--device-id-strategy=index`` (GPU, MIG slot)
``nvidia<minor>``                 GKE's device plugin (the ``/dev/nvidia<minor>`` node)
``nvidia<minor>/gi<gi>``          GKE, MIG
``gpu-<index>``                   NVIDIA DRA driver device names (resource ``dra:gpu.nvidia.com``)
``<vendor>/gpu=<id>``             CDI device names (DRA); ``<id>`` is any of the above
================================  ==============================================================

Matching is case-insensitive. Resources other than ``nvidia.com/*`` and NVIDIA DRA drivers are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from gpufleet.autoscaler.gpu.model import GpuDevice
from gpufleet.autoscaler.kubelet.podresources import ContainerDevices

_REPLICA_SUFFIX = re.compile(r"::\d+$")
_LEGACY_MIG = re.compile(r"^mig-(gpu-[0-9a-f-]+)/(\d+)/(\d+)$")
_GKE = re.compile(r"^nvidia(\d+)(?:/gi(\d+))?$")
_INDEX = re.compile(r"^(\d+)(?::(\d+))?$")
_DRA_GPU = re.compile(r"^gpu-(\d+)$")


@dataclass(frozen=True, slots=True, order=True)
class PodRef:
    namespace: str
    pod: str
    container: str
    resource_name: str


@dataclass(frozen=True, slots=True)
class PodAssignments:
    """Who holds what on one node, as last seen from the kubelet."""

    by_uuid: dict[str, tuple[PodRef, ...]] = field(default_factory=dict)
    allocatable: frozenset[str] = frozenset()  # device UUIDs the kubelet can hand out
    unresolved: tuple[str, ...] = ()  # NVIDIA device IDs that matched no device here
    ok: bool = False  # False: the kubelet was not asked or did not answer

    def pods_of(self, uuid: str) -> tuple[PodRef, ...]:
        return self.by_uuid.get(uuid, ())


class DeviceIndex:
    """Lookup tables from every device-ID spelling to a device UUID, built once per inventory."""

    def __init__(self, devices: Sequence[GpuDevice]) -> None:
        self._by_uuid: dict[str, str] = {}
        self._by_index: dict[int, str] = {}
        self._by_minor: dict[int, str] = {}
        self._mig_by_slot: dict[tuple[int, int], str] = {}
        self._mig_by_gi_minor: dict[tuple[int, int], str] = {}
        self._mig_by_gi_parent: dict[tuple[str, int], str] = {}
        for d in devices:
            self._by_uuid[d.uuid.lower()] = d.uuid
            self._by_index[d.index] = d.uuid
            self._by_minor[d.minor_number] = d.uuid
            for m in d.mig_devices:
                self._by_uuid[m.uuid.lower()] = m.uuid
                self._mig_by_slot[(d.index, m.index)] = m.uuid
                self._mig_by_gi_minor[(d.minor_number, m.gpu_instance_id)] = m.uuid
                self._mig_by_gi_parent[(d.uuid.lower(), m.gpu_instance_id)] = m.uuid

    def resolve(self, device_id: str) -> str | None:
        """The UUID of the device ``device_id`` names, or None."""
        raw = device_id.strip().lower()
        if "=" in raw:  # CDI: vendor/class=name
            raw = raw.split("=", 1)[1]
        raw = _REPLICA_SUFFIX.sub("", raw)
        if raw in self._by_uuid:
            return self._by_uuid[raw]
        if m := _LEGACY_MIG.match(raw):
            return self._mig_by_gi_parent.get((m.group(1), int(m.group(2))))
        if m := _GKE.match(raw):
            minor, gi = int(m.group(1)), m.group(2)
            return self._by_minor.get(minor) if gi is None else self._mig_by_gi_minor.get((minor, int(gi)))
        if m := _INDEX.match(raw):
            index, slot = int(m.group(1)), m.group(2)
            return self._by_index.get(index) if slot is None else self._mig_by_slot.get((index, int(slot)))
        if m := _DRA_GPU.match(raw):
            return self._by_index.get(int(m.group(1)))
        return None


def is_nvidia_resource(resource_name: str) -> bool:
    """``nvidia.com/gpu``, ``nvidia.com/mig-1g.10gb``, ``nvidia.com/gpu.shared``, NVIDIA DRA drivers."""
    name = resource_name.lower()
    return name.startswith("nvidia.com/") or (name.startswith("dra:") and "nvidia" in name)


def join(
    containers: Iterable[ContainerDevices],
    index: DeviceIndex,
    allocatable_ids: Iterable[tuple[str, str]] = (),
) -> PodAssignments:
    """Map each device UUID to the containers holding it (several when shared), and the allocatable set."""
    holders: dict[str, set[PodRef]] = {}
    unresolved: list[str] = []
    for c in containers:
        if not is_nvidia_resource(c.resource_name):
            continue
        ref = PodRef(c.namespace, c.pod, c.container, c.resource_name)
        for device_id in c.device_ids:
            uuid = index.resolve(device_id)
            if uuid is None:
                unresolved.append(device_id)
            else:
                holders.setdefault(uuid, set()).add(ref)
    allocatable = {
        uuid
        for resource, device_id in allocatable_ids
        if is_nvidia_resource(resource) and (uuid := index.resolve(device_id)) is not None
    }
    return PodAssignments(
        by_uuid={uuid: tuple(sorted(refs)) for uuid, refs in holders.items()},
        allocatable=frozenset(allocatable),
        unresolved=tuple(sorted(set(unresolved))),
        ok=True,
    )
