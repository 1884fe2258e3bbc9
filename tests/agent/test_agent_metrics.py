"""Prometheus exposition of the agent, parsed back with prometheus_client's own parser."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from gpufleet.autoscaler.agent.history import AgentIdentity, SampleHistory
from gpufleet.autoscaler.agent.metrics import AgentMetrics
from gpufleet.autoscaler.agent.pods import StaticPodSource
from gpufleet.autoscaler.agent.sampler import Sampler
from gpufleet.autoscaler.gpu.nvml import NvmlReader
from gpufleet.autoscaler.gpu.script import Scenario
from gpufleet.autoscaler.gpu.simulated import SimulatedNvml
from gpufleet.core.clock import FakeClock

IDENTITY = AgentIdentity("node-a", "0.1.0", "simulated", "550.90.07", "12.550.90.07", "id-1", 1.7e9, 1.0)
Samples = dict[str, list[tuple[dict[str, str], float]]]


@pytest.fixture
def scrape(reader: NvmlReader, sim: SimulatedNvml, scenario: Scenario, clock: FakeClock) -> Callable[[], Samples]:
    registry = CollectorRegistry()
    history = SampleHistory(10)
    metrics = AgentMetrics(registry, history, reader.devices(), IDENTITY)
    sampler = Sampler(reader, reader.devices(), StaticPodSource(scenario, sim), history, clock, observer=metrics)

    def run() -> Samples:
        sampler.sample_once()
        out: Samples = {}
        for family in text_string_to_metric_families(generate_latest(registry).decode()):
            for s in family.samples:
                out.setdefault(s.name, []).append((s.labels, s.value))
        return out

    return run


def one(samples: Samples, name: str, **labels: str) -> float:
    found = [v for lab, v in samples[name] if all(lab.get(k) == want for k, want in labels.items())]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def test_dcgm_series_carry_dcgm_label_names_and_units(scrape: Callable[[], Samples], reader: NvmlReader) -> None:
    samples = scrape()
    gpu0 = reader.devices()[0]
    labels = samples["DCGM_FI_DEV_GPU_UTIL"][0][0]
    assert set(labels) == {"gpu", "UUID", "pci_bus_id", "device", "modelName", "hostname", "GPU_I_PROFILE",
                           "GPU_I_ID", "pod", "namespace", "container"}
    assert one(samples, "DCGM_FI_DEV_GPU_UTIL", gpu="0") >= 88
    assert one(samples, "DCGM_FI_DEV_FB_USED", UUID=gpu0.uuid) == 49152  # MiB
    assert one(samples, "DCGM_FI_DEV_FB_FREE", UUID=gpu0.uuid) == 81920 - 49152
    assert 300 < one(samples, "DCGM_FI_DEV_POWER_USAGE", gpu="0") <= 400  # W
    assert one(samples, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", gpu="0") > 0  # mJ
    assert one(samples, "DCGM_FI_DEV_GPU_TEMP", gpu="0") > 30
    assert one(samples, "gpufleet_agent_gpu_memory_used_bytes", gpu="0") == 49152 * 2**20
    assert 0.88 <= one(samples, "gpufleet_agent_gpu_utilization_ratio", gpu="0") <= 1.0


def test_clock_series_are_dcgm_gauges_in_mhz_with_the_same_labels(scrape: Callable[[], Samples]) -> None:
    samples = scrape()
    util_labels = {tuple(sorted(lab.items())) for lab, _ in samples["DCGM_FI_DEV_GPU_UTIL"]}
    for name in ("DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_DEV_MEM_CLOCK"):
        labels = {tuple(sorted(lab.items())) for lab, _ in samples[name]}
        assert util_labels <= labels  # every GPU with utilisation, pod labels included
        assert {lab["gpu"] for lab, _ in samples[name]} == {"0", "1", "2", "3", "4", "5", "6", "7"}
        assert not [lab for lab, _ in samples[name] if lab["GPU_I_ID"]]  # clocks are the parent GPU's
    assert one(samples, "DCGM_FI_DEV_SM_CLOCK", gpu="0") == 1410  # busy
    assert one(samples, "DCGM_FI_DEV_SM_CLOCK", gpu="3") == 210  # idle
    assert one(samples, "DCGM_FI_DEV_MEM_CLOCK", gpu="3") == 1593
    assert one(samples, "DCGM_FI_DEV_SM_CLOCK", gpu="4", pod="notebook-7f9c") == 210


def test_a_gpu_without_clocks_has_no_clock_series(clock: FakeClock) -> None:
    from gpufleet.autoscaler.agent.history import Batch
    from gpufleet.autoscaler.agent.podmap import PodAssignments
    from gpufleet.autoscaler.gpu.script import parse_scenario

    sim = SimulatedNvml(parse_scenario({"gpus": [{"preset": "busy", "unsupported": ["clocks"]}, {"preset": "busy"}]}),
                        clock, node_name="node-a")
    reader = NvmlReader(sim, clock, backend="simulated")
    reader.open()
    registry = CollectorRegistry()
    history = SampleHistory(10)
    AgentMetrics(registry, history, reader.devices(), IDENTITY)
    history.append(Batch(1, clock.now(), 0.0, reader.read_all(), PodAssignments()))
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    assert [s.labels["gpu"] for s in families["DCGM_FI_DEV_SM_CLOCK"].samples] == ["1"]
    assert [s.labels["gpu"] for s in families["DCGM_FI_DEV_MEM_CLOCK"].samples] == ["1"]
    assert families["DCGM_FI_DEV_SM_CLOCK"].type == "gauge"
    assert sorted(s.labels["gpu"] for s in families["DCGM_FI_DEV_GPU_UTIL"].samples) == ["0", "1"]
    reader.close()


def test_series_name_the_pod_holding_each_gpu_and_unallocated_gpus_have_empty_pod_labels(
    scrape: Callable[[], Samples],
) -> None:
    samples = scrape()
    held = next(lab for lab, _ in samples["DCGM_FI_DEV_GPU_UTIL"] if lab["gpu"] == "4")
    assert (held["namespace"], held["pod"], held["container"]) == ("research", "notebook-7f9c", "jupyter")
    free = next(lab for lab, _ in samples["DCGM_FI_DEV_GPU_UTIL"] if lab["gpu"] == "3")
    assert (free["namespace"], free["pod"], free["container"]) == ("", "", "")
    assert one(samples, "gpufleet_agent_gpu_allocated", gpu="3") == 0
    assert one(samples, "gpufleet_agent_gpu_allocated", gpu="4") == 1
    assert one(samples, "gpufleet_agent_pod_resources_up") == 1


def test_mig_devices_are_labelled_like_dcgm_with_the_parent_gpu_and_instance(scrape: Callable[[], Samples]) -> None:
    samples = scrape()
    mig = [(lab, v) for lab, v in samples["DCGM_FI_DEV_FB_USED"] if lab["GPU_I_ID"]]
    assert sorted((lab["gpu"], lab["GPU_I_ID"], lab["GPU_I_PROFILE"], v) for lab, v in mig) == [
        ("6", "1", "3g.40gb", 9000.0), ("6", "2", "3g.40gb", 0.0)]
    probe = next(lab for lab, _ in mig if lab["GPU_I_ID"] == "1")
    assert probe["pod"] == "probe"
    assert not [lab for lab, _ in samples["DCGM_FI_DEV_GPU_UTIL"] if lab["gpu"] == "6"]  # no util in MIG mode


def test_a_lost_gpu_keeps_only_its_health_series(scrape: Callable[[], Samples], clock: FakeClock) -> None:
    clock.advance(100)
    samples = scrape()
    assert one(samples, "gpufleet_agent_gpu_lost", gpu="7") == 1
    assert one(samples, "gpufleet_agent_gpu_healthy", gpu="7") == 0
    assert one(samples, "gpufleet_agent_gpu_healthy", gpu="0") == 1
    assert not [lab for lab, _ in samples["DCGM_FI_DEV_GPU_UTIL"] if lab["gpu"] == "7"]


def test_per_process_series_and_the_agent_own_counters(scrape: Callable[[], Samples]) -> None:
    scrape()
    samples = scrape()
    assert one(samples, "gpufleet_agent_process_memory_used_bytes", gpu="4", pid="10400") == 40960 * 2**20
    assert one(samples, "gpufleet_agent_process_sm_utilization_ratio", gpu="0", pid="10000") >= 0.88
    assert one(samples, "gpufleet_agent_sampling_passes_total") == 2
    assert one(samples, "gpufleet_agent_sampling_pass_duration_seconds_count") == 2
    assert one(samples, "gpufleet_agent_info", backend="simulated", hostname="node-a") == 1
    assert one(samples, "gpufleet_agent_sampling_interval_seconds") == 1.0


def test_a_time_shared_gpu_gets_one_series_per_container(
    reader: NvmlReader, sim: SimulatedNvml, clock: FakeClock
) -> None:
    from gpufleet.autoscaler.agent.podmap import DeviceIndex, join
    from gpufleet.autoscaler.kubelet.podresources import ContainerDevices

    registry = CollectorRegistry()
    history = SampleHistory(10)
    AgentMetrics(registry, history, reader.devices(), IDENTITY)
    uuid = reader.devices()[0].uuid
    shared = join([ContainerDevices("a", "p1", "c", "nvidia.com/gpu", (f"{uuid}::0",)),
                   ContainerDevices("b", "p2", "c", "nvidia.com/gpu", (f"{uuid}::1",))], DeviceIndex(reader.devices()))
    from gpufleet.autoscaler.agent.history import Batch

    history.append(Batch(1, clock.now(), 0.0, reader.read_all(), shared))
    text = generate_latest(registry).decode()
    util = [s for f in text_string_to_metric_families(text) if f.name == "DCGM_FI_DEV_GPU_UTIL" for s in f.samples
            if s.labels["gpu"] == "0"]
    assert sorted(s.labels["pod"] for s in util) == ["p1", "p2"]
    holders = [s for f in text_string_to_metric_families(text) if f.name == "gpufleet_agent_gpu_holders"
               for s in f.samples if s.labels["gpu"] == "0"]
    assert holders[0].value == 2


def test_the_openmetrics_format_parses_too(reader: NvmlReader, clock: FakeClock) -> None:
    registry = CollectorRegistry()
    history = SampleHistory(10)
    AgentMetrics(registry, history, reader.devices(), IDENTITY)
    from gpufleet.autoscaler.agent.history import Batch
    from gpufleet.autoscaler.agent.podmap import PodAssignments

    history.append(Batch(1, clock.now(), 0.0, reader.read_all(), PodAssignments()))
    names = {f.name for f in parse_openmetrics(generate_openmetrics(registry).decode())}
    assert {"DCGM_FI_DEV_GPU_UTIL", "gpufleet_agent_gpu_healthy", "gpufleet_agent", "gpufleet_agent_sampling_passes"} <= names
