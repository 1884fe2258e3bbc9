"""Many simulated nodes in one agent process (``gpufleet agent --simulate SCRIPT --nodes ...``).

Stands in for the agents of a fleet of kwok nodes, so the controller is tested at fleet size: every node
plays the same script (its own UUIDs, from its name) and asks its own kubelet socket (``{node}`` in the
socket path, e.g. the fake kubelets of ``gpufleet.autoscaler.kubelet.mirror``) or the script's pods
(``{node}`` in a script pod's name becomes the node's name, so each node's pods are distinct).
One thread samples every node each interval; one gRPC port serves them all: ``StreamSamples`` sends
every node's passes on one stream, each batch carrying its node's name (the controller keys by it), and
``GetInventory`` answers for the first node with ``pod_resources_ok`` true only when every node's kubelet
answered.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass, replace
from typing import Any

import grpc

from gpufleet.autoscaler.agent.app import agent_version
from gpufleet.autoscaler.agent.history import AgentIdentity, SampleHistory
from gpufleet.autoscaler.agent.pods import KubeletPodSource, NoPodSource, PodSource, StaticPodSource
from gpufleet.autoscaler.agent.sampler import Sampler
from gpufleet.autoscaler.agent.wire import batch_message, inventory_message
from gpufleet.autoscaler.gpu.backend import open_backend
from gpufleet.autoscaler.gpu.model import GpuError
from gpufleet.core.clock import Clock
from gpufleet.proto.gpufleet.v1 import agent_pb2_grpc

log = logging.getLogger(__name__)


def node_names(spec: str) -> list[str]:
    """``a,b,c`` or ``FORMAT:COUNT`` (``gpu-node-{:05d}:1000``) -> node names."""
    if ":" in spec and "{" in spec:
        fmt, _, count = spec.rpartition(":")
        if not count.isdigit():
            raise ValueError(f"--nodes {spec!r}: expected FORMAT:COUNT such as gpu-node-{{:05d}}:100")
        return [fmt.format(i) for i in range(int(count))]
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise ValueError(f"--nodes {spec!r}: no node names")
    return names


@dataclass
class _Node:
    identity: AgentIdentity
    devices: Sequence[Any]
    history: SampleHistory
    sampler: Sampler
    pods: PodSource
    backend: Any


class FleetAgent:
    def __init__(self, script: str, nodes: Sequence[str], clock: Clock, interval_s: float = 1.0,
                 socket_template: str | None = None, pod_refresh_s: float = 5.0, history: int = 60) -> None:
        self.clock = clock
        self.interval_s = interval_s
        self.nodes: list[_Node] = []
        for name in nodes:
            backend = open_backend(script, clock=clock, node_name=name)
            if socket_template:
                from gpufleet.autoscaler.kubelet.podresources import PodResourcesClient

                pods: PodSource = KubeletPodSource(PodResourcesClient(socket_template.format(node=name)))
            elif backend.scenario is not None and backend.simulator is not None and backend.scenario.pods:
                scenario = replace(backend.scenario, pods=tuple(replace(p, pod=p.pod.replace("{node}", name))
                                                                for p in backend.scenario.pods))
                pods = StaticPodSource(scenario, backend.simulator)
            else:
                pods = NoPodSource()
            devices = backend.reader.devices()
            ring = SampleHistory(history)
            identity = AgentIdentity(name, agent_version(), backend.info.backend, backend.info.driver_version,
                                     backend.info.nvml_version, str(uuid.uuid4()), clock.now(), interval_s)
            sampler = Sampler(backend.reader, devices, pods, ring, clock, interval_s=interval_s,
                              pod_refresh_s=pod_refresh_s)
            self.nodes.append(_Node(identity, devices, ring, sampler, pods, backend))
        self._round = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._server: grpc.Server | None = None
        self.grpc_port = 0
        self.lag_s = 0.0  # how late the last round ended after its deadline

    def sample_round(self) -> None:
        for node in self.nodes:
            try:
                node.sampler.sample_once()
            except GpuError as err:
                log.warning("node=%s pass failed: %s", node.identity.node_name, err)
        with self._cond:
            self._round += 1
            self._cond.notify_all()

    def _loop(self) -> None:
        deadline = self.clock.monotonic()
        while not self._stop.is_set():
            self.sample_round()
            deadline += self.interval_s
            now = self.clock.monotonic()
            self.lag_s = max(0.0, now - deadline)
            if now > deadline + 10 * self.interval_s:
                deadline = now  # far behind: do not burst to catch up
            self._stop.wait(max(0.0, deadline - now))

    def wait_round(self, after: int, timeout: float) -> int:
        with self._cond:
            self._cond.wait_for(lambda: self._stop.is_set() or self._round > after, timeout)
            return self._round

    def start(self, address: str, max_streams: int = 8) -> int:
        self.sample_round()
        workers = max_streams + 2
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gpufleet-grpc"),
                                   maximum_concurrent_rpcs=workers, options=[("grpc.so_reuseport", 0)])
        agent_pb2_grpc.add_GpuAgentServicer_to_server(_FleetService(self), self._server)
        self.grpc_port = self._server.add_insecure_port(address)
        if self.grpc_port == 0:
            raise OSError(f"listening for gRPC on {address}: address unavailable or in use")
        self._server.start()
        self._thread = threading.Thread(target=self._loop, name="gpufleet-fleet-sampler", daemon=True)
        self._thread.start()
        log.info("fleet agent started nodes=%d gpus=%d grpc_port=%d", len(self.nodes),
                 sum(len(n.devices) for n in self.nodes), self.grpc_port)
        return self.grpc_port

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)  # a round in progress finishes before the readers close
        for node in self.nodes:
            node.history.close()
        if self._server is not None:
            self._server.stop(grace=None).wait()
        for node in self.nodes:
            node.pods.close()
            node.backend.reader.close()


class _FleetService(agent_pb2_grpc.GpuAgentServicer):
    def __init__(self, fleet: FleetAgent) -> None:
        self._fleet = fleet

    def GetInventory(self, request: Any, context: Any) -> Any:
        first = self._fleet.nodes[0]
        message = inventory_message(first.identity, first.devices, first.sampler.assignments, self._fleet.clock.now())
        message.pod_resources_ok = all(n.sampler.assignments.ok for n in self._fleet.nodes)
        return message

    def StreamSamples(self, request: Any, context: Any) -> Iterator[Any]:
        wanted = set(request.uuids)
        last = {id(n): n.history.latest_seq() for n in self._fleet.nodes}
        if request.replay:
            for node in self._fleet.nodes:
                for batch in node.history.recent(int(request.replay)):
                    yield batch_message(batch, node.identity, wanted, replayed=True)
        seen = self._fleet.wait_round(-1, 0)
        while context.is_active() and not self._fleet._stop.is_set():
            seen = self._fleet.wait_round(seen, 0.5)
            for node in self._fleet.nodes:
                for batch in node.history.after(last[id(node)]):
                    yield batch_message(batch, node.identity, wanted)
                    last[id(node)] = batch.seq
