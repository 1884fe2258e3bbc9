"""The agent end to end: in-process with simulated GPUs and a fake kubelet, real gRPC and HTTP clients."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gpufleet.autoscaler.agent.app import Agent
from gpufleet.autoscaler.agent.config import AgentConfig
from gpufleet.autoscaler.agent.pods import KubeletPodSource
from gpufleet.autoscaler.gpu.backend import BUILTIN, open_backend
from gpufleet.autoscaler.kubelet.fake import FakeKubelet
from gpufleet.autoscaler.kubelet.podresources import ContainerDevices, PodResourcesClient
from gpufleet.core.clock import SystemClock
from gpufleet.proto.gpufleet.v1 import agent_pb2, agent_pb2_grpc


@pytest.fixture
def agent(kubelet: FakeKubelet) -> Iterator[Agent]:
    clock = SystemClock()
    backend = open_backend(BUILTIN, clock=clock, node_name="node-e2e")
    devices = backend.reader.devices()
    kubelet.set_containers([
        ContainerDevices("ml", "trainer-0", "main", "nvidia.com/gpu", (devices[0].uuid, f"{devices[1].uuid}::0")),
        ContainerDevices("research", "nb", "jupyter", "nvidia.com/gpu", ("nvidia4",)),
    ])
    kubelet.set_allocatable([("nvidia.com/gpu", d.uuid) for d in devices])
    config = AgentConfig(node_name="node-e2e", listen="127.0.0.1:0", metrics_listen="127.0.0.1:0",
                         interval_s=0.05, pod_resources_socket=kubelet.socket_path, pod_refresh_s=0.2, history=50,
                         max_streams=2)
    a = Agent(config, backend, KubeletPodSource(PodResourcesClient(kubelet.socket_path)), clock)
    a.start()
    yield a
    a.stop(grace_s=0)


@pytest.fixture
def stub(agent: Agent) -> Iterator[agent_pb2_grpc.GpuAgentStub]:
    channel = grpc.insecure_channel(f"127.0.0.1:{agent.grpc_port}")
    yield agent_pb2_grpc.GpuAgentStub(channel)
    channel.close()


def test_inventory_lists_devices_pods_and_the_agent_identity(stub: agent_pb2_grpc.GpuAgentStub, agent: Agent) -> None:
    inventory = stub.GetInventory(agent_pb2.GetInventoryRequest(), timeout=5)
    assert inventory.agent.node_name == "node-e2e" and inventory.agent.backend == "simulated"
    assert inventory.agent.instance_id == agent.identity.instance_id and inventory.agent.interval_seconds == 0.05
    assert [d.index for d in inventory.devices] == list(range(8))
    assert inventory.devices[6].mig_enabled and len(inventory.devices[6].mig_devices) == 2
    assert inventory.devices[0].HasField("power_limit_milliwatts")
    held = {a.device_uuid: [p.pod for p in a.pods] for a in inventory.assignments if a.pods}
    uuids = [d.uuid for d in inventory.devices]
    assert held == {uuids[0]: ["trainer-0"], uuids[1]: ["trainer-0"], uuids[4]: ["nb"]}
    assert inventory.pod_resources_ok and len(inventory.allocatable_device_uuids) == 8


def test_the_stream_sends_one_batch_per_pass_in_sequence(stub: agent_pb2_grpc.GpuAgentStub) -> None:
    stream = stub.StreamSamples(agent_pb2.StreamSamplesRequest(), timeout=10)
    batches = [next(stream) for _ in range(4)]
    stream.cancel()
    seqs = [b.seq for b in batches]
    assert seqs == list(range(seqs[0], seqs[0] + 4)) and not any(b.replayed for b in batches)
    first = batches[0]
    assert first.node_name == "node-e2e" and len(first.gpus) == 10
    gpu0 = first.gpus[0]
    assert gpu0.health == agent_pb2.HEALTH_OK and gpu0.HasField("gpu_util_percent") and gpu0.gpu_util_percent >= 88
    assert [p.pod for p in gpu0.pods] == ["trainer-0"] and gpu0.processes[0].pid == 10_000
    gpu3 = first.gpus[3]
    assert gpu3.gpu_util_percent == 0 and gpu3.HasField("gpu_util_percent") and not gpu3.pods
    mig = [g for g in first.gpus if g.parent_uuid]
    assert len(mig) == 2 and not mig[0].HasField("gpu_util_percent")  # absent, not zero


def test_the_stream_replays_history_first_and_filters_devices(stub: agent_pb2_grpc.GpuAgentStub, agent: Agent) -> None:
    agent.history.wait_after(5, timeout=5)
    uuid = agent.devices[4].uuid
    stream = stub.StreamSamples(agent_pb2.StreamSamplesRequest(replay=3, uuids=[uuid]), timeout=10)
    batches = [next(stream) for _ in range(5)]
    stream.cancel()
    assert [b.replayed for b in batches] == [True, True, True, False, False]
    assert [b.seq for b in batches] == list(range(batches[0].seq, batches[0].seq + 5))
    assert all([g.uuid for g in b.gpus] == [uuid] for b in batches)
    assert batches[0].gpus[0].memory_used_bytes == 40960 * 2**20


def test_asking_for_an_unknown_device_is_an_invalid_argument(stub: agent_pb2_grpc.GpuAgentStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        next(stub.StreamSamples(agent_pb2.StreamSamplesRequest(uuids=["GPU-nope"]), timeout=5))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "GPU-nope" in caught.value.details()


def test_streams_beyond_the_limit_are_refused_not_queued(stub: agent_pb2_grpc.GpuAgentStub) -> None:
    # max_streams=2 gives 4 workers: 4 streams hold them all, the 5th call is refused
    streams = [stub.StreamSamples(agent_pb2.StreamSamplesRequest(), timeout=10) for _ in range(4)]
    for s in streams:
        next(s)
    with pytest.raises(grpc.RpcError) as caught:
        next(stub.StreamSamples(agent_pb2.StreamSamplesRequest(), timeout=5))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    for s in streams:
        s.cancel()


def test_stopping_the_agent_ends_open_streams(agent: Agent, stub: agent_pb2_grpc.GpuAgentStub) -> None:
    stream = stub.StreamSamples(agent_pb2.StreamSamplesRequest(), timeout=10)
    next(stream)
    agent.stop(grace_s=1)
    with pytest.raises((grpc.RpcError, StopIteration)):
        for _ in range(1000):
            next(stream)


def get(agent: Agent, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{agent.metrics_port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_metrics_over_http_parse_and_name_pods_from_the_kubelet(agent: Agent) -> None:
    status, text = get(agent, "/metrics")
    assert status == 200
    util = {s.labels["gpu"]: s.labels for f in text_string_to_metric_families(text)
            if f.name == "DCGM_FI_DEV_GPU_UTIL" for s in f.samples}
    assert util["0"]["pod"] == "trainer-0" and util["4"]["pod"] == "nb" and util["3"]["pod"] == ""
    assert util["0"]["hostname"] == "node-e2e"


def test_healthz_is_ok_while_sampling_and_unhealthy_once_it_stops(agent: Agent) -> None:
    status, body = get(agent, "/healthz")
    assert status == 200
    detail = json.loads(body)
    assert detail["status"] == "ok" and detail["devices"] == 8 and detail["pod_resources_ok"]
    agent.sampler.stop()
    agent.sampler._last_ok = agent.clock.monotonic() - 60  # as if the last pass were a minute ago
    status, body = get(agent, "/healthz")
    assert status == 503 and json.loads(body)["status"] == "unhealthy"
    assert get(agent, "/nope")[0] == 404


def test_the_agent_keeps_sampling_while_the_kubelet_is_down(agent: Agent, kubelet: FakeKubelet) -> None:
    kubelet.stop()
    seq = agent.history.latest_seq()
    assert agent.history.wait_after(seq + 8, timeout=5)  # refresh every 0.2 s fails; passes go on
    latest = agent.history.latest()
    assert latest is not None and not latest.assignments.ok
    assert latest.assignments.pods_of(agent.devices[0].uuid)  # last good answer kept, marked stale
    assert get(agent, "/healthz")[0] == 200
