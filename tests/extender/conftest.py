"""Fixtures for the extender tests: a fake clock, a cached extender over 8-GPU nodes, a live server."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from gpufleet.core.clock import FakeClock
from gpufleet.core.pricing import PriceCatalog
from gpufleet.scheduler.extender.events import EventConfig, EventRecorder
from gpufleet.scheduler.extender.metrics import ExtenderMetrics
from gpufleet.scheduler.extender.nodes import parse_node
from gpufleet.scheduler.extender.pods import parse_pod
from gpufleet.scheduler.extender.scoring import Scorer, ScoringConfig
from gpufleet.scheduler.extender.server import ExtenderServer, ServerConfig
from gpufleet.scheduler.extender.service import Extender
from gpufleet.scheduler.extender.state import ClusterState

from . import payloads as P
from .fakes import FakeKubeAPI


@dataclass
class Rig:
    """One extender with its parts, for tests that look inside."""

    extender: Extender
    state: ClusterState
    api: FakeKubeAPI
    clock: FakeClock
    metrics: ExtenderMetrics
    events: EventRecorder


def make_rig(nodes: list[dict[str, Any]], pods: list[dict[str, Any]] = (), namespaces: list[dict[str, Any]] = (),
             *, standalone: bool = False, events: EventConfig | None = None,
             scoring: ScoringConfig = ScoringConfig()) -> Rig:
    clock = FakeClock()
    catalog = PriceCatalog.default()
    state = ClusterState(clock=clock, resources=("nodes",) if standalone else ("nodes", "pods", "namespaces"))
    api = FakeKubeAPI()
    metrics = ExtenderMetrics(CollectorRegistry())
    scorer = Scorer(scoring)
    metrics.watch_state(state, lambda: scorer.fragmentation(state))
    recorder = EventRecorder(api, clock, metrics, events or EventConfig(), instance="test")
    if not standalone:
        state.replace_nodes([parse_node(n, catalog) for n in nodes])
        state.replace_pods([parse_pod(p) for p in pods])
        state.replace_namespaces({ns["metadata"]["name"]: ns["metadata"]["annotations"].get("gpufleet.io/placement")
                                  for ns in namespaces})
        for resource in ("nodes", "pods", "namespaces"):
            state.mark_synced(resource)
        for p in pods:
            api.add_pod(p)
    extender = Extender(state, scorer, metrics, catalog=catalog, binder=None if standalone else api,
                        events=recorder, standalone=standalone)
    return Rig(extender, state, api, clock, metrics, recorder)


def eight_gpu_nodes(count: int, **kwargs: Any) -> list[dict[str, Any]]:
    return [P.node(f"gpu-{i:03d}", **kwargs) for i in range(count)]


@pytest.fixture
def rig() -> Rig:
    return make_rig(eight_gpu_nodes(4))


class Client:
    """A keep-alive HTTP client for the live server, like kube-scheduler's."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        try:
            self.conn.request(method, path, body=body, headers=headers or {"Content-Type": "application/json"})
            response = self.conn.getresponse()
            data = response.read()
            if response.getheader("Connection", "").lower() == "close":
                self.conn.close()
            return response.status, data
        except (http.client.HTTPException, OSError):
            self.conn.close()
            raise

    def post(self, verb: str, doc: Any) -> tuple[int, Any]:
        status, data = self.request("POST", f"/v1/{verb}", json.dumps(doc).encode())
        return status, json.loads(data)

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def live(rig: Rig) -> Iterator[tuple[Rig, Client]]:
    server = ExtenderServer(rig.extender, rig.metrics, "127.0.0.1", 0, ServerConfig(max_body_bytes=1 << 20))
    server.start()
    client = Client(server.port)
    try:
        yield rig, client
    finally:
        client.close()
        server.stop()
