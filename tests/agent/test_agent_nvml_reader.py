"""The NVML reader over the simulated NVML: discovery, MIG, and what NVML really raises.

Errors are injected as the real ``pynvml.NVMLError_*`` classes, so these tests pin the reader's
handling of each one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pynvml
import pytest

from gpufleet.autoscaler.gpu.backend import BUILTIN, open_backend
from gpufleet.autoscaler.gpu.model import GpuBackendFailed, GpuBackendUnavailable, Health
from gpufleet.autoscaler.gpu.nvml import NvmlReader
from gpufleet.autoscaler.gpu.simulated import SimulatedNvml
from gpufleet.core.clock import FakeClock

MakeReader = Callable[[dict[str, Any]], tuple[NvmlReader, SimulatedNvml]]


def by_uuid(readings):  # type: ignore[no-untyped-def]
    return {r.uuid: r for r in readings}


def test_discovery_finds_every_gpu_with_identity_and_the_mig_devices(reader: NvmlReader) -> None:
    devices = reader.devices()
    assert [d.index for d in devices] == list(range(8))
    assert all(d.uuid.startswith("GPU-") and d.model_name == "NVIDIA A100-SXM4-80GB" for d in devices)
    assert devices[3].memory_total_bytes == 81920 * 2**20
    assert devices[3].pci_bus_id == "00000000:13:00.0" and devices[3].device_name == "nvidia3"
    assert devices[0].power_limit_milliwatts == 400_000
    mig = devices[6]
    assert mig.mig_enabled and [m.index for m in mig.mig_devices] == [0, 1]
    assert mig.mig_devices[0].uuid.startswith("MIG-") and mig.mig_devices[0].name.endswith("MIG 3g.40gb")
    assert [m.gpu_instance_id for m in mig.mig_devices] == [1, 2]


def test_one_pass_reads_busy_idle_and_memory_held_gpus(reader: NvmlReader, clock: FakeClock) -> None:
    clock.advance(5)
    readings = reader.read_all()
    assert len(readings) == 8 + 2  # GPUs, then MIG devices
    busy, idle, held = readings[0], readings[3], readings[4]
    assert busy.health is Health.OK and busy.gpu_util_percent >= 88
    assert busy.power_watts > 300 and busy.temperature_celsius > 60 and busy.energy_millijoules > 0
    assert [p.pid for p in busy.processes] == [10_000] and busy.processes[0].sm_util_percent == busy.gpu_util_percent
    assert idle.gpu_util_percent == 0 and idle.memory_used_bytes == 0 and idle.processes == ()
    assert held.gpu_util_percent == 0 and held.memory_used_bytes == 40960 * 2**20
    assert held.processes[0].used_memory_bytes == 40960 * 2**20 and held.processes[0].sm_util_percent is None
    assert all(r.errors == () for r in readings)


def test_mig_devices_report_memory_and_processes_but_no_device_utilisation(reader: NvmlReader) -> None:
    readings = reader.read_all()
    parent, migs = readings[6], readings[8:]
    assert parent.gpu_util_percent is None and parent.memory_used_bytes == 9000 * 2**20
    assert [m.parent_uuid for m in migs] == [parent.uuid, parent.uuid]
    assert migs[0].memory_used_bytes == 9000 * 2**20 and migs[0].processes[0].pid == 10_650
    assert migs[1].processes == () and migs[0].gpu_util_percent is None
    assert parent.errors == ()  # NotSupported is absence, not an error


def test_a_gpu_falling_off_the_bus_reads_as_lost_from_then_on(reader: NvmlReader, clock: FakeClock) -> None:
    assert reader.read_all()[7].health is Health.OK
    clock.advance(91)
    lost = reader.read_all()[7]
    assert lost.health is Health.LOST and lost.gpu_util_percent is None and lost.memory_used_bytes is None
    clock.advance(1000)  # looping presets come back around; a lost GPU does not
    assert reader.read_all()[7].health is Health.LOST


def test_gpu_is_lost_mid_pass_marks_only_that_gpu_lost(reader: NvmlReader, sim: SimulatedNvml) -> None:
    sim.fail_next("nvmlDeviceGetPowerUsage", pynvml.NVMLError_GpuIsLost())
    readings = reader.read_all()
    assert readings[0].health is Health.LOST
    assert all(r.health is Health.OK for r in readings[1:7])


def test_a_gpu_already_lost_at_discovery_is_listed_as_lost_with_a_placeholder(make_reader: MakeReader) -> None:
    r, _ = make_reader({"gpus": [{"preset": "busy"}, {"phases": [{"lost": True}]}]})
    devices = r.devices()
    assert devices[1].uuid == "GPU-unknown-index-1"
    assert [x.health for x in r.read_all()] == [Health.OK, Health.LOST]


def test_not_supported_reads_are_absent_and_not_asked_again(make_reader: MakeReader) -> None:
    r, sim = make_reader({"gpus": [{"preset": "busy", "unsupported": ["power", "energy", "temperature"]}]})
    first = r.read_all()[0]
    r.read_all()
    assert first.power_watts is None and first.energy_millijoules is None and first.temperature_celsius is None
    assert first.errors == () and first.health is Health.OK
    assert sim.calls["nvmlDeviceGetPowerUsage"] == 1
    assert sim.calls["nvmlDeviceGetTemperatureV"] == 1 and sim.calls["nvmlDeviceGetTemperature"] == 1


def test_clocks_are_read_every_pass_on_gpus_and_not_on_mig_devices(reader: NvmlReader, sim: SimulatedNvml) -> None:
    first = reader.read_all()
    second = reader.read_all()
    busy, idle, mig_parent, migs = second[0], second[3], second[6], second[8:]
    assert (busy.sm_clock_mhz, busy.mem_clock_mhz) == (1410, 1593)  # A100 defaults: boosted while busy
    assert (idle.sm_clock_mhz, idle.mem_clock_mhz) == (210, 1593)
    assert (mig_parent.sm_clock_mhz, mig_parent.mem_clock_mhz) == (210, 1593)  # MIG mode: the parent has clocks
    assert all(m.sm_clock_mhz is None and m.mem_clock_mhz is None for m in migs)
    assert all(r.errors == () for r in (*first, *second))
    assert sim.calls["nvmlDeviceGetClockInfo"] == 2 * 2 * 8  # cheap reads: SM + memory, every pass, every GPU


def test_an_h200_like_gpu_idles_at_210_mhz_and_boosts_to_1980_when_busy(make_reader: MakeReader,
                                                                       clock: FakeClock) -> None:
    h200 = {"model": "NVIDIA H200", "memory_mib": 143771, "sm_clock_max_mhz": 1980, "mem_clock_mhz": 3201,
            "phases": [{"seconds": 10, "util": 0}, {"seconds": 10, "util": [90, 100]}]}
    r, _ = make_reader({"gpus": [h200]})
    idle = r.read_all()[0]
    clock.advance(15)
    busy = r.read_all()[0]
    assert (idle.sm_clock_mhz, idle.mem_clock_mhz) == (210, 3201)
    assert (busy.sm_clock_mhz, busy.mem_clock_mhz) == (1980, 3201)


def test_clocks_not_supported_are_absent_and_not_asked_again(make_reader: MakeReader) -> None:
    r, sim = make_reader({"gpus": [{"preset": "busy", "unsupported": ["clocks"]}, {"preset": "busy"}]})
    first, other = r.read_all()
    r.read_all()
    assert first.sm_clock_mhz is None and first.mem_clock_mhz is None
    assert first.errors == () and first.health is Health.OK and first.power_watts is not None
    assert other.sm_clock_mhz == 1410
    assert sim.calls["nvmlDeviceGetClockInfo"] == 2 + 2 * 2  # the first GPU once per clock, the other every pass


def test_an_old_driver_without_temperature_v_falls_back_to_the_old_call(reader: NvmlReader, sim: SimulatedNvml) -> None:
    sim.fail_next("nvmlDeviceGetTemperatureV", pynvml.NVMLError_FunctionNotFound(), times=8)
    first = reader.read_all()
    second = reader.read_all()
    assert first[0].temperature_celsius is not None and second[0].temperature_celsius is not None
    assert sim.calls["nvmlDeviceGetTemperatureV"] == 8  # asked once per GPU, then never again


def test_process_utilisation_not_found_means_idle_not_error(reader: NvmlReader, sim: SimulatedNvml) -> None:
    sim.fail_next("nvmlDeviceGetProcessUtilization", pynvml.NVMLError_NotFound())
    busy = reader.read_all()[0]
    assert busy.errors == () and busy.processes[0].sm_util_percent is None
    assert busy.health is Health.OK


def test_process_utilisation_is_not_asked_while_the_device_is_idle(reader: NvmlReader, sim: SimulatedNvml) -> None:
    reader.read_all()
    # busy GPUs 0, 1, 2 (bursty starts busy) and 7; idle 3, 4, 5; MIG 6 never
    assert sim.calls["nvmlDeviceGetProcessUtilization"] == 4


def test_slow_reads_are_made_once_per_slow_interval_and_carried_between(make_reader: MakeReader, clock: FakeClock) -> None:
    r, sim = make_reader({"gpus": [{"preset": "busy"}]})
    energies = []
    for _ in range(6):
        energies.append(r.read_all()[0].energy_millijoules)
        clock.advance(1)
    assert sim.calls["nvmlDeviceGetTotalEnergyConsumption"] == 2  # t=0 and t=5 with the 5 s default
    assert sim.calls["nvmlDeviceGetProcessUtilization"] == 2
    assert energies[:5] == [energies[0]] * 5 and energies[5] > energies[0]


def test_an_unexpected_nvml_error_is_recorded_in_the_reading_and_the_pass_goes_on(
    reader: NvmlReader, sim: SimulatedNvml
) -> None:
    sim.fail_next("nvmlDeviceGetMemoryInfo", pynvml.NVMLError_Unknown())
    readings = reader.read_all()
    assert readings[0].memory_used_bytes is None and readings[0].errors == ("memory: NVMLError_Unknown",)
    assert readings[0].health is Health.OK and readings[0].gpu_util_percent is not None
    assert readings[1].errors == ()


def test_a_device_whose_every_read_fails_is_in_error(make_reader: MakeReader) -> None:
    r, sim = make_reader({"gpus": [{"preset": "idle"}]})
    for op in ("nvmlDeviceGetUtilizationRates", "nvmlDeviceGetMemoryInfo", "nvmlDeviceGetPowerUsage",
               "nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetTemperatureV",
               "nvmlDeviceGetComputeRunningProcesses"):
        sim.fail_next(op, pynvml.NVMLError_Unknown())
    sim.fail_next("nvmlDeviceGetClockInfo", pynvml.NVMLError_Unknown(), times=2)  # SM and memory clock
    assert r.read_all()[0].health is Health.ERROR


@pytest.mark.parametrize("error", [pynvml.NVMLError_Uninitialized(), pynvml.NVMLError_DriverNotLoaded()])
def test_the_driver_going_away_mid_run_fails_the_pass(reader: NvmlReader, sim: SimulatedNvml, error) -> None:  # type: ignore[no-untyped-def]
    sim.fail_next("nvmlDeviceGetUtilizationRates", error)
    with pytest.raises(GpuBackendFailed, match="reading utilization of GPU GPU-"):
        reader.read_all()


@pytest.mark.parametrize(
    "error",
    [pynvml.NVMLError_LibraryNotFound(), pynvml.NVMLError_DriverNotLoaded(), pynvml.NVMLError_NoPermission(),
     pynvml.NVMLError_Unknown()],
)
def test_nvml_failing_to_initialise_makes_the_backend_unavailable(error, clock: FakeClock, sim: SimulatedNvml) -> None:  # type: ignore[no-untyped-def]
    sim.fail_next("nvmlInit", error)
    with pytest.raises(GpuBackendUnavailable, match="initialising NVML"):
        NvmlReader(sim, clock).open()


def test_failing_discovery_shuts_nvml_down_again(clock: FakeClock, sim: SimulatedNvml) -> None:
    sim.fail_next("nvmlDeviceGetCount", pynvml.NVMLError_Unknown())
    with pytest.raises(GpuBackendUnavailable, match="discovering GPUs"):
        NvmlReader(sim, clock).open()
    assert sim.calls["nvmlShutdown"] == 1


def test_reading_before_open_is_refused(sim: SimulatedNvml, clock: FakeClock) -> None:
    with pytest.raises(GpuBackendFailed, match="not open"):
        NvmlReader(sim, clock).read_all()


def test_the_simulator_behaves_like_nvml_before_init_and_for_empty_mig_slots(sim: SimulatedNvml) -> None:
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        sim.nvmlDeviceGetCount()
    sim.nvmlInit()
    with pytest.raises(pynvml.NVMLError_NotFound):
        sim.nvmlDeviceGetMigDeviceHandleByIndex(sim.nvmlDeviceGetHandleByIndex(6), 5)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        sim.nvmlDeviceGetUtilizationRates(sim.nvmlDeviceGetHandleByIndex(6))
    with pytest.raises(pynvml.NVMLError_NotFound):  # idle GPU: no process samples
        sim.nvmlDeviceGetProcessUtilization(sim.nvmlDeviceGetHandleByIndex(3), 0)


def test_simulated_uuids_are_stable_per_node_and_differ_between_nodes(scenario, clock: FakeClock) -> None:  # type: ignore[no-untyped-def]
    a1, a2, b = (SimulatedNvml(scenario, clock, node_name=n) for n in ("a", "a", "b"))
    assert a1.uuid_of("0") == a2.uuid_of("0") != b.uuid_of("0")
    assert a1.uuid_of("6/1").startswith("MIG-") and a1.uuid_of("9") is None


def test_open_backend_without_simulate_and_without_a_driver_says_what_to_do(clock: FakeClock, sim) -> None:  # type: ignore[no-untyped-def]
    sim.fail_next("nvmlInit", pynvml.NVMLError_LibraryNotFound())
    with pytest.raises(GpuBackendUnavailable, match="pass --simulate"):
        open_backend(None, clock=clock, node_name="n", nvml_api=sim)


def test_open_backend_plays_the_builtin_scenario_only_when_asked(clock: FakeClock) -> None:
    backend = open_backend(BUILTIN, clock=clock, node_name="n")
    assert backend.info.backend == "simulated" and backend.simulator is not None
    assert len(backend.reader.devices()) == 8
    backend.reader.close()


def test_the_simulator_counts_inits_like_nvml(sim: SimulatedNvml) -> None:
    sim.nvmlInit()
    sim.nvmlInit()
    sim.nvmlShutdown()
    assert sim.nvmlDeviceGetCount() == 8  # one init still open
    sim.nvmlShutdown()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        sim.nvmlDeviceGetCount()
