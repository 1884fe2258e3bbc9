"""Reading the agents: one StreamSamples call per agent endpoint, with reconnect, backoff and a watchdog.

Each endpoint gets a thread that asks for the agent's inventory (``pod_resources_ok``), then streams
sampling passes (first a replay of the agent's recent history, so a restarted controller has minutes of
samples at once) into the :class:`SampleStore`. A stream that fails reconnects after a jittered,
doubling wait; a stream that goes silent for ``stale_after_s`` is cancelled and reconnected. An endpoint
may stream several nodes (the fleet simulator does); batches carry their node's name. Endpoints come
from ``--agents`` or from the agent Service's EndpointSlices, re-read periodically.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterable
from typing import Any

from gpufleet.autoscaler.controller.config import AgentsConfig
from gpufleet.autoscaler.controller.store import Reading, SampleStore
from gpufleet.core.clock import Clock
from gpufleet.core.kube.errors import KubeAPIError

log = logging.getLogger(__name__)


def readings(batch: Any) -> list[Reading]:
    """The store's view of a gpufleet.v1 SampleBatch."""
    from gpufleet.proto.gpufleet.v1 import agent_pb2

    out = []
    for g in batch.gpus:
        ok = g.health == agent_pb2.HEALTH_OK and g.HasField("gpu_util_percent")
        out.append(Reading(
            uuid=g.uuid,
            utilisation_percent=float(g.gpu_util_percent) if ok else None,
            memory_used_bytes=float(g.memory_used_bytes) if g.HasField("memory_used_bytes") else None,
            power_watts=float(g.power_watts) if g.HasField("power_watts") else None,
            processes=len(g.processes),
            pods=tuple(dict.fromkeys((p.namespace, p.pod) for p in g.pods)),
        ))
    return out


class AgentStream:
    """One endpoint's reader thread."""

    def __init__(self, endpoint: str, store: SampleStore, clock: Clock, config: AgentsConfig,
                 on_batch: Callable[[str, int], None] | None = None, rng: random.Random | None = None) -> None:
        self.endpoint = endpoint
        self._store = store
        self._clock = clock
        self._config = config
        self._on_batch = on_batch
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._call: Any = None
        self._lock = threading.Lock()
        self.last_batch_mono = clock.monotonic()
        self.connected = False
        self.nodes: set[str] = set()
        self._thread: threading.Thread | None = None

    def start(self) -> AgentStream:
        self._thread = threading.Thread(target=self._run, name=f"gpufleet-agent-{self.endpoint}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._cancel()

    def _cancel(self) -> None:
        with self._lock:
            call = self._call
        if call is not None:
            call.cancel()

    def check_silence(self) -> None:
        """Cancel a stream that has said nothing for ``stale_after_s`` (it reconnects)."""
        if self.connected and self._clock.monotonic() - self.last_batch_mono > self._config.stale_after_s:
            log.warning("agent=%s silent for %.0fs; reconnecting", self.endpoint,
                        self._clock.monotonic() - self.last_batch_mono)
            self._cancel()

    def _run(self) -> None:
        import grpc

        backoff = self._config.backoff_s
        while not self._stop.is_set():
            try:
                self._session()
                backoff = self._config.backoff_s
            except grpc.RpcError as err:
                if self._stop.is_set():
                    break
                code = err.code() if hasattr(err, "code") else None
                log.warning("agent=%s stream failed code=%s detail=%s; retrying in %.1fs", self.endpoint, code,
                            err.details() if hasattr(err, "details") else err, backoff)
            except Exception:
                log.exception("agent=%s stream failed; retrying in %.1fs", self.endpoint, backoff)
            self.connected = False
            self._stop.wait(backoff * (1.0 - 0.2 * self._rng.random()))
            backoff = min(2 * backoff, self._config.backoff_max_s)

    def _session(self) -> None:
        import grpc

        from gpufleet.proto.gpufleet.v1 import agent_pb2, agent_pb2_grpc

        with grpc.insecure_channel(self.endpoint) as channel:
            stub = agent_pb2_grpc.GpuAgentStub(channel)
            self._inventory(stub)
            next_inventory = self._clock.monotonic() + self._config.inventory_every_s
            call = stub.StreamSamples(agent_pb2.StreamSamplesRequest(replay=self._config.replay))
            with self._lock:
                self._call = call
            if self._stop.is_set():
                call.cancel()
            self.connected = True
            self.last_batch_mono = self._clock.monotonic()
            log.info("agent=%s connected", self.endpoint)
            try:
                for batch in call:
                    self._batch(batch)
                    if self._clock.monotonic() >= next_inventory:
                        self._inventory(stub)
                        next_inventory = self._clock.monotonic() + self._config.inventory_every_s
            finally:
                with self._lock:
                    self._call = None
            if not self._stop.is_set():
                log.warning("agent=%s stream ended", self.endpoint)

    def _inventory(self, stub: Any) -> None:
        from gpufleet.proto.gpufleet.v1 import agent_pb2

        inv = stub.GetInventory(agent_pb2.GetInventoryRequest(), timeout=10.0)
        now = self._clock.now()
        # An endpoint's kubelet answer covers every node it streams (one node for a real agent).
        for node in {inv.agent.node_name, *self.nodes}:
            self._store.set_pod_resources_ok(node, bool(inv.pod_resources_ok), now, self.endpoint)
        if not inv.pod_resources_ok:
            log.warning("agent=%s node=%s cannot ask the kubelet (pod_resources_ok=false): its GPUs are not "
                        "acted on", self.endpoint, inv.agent.node_name)

    def _batch(self, batch: Any) -> None:
        self.last_batch_mono = self._clock.monotonic()
        node = batch.node_name
        self.nodes.add(node)
        gpus = readings(batch)
        self._store.ingest(node, batch.unix_ms / 1000.0, self._clock.now(), gpus, self.endpoint,
                           live=not batch.replayed)
        if self._on_batch is not None:
            self._on_batch(node, len(gpus))


class AgentPool:
    """The set of streams, following the endpoint list (static, or discovered)."""

    def __init__(self, store: SampleStore, clock: Clock, config: AgentsConfig,
                 on_batch: Callable[[str, int], None] | None = None) -> None:
        self._store = store
        self._clock = clock
        self._config = config
        self._on_batch = on_batch
        self._streams: dict[str, AgentStream] = {}

    def update(self, endpoints: Iterable[str]) -> None:
        wanted = set(endpoints)
        for gone in set(self._streams) - wanted:
            log.info("agent=%s left the endpoint list", gone)
            self._streams.pop(gone).stop()
        for new in sorted(wanted - set(self._streams)):
            self._streams[new] = AgentStream(new, self._store, self._clock, self._config, self._on_batch).start()

    def check(self) -> None:
        for stream in self._streams.values():
            stream.check_silence()

    @property
    def connected(self) -> int:
        return sum(1 for s in self._streams.values() if s.connected)

    def __len__(self) -> int:
        return len(self._streams)

    def stop(self) -> None:
        for stream in self._streams.values():
            stream.stop()
        self._streams.clear()


def discover(api: Any, namespace: str, service: str, port_name: str = "grpc") -> list[str]:
    """HOST:PORT of every ready endpoint of ``service`` (its EndpointSlices)."""
    from gpufleet.core.names import SERVICE_NAME_LABEL

    try:
        slices, _ = api.list(f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices")
    except KubeAPIError as err:
        raise KubeAPIError(f"discovering agents through EndpointSlices of {namespace}/{service}: {err}") from err
    out = []
    for s in slices:
        if ((s.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL) != service:
            continue
        ports = [p.get("port") for p in s.get("ports") or [] if p.get("name") in (port_name, None, "")]
        if not ports:
            continue
        for ep in s.get("endpoints") or []:
            if (ep.get("conditions") or {}).get("ready") is False:
                continue
            for address in ep.get("addresses") or []:
                host = f"[{address}]" if ":" in address else address
                out.append(f"{host}:{ports[0]}")
    return sorted(set(out))
