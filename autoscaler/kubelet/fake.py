"""A fake kubelet serving the real PodResources v1 gRPC protocol on a unix socket, for tests and demos.

It answers from what it is told (:meth:`FakeKubelet.set_containers`), records how often each method
was called, and can fail the next call of a method with any gRPC status.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Iterable
from typing import Any, Self

import grpc

from gpufleet.autoscaler.kubelet.podresources import ContainerDevices
from gpufleet.autoscaler.kubelet.unixserver import serve_unix, stop_now
from gpufleet.proto.kubelet.podresources.v1 import api_pb2, api_pb2_grpc


class FakeKubelet(api_pb2_grpc.PodResourcesListerServicer):
    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.calls: Counter[str] = Counter()
        self.allocatable_implemented = True
        self._lock = threading.Lock()
        self._containers: tuple[ContainerDevices, ...] = ()
        self._allocatable: tuple[tuple[str, str], ...] = ()
        self._failures: dict[str, deque[tuple[grpc.StatusCode, str]]] = {}
        self._server: grpc.Server | None = None

    # -- what the fake says ----------------------------------------------------------------------

    def set_containers(self, containers: Iterable[ContainerDevices]) -> None:
        with self._lock:
            self._containers = tuple(containers)

    def set_allocatable(self, devices: Iterable[tuple[str, str]]) -> None:
        """``(resource_name, device_id)`` pairs the node can hand out."""
        with self._lock:
            self._allocatable = tuple(devices)

    def fail_next(self, method: str, code: grpc.StatusCode, details: str = "injected", times: int = 1) -> None:
        with self._lock:
            self._failures.setdefault(method, deque()).extend([(code, details)] * times)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Self:
        self._server = serve_unix(self.socket_path, api_pb2_grpc.add_PodResourcesListerServicer_to_server, self,
                                  workers=2, who="fake kubelet")
        return self

    def stop(self) -> None:
        stop_now(self._server)
        self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the PodResourcesLister service ----------------------------------------------------------

    def _enter(self, method: str, context: Any) -> None:
        with self._lock:
            self.calls[method] += 1
            queue = self._failures.get(method)
            failure = queue.popleft() if queue else None
        if failure is not None:
            context.abort(failure[0], failure[1])

    def List(self, request: Any, context: Any) -> Any:
        self._enter("List", context)
        with self._lock:
            containers = self._containers
        return api_pb2.ListPodResourcesResponse(pod_resources=_pods(containers))

    def GetAllocatableResources(self, request: Any, context: Any) -> Any:
        self._enter("GetAllocatableResources", context)
        if not self.allocatable_implemented:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "GetAllocatableResources is not enabled")
        by_resource: dict[str, list[str]] = {}
        with self._lock:
            for resource, device_id in self._allocatable:
                by_resource.setdefault(resource, []).append(device_id)
        return api_pb2.AllocatableResourcesResponse(
            devices=[api_pb2.ContainerDevices(resource_name=r, device_ids=ids) for r, ids in by_resource.items()]
        )

    def Get(self, request: Any, context: Any) -> Any:
        self._enter("Get", context)
        with self._lock:
            containers = self._containers
        for pod in _pods(containers):
            if pod.name == request.pod_name and pod.namespace == request.pod_namespace:
                return api_pb2.GetPodResourcesResponse(pod_resources=pod)
        context.abort(grpc.StatusCode.NOT_FOUND, f"pod {request.pod_namespace}/{request.pod_name} not found")


def _pods(containers: tuple[ContainerDevices, ...]) -> list[Any]:
    pods: dict[tuple[str, str], dict[str, list[ContainerDevices]]] = {}
    for c in containers:
        pods.setdefault((c.namespace, c.pod), {}).setdefault(c.container, []).append(c)
    out = []
    for (namespace, name), by_container in pods.items():
        out.append(api_pb2.PodResources(
            name=name,
            namespace=namespace,
            containers=[
                api_pb2.ContainerResources(name=cname, devices=[
                    api_pb2.ContainerDevices(resource_name=d.resource_name, device_ids=d.device_ids)
                    for d in entries if not d.resource_name.startswith("dra:")
                ], dynamic_resources=[
                    api_pb2.DynamicResource(claim_name=f"claim-{cname}", claim_namespace=namespace, claim_resources=[
                        api_pb2.ClaimResource(driver_name=d.resource_name[4:], pool_name="pool", device_name=i)
                        for i in d.device_ids])
                    for d in entries if d.resource_name.startswith("dra:")
                ])
                for cname, entries in by_container.items()
            ],
        ))
    return out
