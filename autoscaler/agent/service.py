"""The agent's gRPC API (gpufleet.v1.GpuAgent): inventory, and a stream of sampling passes.

Each StreamSamples call holds one server thread while it waits for new passes, so the server's
thread pool is sized from ``max_streams``; calls beyond it are refused with RESOURCE_EXHAUSTED
rather than queued.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from typing import Any

import grpc

from gpufleet.autoscaler.agent.history import AgentIdentity, SampleHistory
from gpufleet.autoscaler.agent.metrics import AgentMetrics
from gpufleet.autoscaler.agent.podmap import PodAssignments
from gpufleet.autoscaler.agent.wire import batch_message, inventory_message
from gpufleet.autoscaler.gpu.model import GpuDevice
from gpufleet.proto.gpufleet.v1 import agent_pb2_grpc

log = logging.getLogger(__name__)

_WAIT_SLICE_S = 0.5  # how often a waiting stream checks that its client is still there
_MAX_REPLAY = 10_000


class AgentServiceError(Exception):
    """The gRPC server could not be started."""


class GpuAgentService(agent_pb2_grpc.GpuAgentServicer):
    def __init__(
        self,
        identity: AgentIdentity,
        devices: Sequence[GpuDevice],
        history: SampleHistory,
        assignments: Callable[[], PodAssignments],
        now: Callable[[], float],
        metrics: AgentMetrics | None = None,
    ) -> None:
        self._identity = identity
        self._devices = tuple(devices)
        self._history = history
        self._assignments = assignments
        self._now = now
        self._metrics = metrics
        self._uuids = {d.uuid for d in devices} | {m.uuid for d in devices for m in d.mig_devices}

    def GetInventory(self, request: Any, context: Any) -> Any:
        return inventory_message(self._identity, self._devices, self._assignments(), self._now())

    def StreamSamples(self, request: Any, context: Any) -> Iterator[Any]:
        wanted = set(request.uuids)
        unknown = sorted(wanted - self._uuids)
        if unknown:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"no such device on this node: {', '.join(unknown)}")
        replay = min(int(request.replay), _MAX_REPLAY)
        peer = context.peer()
        log.info("stream opened peer=%s replay=%d devices=%s", peer, replay, len(wanted) or "all")
        if self._metrics is not None:
            self._metrics.stream_clients.inc()
        sent = 0
        try:
            last = self._history.latest_seq()
            if replay:
                for batch in self._history.recent(replay):
                    yield batch_message(batch, self._identity, wanted, replayed=True)
                    sent += 1
                    last = batch.seq
            while context.is_active() and not self._history.closed:
                for batch in self._history.wait_after(last, _WAIT_SLICE_S):
                    yield batch_message(batch, self._identity, wanted)
                    sent += 1
                    last = batch.seq
        finally:
            if self._metrics is not None:
                self._metrics.stream_clients.dec()
                self._metrics.batches_sent.inc(sent)
            log.info("stream closed peer=%s batches=%d", peer, sent)


def start_server(service: GpuAgentService, address: str, max_streams: int = 8) -> tuple[grpc.Server, int]:
    """Serve ``service`` on ``address`` (HOST:PORT, port 0 for any); returns the server and its port."""
    workers = max_streams + 2
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gpufleet-grpc"),
        maximum_concurrent_rpcs=workers,
        options=[("grpc.so_reuseport", 0)],
    )
    agent_pb2_grpc.add_GpuAgentServicer_to_server(service, server)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as err:
        raise AgentServiceError(f"listening for gRPC on {address}: {err}") from err
    if port == 0:
        raise AgentServiceError(f"listening for gRPC on {address}: address unavailable or in use")
    server.start()
    return server, port
