"""A fake kubelet speaking the real device plugin v1beta1 gRPC API on unix sockets, for tests and demos.

It serves ``Registration`` on ``<dir>/kubelet.sock``; on each registration it dials the plugin's
endpoint, reads its options and keeps a ``ListAndWatch`` stream open, holding the latest device
list per resource. ``admit`` does what the kubelet's device manager does for one container: pick
``count`` free healthy devices (asking ``GetPreferredAllocation`` first when the plugin offers it),
then call ``Allocate``. ``restart`` removes every socket in the directory, as a restarting kubelet
does, and serves a new ``kubelet.sock``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import grpc

from gpufleet.autoscaler.kubelet.unixserver import serve_unix, stop_now
from gpufleet.proto.kubelet.deviceplugin.v1beta1 import api_pb2, api_pb2_grpc


@dataclass
class Endpoint:
    resource: str
    endpoint: str
    options: Any
    channel: grpc.Channel
    stub: api_pb2_grpc.DevicePluginStub
    devices: dict[str, str] = field(default_factory=dict)  # ID -> health
    updates: int = 0


class FakeDevicePluginKubelet(api_pb2_grpc.RegistrationServicer):
    def __init__(self, socket_dir: str) -> None:
        self.socket_dir = socket_dir
        self.registrations: list[Any] = []
        self.endpoints: dict[str, Endpoint] = {}
        self.allocated: dict[str, set[str]] = {}
        self._lock = threading.Condition()
        self._server: grpc.Server | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Self:
        self._server = serve_unix(os.path.join(self.socket_dir, "kubelet.sock"),
                                  api_pb2_grpc.add_RegistrationServicer_to_server, self, workers=4, who="fake kubelet")
        return self

    def stop(self) -> None:
        stop_now(self._server)
        self._server = None
        with self._lock:
            for ep in self.endpoints.values():
                ep.channel.close()
            self.endpoints.clear()

    def restart(self) -> None:
        """Stop, remove every socket of the directory (plugins' too), start again."""
        self.stop()
        for path in Path(self.socket_dir).glob("*.sock"):
            path.unlink()
        self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the Registration service ----------------------------------------------------------------

    def Register(self, request: Any, context: Any) -> Any:
        if request.version != "v1beta1":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unsupported version {request.version!r}")
        channel = grpc.insecure_channel(f"unix:{os.path.join(self.socket_dir, request.endpoint)}")
        stub = api_pb2_grpc.DevicePluginStub(channel)
        options = stub.GetDevicePluginOptions(api_pb2.Empty(), timeout=5)
        ep = Endpoint(request.resource_name, request.endpoint, options, channel, stub)
        with self._lock:
            old = self.endpoints.get(request.resource_name)
            if old is not None:
                old.channel.close()
            self.endpoints[request.resource_name] = ep
            self.registrations.append(request)
            self._lock.notify_all()
        threading.Thread(target=self._watch, args=(ep,), daemon=True).start()
        return api_pb2.Empty()

    def _watch(self, ep: Endpoint) -> None:
        try:
            for response in ep.stub.ListAndWatch(api_pb2.Empty()):
                with self._lock:
                    ep.devices = {d.ID: d.health for d in response.devices}
                    ep.updates += 1
                    self._lock.notify_all()
        except grpc.RpcError:
            pass  # the plugin went away or the channel was closed

    # -- what a test asks ------------------------------------------------------------------------

    def wait_for(self, condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
        with self._lock:
            if not self._lock.wait_for(condition, timeout=timeout_s):
                raise TimeoutError("fake kubelet: condition not met in time")

    def devices(self, resource: str) -> dict[str, str]:
        with self._lock:
            ep = self.endpoints.get(resource)
            return dict(ep.devices) if ep is not None else {}

    def admit(self, resource: str, count: int) -> tuple[list[str], Any]:
        """Devices for one container asking ``count`` of ``resource``, and the plugin's
        ContainerAllocateResponse, as the kubelet's device manager would get them."""
        with self._lock:
            ep = self.endpoints[resource]
            taken = self.allocated.setdefault(resource, set())
            free = sorted(d for d, h in ep.devices.items() if h == "Healthy" and d not in taken)
        if len(free) < count:
            raise RuntimeError(f"fake kubelet: {count} {resource} asked, {len(free)} free")
        chosen = free[:count]
        if ep.options.get_preferred_allocation_available:
            reply = ep.stub.GetPreferredAllocation(api_pb2.PreferredAllocationRequest(container_requests=[
                api_pb2.ContainerPreferredAllocationRequest(available_deviceIDs=free, allocation_size=count)]),
                timeout=5)
            preferred = [d for d in reply.container_responses[0].deviceIDs if d in set(free)]
            if len(set(preferred)) == count:
                chosen = preferred
        response = ep.stub.Allocate(api_pb2.AllocateRequest(container_requests=[
            api_pb2.ContainerAllocateRequest(devices_ids=chosen)]), timeout=5)
        with self._lock:
            taken.update(chosen)
        return chosen, response.container_responses[0]


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0, step_s: float = 0.02) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(step_s)
