"""Devices, the pod an allocation is for, and what its container gets. No I/O here.

The kubelet's ``Allocate`` names device IDs only, not the pod. As gpushare's device plugin does, the
pod is found among the node's pods: bound here, not running yet, carrying ``gpufleet.io/gpu-ids``,
asking this resource in a container for exactly as many devices as the kubelet is allocating, and
not yet marked ``gpufleet.io/gpu-assigned``; of several, the one bound first (the kubelet admits
pods in order). Its GPUs win over the device IDs the kubelet picked. Without such a pod (the
extender did not bind it), whole GPUs are the kubelet's devices and a share goes to the GPU most of
its devices belong to.

Device IDs: ``nvidia.com/gpu`` devices are GPU UUIDs; ``gpufleet.io/gpu-milli`` devices are
``<uuid>::m<n>``, 1000 per GPU, so the kubelet's count per node equals the extender's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from gpufleet.core import names

GPU_RESOURCE = names.GPU_RESOURCE
MILLI_RESOURCE = names.GPU_MILLI
RESOURCES = (GPU_RESOURCE, MILLI_RESOURCE)
GPU_IDS_ANNOTATION = names.GPU_IDS
#: Set on a pod once its containers got their GPUs (value: the resource and GPU indices).
ASSIGNED_ANNOTATION = names.GPU_ASSIGNED
MILLI_PER_GPU = 1000
_MILLI_SEP = "::m"


class AllocationError(ValueError):
    """The kubelet asked for devices this plugin cannot give (unknown IDs, wrong resource)."""


@dataclass(frozen=True)
class Gpu:
    index: int
    uuid: str
    memory_mib: int
    healthy: bool = True


@dataclass(frozen=True)
class PendingPod:
    """A pod bound to this node whose containers may still need devices."""

    uid: str
    namespace: str
    name: str
    bound_order: tuple[str, str]  # (time the pod was scheduled, name): earliest first
    gpu_ids: tuple[int, ...]
    #: Devices of ``resource`` each container asks for, in container order (0: none).
    requests: dict[str, tuple[int, ...]]

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Grant:
    """What one container gets: GPUs by index, and its share (milli) when it is a share."""

    gpus: tuple[Gpu, ...]
    milli: int | None
    pod: str | None  # namespace/name, None when no pod matched (fallback)

    def envs(self) -> dict[str, str]:
        out = {"NVIDIA_VISIBLE_DEVICES": ",".join(g.uuid for g in self.gpus),
               "GPUFLEET_GPU_IDS": ",".join(str(g.index) for g in self.gpus)}
        if self.milli is not None and self.gpus:
            limit = self.gpus[0].memory_mib * self.milli // MILLI_PER_GPU
            out["GPUFLEET_GPU_MILLI"] = str(self.milli)
            out["GPUFLEET_GPU_MEMORY_LIMIT_MIB"] = str(limit)
            out["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] = f"0={limit}M"  # the one visible device is 0
        return out

    def cdi_names(self, kind: str = names.GPU_RESOURCE) -> list[str]:
        return [f"{kind}={g.uuid}" for g in self.gpus]


def milli_device_id(gpu: Gpu, n: int) -> str:
    return f"{gpu.uuid}{_MILLI_SEP}{n}"


def device_ids(gpus: Sequence[Gpu], resource: str) -> list[tuple[str, bool]]:
    """``(device ID, healthy)`` of every device advertised for ``resource``."""
    if resource == GPU_RESOURCE:
        return [(g.uuid, g.healthy) for g in gpus]
    if resource == MILLI_RESOURCE:
        return [(milli_device_id(g, n), g.healthy) for g in gpus for n in range(MILLI_PER_GPU)]
    raise AllocationError(f"unknown resource {resource!r}; this plugin serves {', '.join(RESOURCES)}")


def gpu_uuid_of(device_id: str) -> str:
    return device_id.split(_MILLI_SEP, 1)[0]


def parse_pending(pod: dict[str, Any], node: str) -> PendingPod | None:
    """A Pod object -> ``PendingPod`` when it is on ``node``, not running yet, has GPU ids and is
    not marked assigned; else None."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    annotations = meta.get("annotations") or {}
    if spec.get("nodeName") != node or status.get("phase") not in (None, "", "Pending"):
        return None
    if meta.get("deletionTimestamp") or ASSIGNED_ANNOTATION in annotations:
        return None
    try:
        ids = tuple(int(x) for x in str(annotations.get(GPU_IDS_ANNOTATION, "")).split(",") if x.strip())
    except ValueError:
        return None
    if not ids:
        return None
    requests: dict[str, list[int]] = {r: [] for r in RESOURCES}
    for container in list(spec.get("initContainers") or []) + list(spec.get("containers") or []):
        resources = container.get("resources") or {}
        limits, reqs = resources.get("limits") or {}, resources.get("requests") or {}
        for r in RESOURCES:
            value = limits.get(r, reqs.get(r, 0))
            try:
                requests[r].append(int(value))
            except (TypeError, ValueError):
                requests[r].append(0)
    scheduled = next((c.get("lastTransitionTime", "") for c in status.get("conditions") or []
                      if c.get("type") == "PodScheduled"), "")
    return PendingPod(uid=str(meta.get("uid", "")), namespace=str(meta.get("namespace", "default")),
                      name=str(meta.get("name", "")), bound_order=(str(scheduled), str(meta.get("name", ""))),
                      gpu_ids=ids, requests={r: tuple(v) for r, v in requests.items()})


def match(pods: Iterable[PendingPod], resource: str, count: int, done: dict[str, int]) -> tuple[PendingPod, int] | None:
    """The pod (bound first) with a container asking ``count`` devices of ``resource`` that has not
    been allocated yet, and that container's position among the pod's ``resource`` containers.
    ``done``: containers already allocated per pod UID and resource (``uid/resource`` keys)."""
    for pod in sorted(pods, key=lambda p: p.bound_order):
        asks = [n for n in pod.requests.get(resource, ()) if n > 0]
        position = done.get(f"{pod.uid}/{resource}", 0)
        if position < len(asks) and asks[position] == count:
            return pod, position
    return None


def grant(gpus: Sequence[Gpu], resource: str, device_ids_: Sequence[str], pod: tuple[PendingPod, int] | None) -> Grant:
    """The GPUs one container gets for ``device_ids_`` (the kubelet's pick) and, if found, its pod."""
    by_uuid = {g.uuid: g for g in gpus}
    by_index = {g.index: g for g in gpus}
    unknown = [d for d in device_ids_ if gpu_uuid_of(d) not in by_uuid]
    if unknown:
        raise AllocationError(f"unknown device IDs {unknown[:3]} for {resource}")
    if pod is not None:
        found, position = pod
        ids = found.gpu_ids
        if resource == MILLI_RESOURCE:
            chosen = ids[:1]
            milli: int | None = len(device_ids_)
        else:
            before = sum(n for n in found.requests[resource][:_nth_nonzero(found.requests[resource], position)])
            chosen = ids[before:before + len(device_ids_)]
            milli = None
        if len(chosen) == (1 if resource == MILLI_RESOURCE else len(device_ids_)) and all(i in by_index for i in chosen):
            return Grant(tuple(by_index[i] for i in chosen), milli, found.key)
    if resource == MILLI_RESOURCE:
        uuid, _ = Counter(gpu_uuid_of(d) for d in device_ids_).most_common(1)[0]
        return Grant((by_uuid[uuid],), len(device_ids_), None)
    return Grant(tuple(by_uuid[d] for d in device_ids_), None, None)


def _nth_nonzero(values: Sequence[int], position: int) -> int:
    """Index in ``values`` of its ``position``-th non-zero entry."""
    seen = -1
    for i, v in enumerate(values):
        if v > 0:
            seen += 1
            if seen == position:
                return i
    return len(values)


def preferred(gpus: Sequence[Gpu], resource: str, available: Sequence[str], must: Sequence[str], size: int,
              pod: tuple[PendingPod, int] | None) -> list[str]:
    """Devices the plugin would rather the kubelet picked: the matched pod's GPUs; for a share
    without a pod, one GPU (the fullest that still has room, so shares pack); ``must`` always in."""
    chosen = list(must)
    pool = [d for d in available if d not in set(must)]
    if pod is not None:
        wanted = {g.uuid for g in grant(gpus, resource, pool[:size] or list(must), pod).gpus}
        chosen += [d for d in pool if gpu_uuid_of(d) in wanted][: size - len(chosen)]
    elif resource == MILLI_RESOURCE:
        free = Counter(gpu_uuid_of(d) for d in pool)
        fits = sorted((n, uuid) for uuid, n in free.items() if n >= size - len(chosen))
        if fits:
            chosen += [d for d in pool if gpu_uuid_of(d) == fits[0][1]][: size - len(chosen)]
    rest = [d for d in pool if d not in set(chosen)]
    return (chosen + rest)[:size]
