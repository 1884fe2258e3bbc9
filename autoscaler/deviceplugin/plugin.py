"""The device plugin's gRPC side: one ``ResourcePlugin`` per resource on its own unix socket,
registered with the kubelet, and a ``DevicePluginRunner`` that re-registers when the kubelet restarts.

The kubelet, when it restarts, removes every socket in its device-plugins directory and creates a
new ``kubelet.sock``; the runner polls for that (or for its own socket going missing) and starts the
plugins again and registers them. ``ListAndWatch`` sends the device list, then a new one whenever a
GPU's health changes.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc

from gpufleet.autoscaler.deviceplugin import assignment as A
from gpufleet.autoscaler.deviceplugin.pods import PodSource, PodSourceError
from gpufleet.autoscaler.kubelet.unixserver import serve_unix, stop_now
from gpufleet.proto.kubelet.deviceplugin.v1beta1 import api_pb2, api_pb2_grpc

log = logging.getLogger(__name__)

API_VERSION = "v1beta1"
KUBELET_SOCKET = "kubelet.sock"
DEFAULT_DIR = "/var/lib/kubelet/device-plugins"
SOCKETS = {A.GPU_RESOURCE: "gpufleet-gpu.sock", A.MILLI_RESOURCE: "gpufleet-gpu-milli.sock"}


@dataclass(frozen=True)
class PluginConfig:
    """``socket_dir``: the kubelet's device-plugins directory. ``node``: this node's name.
    ``cdi``: also name the GPUs as CDI devices (``nvidia.com/gpu=<uuid>``). ``poll_s``: how often
    the runner checks for a kubelet restart (s, default 1)."""

    socket_dir: str = DEFAULT_DIR
    node: str = ""
    cdi: bool = False
    poll_s: float = 1.0


class Allocator:
    """Matching allocations to pods, shared by both resources (one lock: two containers never get
    the same pod's slot)."""

    def __init__(self, gpus: Sequence[A.Gpu], pods: PodSource, node: str) -> None:
        self.gpus = tuple(gpus)
        self.pods = pods
        self.node = node
        self._lock = threading.Lock()
        self._done: dict[str, int] = {}
        self._assigned: set[str] = set()

    def _pending(self) -> list[A.PendingPod]:
        try:
            objects = self.pods.pods()
        except PodSourceError as err:
            log.warning("pods unavailable, using the kubelet's devices: %s", err)
            return []
        found = (A.parse_pending(p, self.node) for p in objects)
        return [p for p in found if p is not None and p.uid not in self._assigned]

    def preferred(self, resource: str, available: Sequence[str], must: Sequence[str], size: int) -> list[str]:
        with self._lock:
            pod = A.match(self._pending(), resource, size, self._done)
            return A.preferred(self.gpus, resource, available, must, size, pod)

    def allocate(self, resource: str, device_ids: Sequence[str]) -> A.Grant:
        with self._lock:
            pod = A.match(self._pending(), resource, len(device_ids), self._done)
            result = A.grant(self.gpus, resource, device_ids, pod)
            if pod is not None and result.pod is not None:
                self._record(pod[0], resource, result)
        log.info("resource=%s devices=%d pod=%s gpus=%s milli=%s", resource, len(device_ids), result.pod or "-",
                 ",".join(str(g.index) for g in result.gpus), result.milli)
        return result

    def _record(self, pod: A.PendingPod, resource: str, result: A.Grant) -> None:
        key = f"{pod.uid}/{resource}"
        self._done[key] = self._done.get(key, 0) + 1
        if self._done[key] < sum(1 for n in pod.requests[resource] if n > 0):
            return
        self._assigned.add(pod.uid)
        try:
            self.pods.mark_assigned(pod.namespace, pod.name, f"{resource}:{','.join(map(str, pod.gpu_ids))}")
        except PodSourceError as err:
            log.warning("pod=%s not marked (kept in memory): %s", pod.key, err)


class ResourcePlugin(api_pb2_grpc.DevicePluginServicer):
    """The DevicePlugin service for one resource."""

    def __init__(self, resource: str, allocator: Allocator, config: PluginConfig) -> None:
        A.device_ids((), resource)  # rejects an unknown resource early
        self.resource = resource
        self.allocator = allocator
        self.config = config
        self.socket_name = SOCKETS[resource]
        self._server: grpc.Server | None = None
        self._changed = threading.Condition()
        self._version = 0
        self._stopping = False

    @property
    def socket_path(self) -> str:
        return os.path.join(self.config.socket_dir, self.socket_name)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        path = Path(self.socket_path)
        if path.exists() or path.is_symlink():
            path.unlink()
        with self._changed:
            self._stopping = False
        self._server = serve_unix(str(path), api_pb2_grpc.add_DevicePluginServicer_to_server, self, workers=4,
                                  who=f"device plugin {self.resource}")

    def register(self) -> None:
        """Announce the resource to the kubelet; raises grpc.RpcError when it refuses or is absent."""
        kubelet = os.path.join(self.config.socket_dir, KUBELET_SOCKET)
        with grpc.insecure_channel(f"unix:{kubelet}") as channel:
            api_pb2_grpc.RegistrationStub(channel).Register(api_pb2.RegisterRequest(
                version=API_VERSION, endpoint=self.socket_name, resource_name=self.resource,
                options=api_pb2.DevicePluginOptions(get_preferred_allocation_available=True)), timeout=10)
        log.info("registered resource=%s endpoint=%s", self.resource, self.socket_name)

    def stop(self) -> None:
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        stop_now(self._server)
        self._server = None

    def set_gpus(self, gpus: Sequence[A.Gpu]) -> None:
        """New device health: every ListAndWatch stream sends the new list."""
        self.allocator.gpus = tuple(gpus)
        with self._changed:
            self._version += 1
            self._changed.notify_all()

    # -- the DevicePlugin service ----------------------------------------------------------------

    def GetDevicePluginOptions(self, request: Any, context: Any) -> Any:
        return api_pb2.DevicePluginOptions(get_preferred_allocation_available=True)

    def _devices(self) -> Any:
        return api_pb2.ListAndWatchResponse(devices=[
            api_pb2.Device(ID=d, health="Healthy" if ok else "Unhealthy")
            for d, ok in A.device_ids(self.allocator.gpus, self.resource)])

    def ListAndWatch(self, request: Any, context: Any) -> Iterator[Any]:
        with self._changed:
            seen = self._version
        yield self._devices()
        while context.is_active():
            with self._changed:
                self._changed.wait_for(lambda s=seen: self._version != s or self._stopping, timeout=1.0)
                if self._stopping:
                    return
                changed, seen = self._version != seen, self._version
            if changed:
                yield self._devices()

    def GetPreferredAllocation(self, request: Any, context: Any) -> Any:
        responses = [api_pb2.ContainerPreferredAllocationResponse(deviceIDs=self.allocator.preferred(
            self.resource, list(c.available_deviceIDs), list(c.must_include_deviceIDs), c.allocation_size))
            for c in request.container_requests]
        return api_pb2.PreferredAllocationResponse(container_responses=responses)

    def Allocate(self, request: Any, context: Any) -> Any:
        responses = []
        for c in request.container_requests:
            try:
                result = self.allocator.allocate(self.resource, list(c.devices_ids))
            except A.AllocationError as err:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
            response = api_pb2.ContainerAllocateResponse(envs=result.envs())
            if self.config.cdi:
                response.cdi_devices.extend(api_pb2.CDIDevice(name=n) for n in result.cdi_names())
            responses.append(response)
        return api_pb2.AllocateResponse(container_responses=responses)

    def PreStartContainer(self, request: Any, context: Any) -> Any:
        return api_pb2.PreStartContainerResponse()


class DevicePluginRunner:
    """Both resources: start, register, and start + register again after a kubelet restart."""

    def __init__(self, gpus: Sequence[A.Gpu], pods: PodSource, config: PluginConfig) -> None:
        self.config = config
        self.allocator = Allocator(gpus, pods, config.node)
        self.plugins = [ResourcePlugin(r, self.allocator, config) for r in A.RESOURCES]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._kubelet_id: tuple[int, int] | None = None
        self.registrations = 0

    def _kubelet_socket(self) -> tuple[int, int] | None:
        try:
            st = os.stat(os.path.join(self.config.socket_dir, KUBELET_SOCKET))
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns

    def _serve(self) -> bool:
        """(Re)start every plugin and register it; False when the kubelet is not there yet."""
        for plugin in self.plugins:
            plugin.stop()
            plugin.start()
        try:
            for plugin in self.plugins:
                plugin.register()
        except grpc.RpcError as err:
            log.warning("registering with the kubelet failed (will retry): %s", err.details() or err.code())
            return False
        self.registrations += 1
        return True

    def start(self) -> DevicePluginRunner:
        self._thread = threading.Thread(target=self._loop, name="device-plugin", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            kubelet = self._kubelet_socket()
            missing = any(not os.path.exists(p.socket_path) for p in self.plugins)
            if kubelet is not None and (kubelet != self._kubelet_id or missing) and self._serve():
                self._kubelet_id = kubelet
            self._stop.wait(self.config.poll_s)

    def set_health(self, uuid: str, healthy: bool) -> None:
        gpus = [replace(g, healthy=healthy) if g.uuid == uuid else g for g in self.allocator.gpus]
        for plugin in self.plugins:
            plugin.set_gpus(gpus)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for plugin in self.plugins:
            plugin.stop()
