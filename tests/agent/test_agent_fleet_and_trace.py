"""Many simulated nodes on one gRPC port (``--nodes``), and GPUs playing a recorded pod's series (``trace:``)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
import yaml

from gpufleet.autoscaler.agent.fleet import FleetAgent, node_names
from gpufleet.autoscaler.gpu.script import ScriptError, parse_scenario
from gpufleet.core.clock import SystemClock
from gpufleet.proto.gpufleet.v1 import agent_pb2, agent_pb2_grpc

GENTD26 = Path(__file__).resolve().parents[2] / "bench" / "data" / "alibaba-gentd26"


def write_trace(tmp_path: Path) -> tuple[str, str]:
    util = tmp_path / "util.csv"
    util.write_text("value,timestamp_anon,container_ip\n"
                    "0,1000,pod-a\n80,1060,pod-a\n0,1120,pod-a\n5,1000,pod-b\n5,1060,pod-b\n")
    mem = tmp_path / "mem.csv"
    mem.write_text("timestamp_anon,value,container_ip\n1000,1073741824,pod-a\n1060,2147483648,pod-a\n"
                   "1120,2147483648,pod-a\n")
    return str(util), str(mem)


def test_a_gpu_plays_a_recorded_pod_series_at_the_asked_speed(tmp_path: Path) -> None:
    util, mem = write_trace(tmp_path)
    scenario = parse_scenario({"gpus": [{"trace": {"utilisation": util, "memory": mem, "pod": "pod-a",
                                                   "speed": 60}}]})
    gpu = scenario.gpus[0]
    assert [(p.seconds, p.util_low, p.memory_mib) for p in gpu.phases] == [(1.0, 0, 1024), (1.0, 80, 2048),
                                                                          (1.0, 0, 2048)]
    assert gpu.phase_at(1.5).util_low == 80


@pytest.mark.parametrize(("trace", "message"), [
    ({"utilisation": "missing.csv"}, "cannot read"),
    ({"utilisation": "UTIL", "pod": 5}, "out of range"),
    ({"utilisation": "UTIL", "pod": "nobody"}, "container_ip key"),
    ({"utilisation": "UTIL", "speed": 0}, "positive"),
    ({"utilisation": "UTIL", "colour": "red"}, "unknown keys"),
])
def test_a_bad_trace_entry_is_reported_with_its_path(tmp_path: Path, trace: dict, message: str) -> None:
    util, _ = write_trace(tmp_path)
    trace = {k: (util if v == "UTIL" else v) for k, v in trace.items()}
    with pytest.raises(ScriptError) as err:
        parse_scenario({"gpus": [{"trace": trace}]})
    assert "gpus[0].trace" in str(err.value) and message in str(err.value)


def test_the_gentd26_copy_in_the_repository_can_be_played() -> None:
    scenario = parse_scenario({"gpus": [{"trace": {
        "utilisation": str(GENTD26 / "pod_gpu_duty_cycle_anon.csv.gz"),
        "memory": str(GENTD26 / "pod_gpu_memory_used_bytes_anon.csv.gz"), "pod": 0, "speed": 57}}]})
    assert len(scenario.gpus[0].phases) > 100


def test_node_names_from_a_list_or_a_format_and_count() -> None:
    assert node_names("a, b") == ["a", "b"]
    assert node_names("gpu-node-{:05d}:3") == ["gpu-node-00000", "gpu-node-00001", "gpu-node-00002"]
    with pytest.raises(ValueError):
        node_names("x-{:d}:many")


def test_one_port_streams_every_node_with_its_own_pods(tmp_path: Path) -> None:
    script = tmp_path / "fleet.yaml"
    script.write_text(yaml.safe_dump({"gpus": [{"preset": "held-idle"}, {"preset": "busy"}],
                                      "pods": [{"namespace": "f", "pod": "{node}-g0", "container": "m", "gpus": [0]}]}))
    fleet = FleetAgent(str(script), ["n0", "n1", "n2"], SystemClock(), interval_s=0.05, history=20)
    port = fleet.start("127.0.0.1:0")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = agent_pb2_grpc.GpuAgentStub(channel)
            assert stub.GetInventory(agent_pb2.GetInventoryRequest(), timeout=5).pod_resources_ok
            seen: dict[str, set[str]] = {}
            uuids: set[str] = set()
            for batch in stub.StreamSamples(agent_pb2.StreamSamplesRequest(replay=1), timeout=10):
                seen.setdefault(batch.node_name, set()).update(p.pod for g in batch.gpus for p in g.pods)
                uuids.update(g.uuid for g in batch.gpus)
                if len(seen) == 3 and len(uuids) == 6:
                    break
    finally:
        fleet.stop()
    assert seen == {"n0": {"n0-g0"}, "n1": {"n1-g0"}, "n2": {"n2-g0"}}
    assert len(uuids) == 6  # each node's GPUs have their own UUIDs
