"""A client of the kubelet PodResources v1 API over its unix socket, returning plain data.

The kubelet serves it at ``/var/lib/kubelet/pod-resources/kubelet.sock``. ``List`` says which
device IDs each container holds; ``GetAllocatableResources`` (GA in 1.28; UNIMPLEMENTED on older
or gated kubelets) says which the node can hand out. Errors come out as PodResourcesError.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"


class PodResourcesError(Exception):
    """Asking the kubelet's PodResources API failed."""


@dataclass(frozen=True, slots=True)
class ContainerDevices:
    """Devices of one resource held by one container (from ``List``; DRA devices as ``dra:<driver>``)."""

    namespace: str
    pod: str
    container: str
    resource_name: str
    device_ids: tuple[str, ...]


def to_container_devices(response: Any) -> tuple[ContainerDevices, ...]:
    """Flatten a ``ListPodResourcesResponse`` into one entry per container and resource."""
    out: list[ContainerDevices] = []
    for pod in response.pod_resources:
        for container in pod.containers:
            for devices in container.devices:
                if devices.device_ids:
                    out.append(ContainerDevices(pod.namespace, pod.name, container.name, devices.resource_name,
                                                tuple(devices.device_ids)))
            for dynamic in container.dynamic_resources:
                for claim in dynamic.claim_resources:
                    ids = [claim.device_name] if claim.device_name else []
                    ids.extend(cdi.name for cdi in claim.cdi_devices)
                    if ids:
                        out.append(ContainerDevices(pod.namespace, pod.name, container.name,
                                                    f"dra:{claim.driver_name}", tuple(ids)))
    return tuple(out)


def to_allocatable_ids(response: Any) -> tuple[tuple[str, str], ...]:
    """``(resource_name, device_id)`` for every device of an ``AllocatableResourcesResponse``."""
    return tuple((d.resource_name, i) for d in response.devices for i in d.device_ids)


class PodResourcesClient:
    """Synchronous client; one channel, reused. ``timeout_s`` bounds every call."""

    def __init__(self, socket_path: str = DEFAULT_SOCKET, timeout_s: float = 2.0) -> None:
        import grpc

        from gpufleet.proto.kubelet.podresources.v1 import api_pb2, api_pb2_grpc

        self._grpc = grpc
        self._pb2 = api_pb2
        self.target = f"unix://{socket_path}"
        self._timeout = timeout_s
        self._channel = grpc.insecure_channel(self.target)
        self._stub = api_pb2_grpc.PodResourcesListerStub(self._channel)

    def list(self) -> tuple[ContainerDevices, ...]:
        try:
            response = self._stub.List(self._pb2.ListPodResourcesRequest(), timeout=self._timeout)
        except self._grpc.RpcError as err:
            raise PodResourcesError(f"listing pod resources at {self.target}: {_describe(err)}") from err
        return to_container_devices(response)

    def allocatable(self) -> tuple[tuple[str, str], ...] | None:
        """None when the kubelet does not implement GetAllocatableResources."""
        try:
            response = self._stub.GetAllocatableResources(
                self._pb2.AllocatableResourcesRequest(), timeout=self._timeout
            )
        except self._grpc.RpcError as err:
            if _code(err) == self._grpc.StatusCode.UNIMPLEMENTED:
                return None
            raise PodResourcesError(f"getting allocatable resources at {self.target}: {_describe(err)}") from err
        return to_allocatable_ids(response)

    def close(self) -> None:
        self._channel.close()


def _code(err: Any) -> Any:
    code = getattr(err, "code", None)
    return code() if callable(code) else None


def _describe(err: Any) -> str:
    code = _code(err)
    details = getattr(err, "details", None)
    text = details() if callable(details) else str(err)
    return f"{getattr(code, 'name', code)}: {text}"
