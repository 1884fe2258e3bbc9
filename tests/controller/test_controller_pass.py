"""The whole pass against a real in-process agent over real gRPC (simulated GPUs), and a recording API.

The agent plays the built-in scenario: research/notebook-7f9c holds a GPU at 0 % with memory held (the
reclaim target), ml/trainer-0 is busy, research/probe holds a MIG slice (no utilisation: no data).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from gpufleet.autoscaler.agent.app import Agent
from gpufleet.autoscaler.agent.config import AgentConfig
from gpufleet.autoscaler.agent.pods import StaticPodSource
from gpufleet.autoscaler.controller.app import Controller, Discovery
from gpufleet.autoscaler.controller.config import AgentsConfig, ControllerConfig, LeaseConfig, SamplesConfig
from gpufleet.autoscaler.controller.plan import Step
from gpufleet.autoscaler.gpu.backend import BUILTIN, open_backend
from gpufleet.autoscaler.reclaim import ReclaimConfig
from gpufleet.autoscaler.reclaim.config import DetectionConfig, WindowConfig
from gpufleet.core import names
from gpufleet.core.clock import SystemClock

from .fakes import FakeAPI, pod

NOTEBOOK = "/api/v1/namespaces/research/pods/notebook-7f9c"


@pytest.fixture
def agent() -> Iterator[Agent]:
    clock = SystemClock()
    backend = open_backend(BUILTIN, clock=clock, node_name="node-a")
    assert backend.scenario is not None and backend.simulator is not None
    config = AgentConfig(node_name="node-a", listen="127.0.0.1:0", metrics_listen="127.0.0.1:0", interval_s=0.05,
                         pod_resources_socket=None, pod_refresh_s=0.2, history=100, max_streams=4)
    a = Agent(config, backend, StaticPodSource(backend.scenario, backend.simulator), clock)
    a.start()
    yield a
    a.stop(grace_s=0)


def cluster_api() -> FakeAPI:
    api = FakeAPI()
    for name, value in (("research", "evict"), ("ml", None)):
        api.add(f"/api/v1/namespaces/{name}", {"metadata": {"name": name,
                                                            "annotations": {names.RECLAIM: value} if value else {}}})
    for ns, name in (("research", "notebook-7f9c"), ("research", "probe"), ("ml", "trainer-0"),
                     ("ml", "batch-infer"), ("ml", "stuck-job")):
        api.add(f"/api/v1/namespaces/{ns}/pods/{name}", pod(ns, name, f"uid-{name}"))
    return api


def controller(api: FakeAPI, agent: Agent, stale_after_s: float = 2.0, identity: str = "c1",
               notice_s: float = 1.0) -> Controller:
    reclaim = ReclaimConfig(policy="window", grace_s=0, notice_s=notice_s, window=WindowConfig(window_s=0.5),
                            detection=DetectionConfig(stale_after_s=stale_after_s, min_idle_s=0))
    config = ControllerConfig(reclaim=reclaim, samples=SamplesConfig(bucket_s=0.1, history_s=60),
                              agents=AgentsConfig(stale_after_s=stale_after_s, replay=100, backoff_s=0.1),
                              lease=LeaseConfig(namespace="sys"), pass_interval_s=0.1)
    c = Controller(api, config, SystemClock(), CollectorRegistry(), identity,
                   Discovery(endpoints=(f"127.0.0.1:{agent.grpc_port}",)))
    refresh(c, api)
    c.refresh_agents(force=True)
    return c


def refresh(c: Controller, api: FakeAPI) -> None:
    """What the informers would do: the caches follow the API's objects."""
    c.caches["namespaces"].replace([o for p, o in api.objects.items() if p.count("/") == 4])
    c.caches["pods"].replace([o for p, o in api.objects.items() if "/pods/" in p])


def passes(c: Controller, api: FakeAPI, seconds: float, until=None) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        refresh(c, api)
        c.elector.step()
        c.run_pass()
        if until is not None and until():
            return
        time.sleep(0.1)


def notices(api: FakeAPI, name: str) -> int:
    return sum(1 for e in api.events if e["reason"] == "IdleGPUNotice" and e["involvedObject"]["name"] == name)


def test_only_the_opted_in_idle_pod_gets_notice_and_then_is_evicted(agent: Agent) -> None:
    api = cluster_api()
    c = controller(api, agent)
    try:
        passes(c, api, 20, until=lambda: NOTEBOOK not in api.objects)
    finally:
        c.pool.stop()
    assert NOTEBOOK not in api.objects, [p.reason for p in c.last_plans]
    assert notices(api, "notebook-7f9c") == 1
    touched = {path for _, path, _ in api.writes() if "/pods/" in path}
    assert touched == {NOTEBOOK, f"{NOTEBOOK}/eviction"}  # ml/* not opted in; the MIG probe has no data
    probe = next(p for p in c.last_plans if p.pod.name == "probe")
    assert probe.step is Step.SKIP


def test_an_agent_that_stops_streaming_blocks_the_action(agent: Agent) -> None:
    api = cluster_api()
    c = controller(api, agent, stale_after_s=0.5, notice_s=4.0)
    try:
        passes(c, api, 15, until=lambda: notices(api, "notebook-7f9c") == 1)
        assert notices(api, "notebook-7f9c") == 1
        agent.stop(grace_s=0)
        passes(c, api, 6)
    finally:
        c.pool.stop()
    assert NOTEBOOK in api.objects
    assert not api.writes("POST", "/eviction")
    plan = next(p for p in c.last_plans if p.pod.name == "notebook-7f9c")
    assert plan.step is Step.SKIP and plan.skip == "stale"


def test_a_restarted_controller_mid_notice_sends_no_second_notice_and_acts_once(agent: Agent) -> None:
    api = cluster_api()
    api.pdb_blocks.add("notebook-7f9c")  # keep the pod so the second controller sees it due
    first = controller(api, agent, identity="same")
    try:
        passes(first, api, 15, until=lambda: notices(api, "notebook-7f9c") == 1)
    finally:
        first.pool.stop()
    second = controller(api, agent, identity="same")
    try:
        passes(second, api, 3)
        api.pdb_blocks.clear()
        passes(second, api, 5, until=lambda: NOTEBOOK not in api.objects)
    finally:
        second.pool.stop()
    assert notices(api, "notebook-7f9c") == 1
    assert NOTEBOOK not in api.objects
    assert len([c for c in api.writes("POST", "/eviction")]) >= 1
    reclaimed = [e for e in api.events if e["reason"] == "IdleGPUReclaimed"]
    assert len(reclaimed) == 1
