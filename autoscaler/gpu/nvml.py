"""Read GPUs through NVML: device discovery, MIG, and one reading per device per pass.

What NVML really raises, and what it means here:

- ``LibraryNotFound`` / ``DriverNotLoaded`` at init: this is not a GPU node -> GpuBackendUnavailable.
- ``NotSupported`` (power on some boards, utilisation on MIG, ...): the value is absent; remembered
  per device and operation so the call is not repeated every pass.
- ``FunctionNotFound``: the driver is older than the call; treated like ``NotSupported``.
- ``NotFound`` from process utilisation: no process ran a kernel since the last pass (idle GPU).
- ``GpuIsLost``: the GPU fell off the bus; its readings say LOST from then on (until restart).
- ``Uninitialized`` / ``DriverNotLoaded`` mid-run: the backend is gone -> GpuBackendFailed.
- anything else: the value is absent and ``"<operation>: <error class>"`` is recorded in the reading.

Cost: measured on an H200 (driver 580), the total-energy counter and per-process utilisation each
take 2-3 ms per call while every other read (utilisation, memory, power, temperature, clocks) takes
microseconds. So both are "slow reads", made at most every ``slow_interval_s`` per device (the values
are carried between), and per-process utilisation is not asked at all while the device utilisation
is 0 (NVML would answer NotFound). Clocks, like power and temperature, are read on the GPU, not on
its MIG devices.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pynvml

from gpufleet.autoscaler.gpu.model import (
    DriverInfo,
    GpuBackendFailed,
    GpuBackendUnavailable,
    GpuDevice,
    GpuReading,
    Health,
    MigDevice,
    ProcessReading,
)
from gpufleet.autoscaler.gpu.reader import NvmlApi
from gpufleet.core.clock import Clock, SystemClock

log = logging.getLogger(__name__)

T = TypeVar("T")

_ABSENT_ERRORS = (pynvml.NVMLError_NotSupported, pynvml.NVMLError_FunctionNotFound)
_BACKEND_GONE_ERRORS = (
    pynvml.NVMLError_Uninitialized,
    pynvml.NVMLError_DriverNotLoaded,
    pynvml.NVMLError_LibraryNotFound,
)
_NO_DRIVER_ERRORS = (
    pynvml.NVMLError_LibraryNotFound,
    pynvml.NVMLError_DriverNotLoaded,
    pynvml.NVMLError_NoPermission,
)
# How far back the first per-process utilisation query of a device looks.
_FIRST_PROCESS_WINDOW_S = 1.0


class _Lost(Exception):
    """Internal: a call said GpuIsLost; the whole device reading becomes LOST."""


@dataclass(slots=True)
class _Slot:
    device: GpuDevice
    handle: Any
    mig_handles: tuple[tuple[MigDevice, Any], ...] = ()
    lost: bool = False
    last_process_us: int = 0
    energy_mj: int | None = None
    energy_due: float = float("-inf")  # monotonic time of the next energy read
    process_util: dict[int, Any] = field(default_factory=dict)  # pid -> newest utilisation sample
    process_due: float = float("-inf")


@dataclass(slots=True)
class _Pass:
    """Error bookkeeping for the reads of one device in one pass."""

    uuid: str
    attempted: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class NvmlReader:
    """A :class:`~gpufleet.autoscaler.gpu.reader.GpuReader` over the ``pynvml`` module or a look-alike."""

    def __init__(
        self,
        api: NvmlApi | None = None,
        clock: Clock | None = None,
        backend: str = "nvml",
        slow_interval_s: float = 5.0,
    ) -> None:
        self._api: Any = api if api is not None else pynvml
        self._clock = clock or SystemClock()
        self._backend = backend
        self._slow_interval_s = slow_interval_s
        self._slots: list[_Slot] = []
        self._unsupported: set[tuple[str, str]] = set()
        self._warned: set[tuple[str, str, str]] = set()
        self._opened = False

    # -- lifecycle -------------------------------------------------------------------------------

    def open(self) -> DriverInfo:
        api = self._api
        try:
            api.nvmlInit()
        except _NO_DRIVER_ERRORS as err:
            raise GpuBackendUnavailable(f"initialising NVML: {err} (no NVIDIA driver on this machine?)") from err
        except pynvml.NVMLError as err:
            raise GpuBackendUnavailable(f"initialising NVML: {err}") from err
        self._opened = True
        try:
            info = DriverInfo(
                backend=self._backend,
                driver_version=_text(api.nvmlSystemGetDriverVersion()),
                nvml_version=_text(api.nvmlSystemGetNVMLVersion()),
            )
            self._slots = [self._discover(index) for index in range(api.nvmlDeviceGetCount())]
        except pynvml.NVMLError as err:
            self.close()
            raise GpuBackendUnavailable(f"discovering GPUs through NVML: {err}") from err
        log.info(
            "nvml opened backend=%s driver=%s gpus=%d mig_devices=%d",
            info.backend, info.driver_version, len(self._slots),
            sum(len(slot.mig_handles) for slot in self._slots),
        )
        return info

    def close(self) -> None:
        if not self._opened:
            return
        self._opened = False
        try:
            self._api.nvmlShutdown()
        except pynvml.NVMLError as err:
            log.debug("nvml shutdown failed error=%s", err)

    def devices(self) -> tuple[GpuDevice, ...]:
        return tuple(slot.device for slot in self._slots)

    # -- discovery -------------------------------------------------------------------------------

    def _discover(self, index: int) -> _Slot:
        api = self._api
        try:
            handle = api.nvmlDeviceGetHandleByIndex(index)
            uuid = _text(api.nvmlDeviceGetUUID(handle))
        except pynvml.NVMLError_GpuIsLost:
            log.warning("gpu lost at discovery index=%d", index)
            placeholder = GpuDevice(index, f"GPU-unknown-index-{index}", "unknown", 0, "", index)
            return _Slot(placeholder, None, lost=True)
        try:
            memory_total = int(api.nvmlDeviceGetMemoryInfo(handle).total)
            name = _text(api.nvmlDeviceGetName(handle))
            pci_bus_id = _text(api.nvmlDeviceGetPciInfo(handle).busId)
            minor = self._optional(lambda: int(api.nvmlDeviceGetMinorNumber(handle)), index)
            power_limit = self._optional(lambda: int(api.nvmlDeviceGetEnforcedPowerLimit(handle)), None)
            mig_mode = self._optional(lambda: int(api.nvmlDeviceGetMigMode(handle)[0]), 0)
            mig_enabled = mig_mode == pynvml.NVML_DEVICE_MIG_ENABLE
            mig_handles = self._discover_mig(handle) if mig_enabled else ()
        except pynvml.NVMLError_GpuIsLost:
            log.warning("gpu lost at discovery index=%d uuid=%s", index, uuid)
            return _Slot(GpuDevice(index, uuid, "unknown", 0, "", index), handle, lost=True)
        device = GpuDevice(
            index=index,
            uuid=uuid,
            model_name=name,
            memory_total_bytes=memory_total,
            pci_bus_id=pci_bus_id,
            minor_number=minor,
            power_limit_milliwatts=power_limit,
            mig_enabled=mig_enabled,
            mig_devices=tuple(mig for mig, _ in mig_handles),
        )
        return _Slot(device, handle, mig_handles)

    def _discover_mig(self, handle: Any) -> tuple[tuple[MigDevice, Any], ...]:
        api = self._api
        found: list[tuple[MigDevice, Any]] = []
        for slot in range(int(api.nvmlDeviceGetMaxMigDeviceCount(handle))):
            try:
                mig = api.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
            except pynvml.NVMLError_NotFound:
                continue  # empty slot: no MIG device created there
            device = MigDevice(
                uuid=_text(api.nvmlDeviceGetUUID(mig)),
                index=slot,
                gpu_instance_id=int(api.nvmlDeviceGetGpuInstanceId(mig)),
                compute_instance_id=int(api.nvmlDeviceGetComputeInstanceId(mig)),
                name=_text(api.nvmlDeviceGetName(mig)),
                memory_total_bytes=int(api.nvmlDeviceGetMemoryInfo(mig).total),
            )
            found.append((device, mig))
        return tuple(found)

    @staticmethod
    def _optional(read: Callable[[], T], default: T) -> T:
        try:
            return read()
        except _ABSENT_ERRORS:
            return default

    # -- sampling --------------------------------------------------------------------------------

    def read_all(self) -> tuple[GpuReading, ...]:
        if not self._opened:
            raise GpuBackendFailed("reading GPUs: the NVML reader is not open")
        gpus: list[GpuReading] = []
        migs: list[GpuReading] = []
        for slot in self._slots:
            gpus.append(self._read_gpu(slot))
            migs.extend(self._read_mig(slot, mig, handle) for mig, handle in slot.mig_handles)
        return (*gpus, *migs)

    def _read_gpu(self, slot: _Slot) -> GpuReading:
        device = slot.device
        if slot.lost:
            return GpuReading(device.uuid, device.index, Health.LOST, device.memory_total_bytes)
        api, h, p = self._api, slot.handle, _Pass(device.uuid)
        try:
            util = None if device.mig_enabled else self._call(p, "utilization", api.nvmlDeviceGetUtilizationRates, h)
            memory = self._call(p, "memory", api.nvmlDeviceGetMemoryInfo, h)
            power_mw = self._call(p, "power", api.nvmlDeviceGetPowerUsage, h)
            energy = self._energy(p, slot)
            temperature = self._temperature(p, h)
            sm_clock = self._call(p, "sm_clock", api.nvmlDeviceGetClockInfo, h, pynvml.NVML_CLOCK_SM)
            mem_clock = self._call(p, "mem_clock", api.nvmlDeviceGetClockInfo, h, pynvml.NVML_CLOCK_MEM)
            # per-process utilisation is worth asking only when kernels ran, or when the device
            # cannot say (utilisation not supported); not when the utilisation read just failed
            busy = int(util.gpu) > 0 if util is not None else (device.uuid, "utilization") in self._unsupported
            processes = self._processes(p, slot, h, with_utilization=busy and not device.mig_enabled)
        except _Lost:
            slot.lost = True
            log.warning("gpu lost index=%d uuid=%s", device.index, device.uuid)
            return GpuReading(device.uuid, device.index, Health.LOST, device.memory_total_bytes)
        return GpuReading(
            uuid=device.uuid,
            index=device.index,
            health=Health.ERROR if p.attempted and p.failed == p.attempted else Health.OK,
            memory_total_bytes=device.memory_total_bytes,
            gpu_util_percent=None if util is None else int(util.gpu),
            mem_util_percent=None if util is None else int(util.memory),
            memory_used_bytes=None if memory is None else int(memory.used),
            power_watts=None if power_mw is None else power_mw / 1000.0,
            energy_millijoules=None if energy is None else int(energy),
            temperature_celsius=None if temperature is None else int(temperature),
            sm_clock_mhz=None if sm_clock is None else int(sm_clock),
            mem_clock_mhz=None if mem_clock is None else int(mem_clock),
            processes=processes,
            errors=tuple(p.errors),
        )

    def _read_mig(self, slot: _Slot, mig: MigDevice, handle: Any) -> GpuReading:
        if slot.lost:
            return GpuReading(mig.uuid, mig.index, Health.LOST, mig.memory_total_bytes, parent_uuid=slot.device.uuid)
        p = _Pass(mig.uuid)
        try:
            memory = self._call(p, "memory", self._api.nvmlDeviceGetMemoryInfo, handle)
            processes = self._processes(p, slot, handle, with_utilization=False)
        except _Lost:
            slot.lost = True
            return GpuReading(mig.uuid, mig.index, Health.LOST, mig.memory_total_bytes, parent_uuid=slot.device.uuid)
        return GpuReading(
            uuid=mig.uuid,
            index=mig.index,
            health=Health.ERROR if p.attempted and p.failed == p.attempted else Health.OK,
            memory_total_bytes=mig.memory_total_bytes,
            parent_uuid=slot.device.uuid,
            memory_used_bytes=None if memory is None else int(memory.used),
            processes=processes,
            errors=tuple(p.errors),
        )

    def _energy(self, p: _Pass, slot: _Slot) -> int | None:
        now = self._clock.monotonic()
        if now >= slot.energy_due:
            value = self._call(p, "energy", self._api.nvmlDeviceGetTotalEnergyConsumption, slot.handle)
            slot.energy_mj = None if value is None else int(value)
            slot.energy_due = now + self._slow_interval_s
        return slot.energy_mj

    def _temperature(self, p: _Pass, handle: Any) -> int | None:
        api = self._api
        if (p.uuid, "temperatureV") not in self._unsupported:
            value = self._call(p, "temperatureV", api.nvmlDeviceGetTemperatureV, handle, pynvml.NVML_TEMPERATURE_GPU)
            if (p.uuid, "temperatureV") not in self._unsupported:
                return value
        return self._call(p, "temperature", api.nvmlDeviceGetTemperature, handle, pynvml.NVML_TEMPERATURE_GPU)

    def _processes(self, p: _Pass, slot: _Slot, handle: Any, with_utilization: bool) -> tuple[ProcessReading, ...]:
        running = self._call(p, "processes", self._api.nvmlDeviceGetComputeRunningProcesses, handle)
        memory_by_pid: dict[int, int | None] = {}
        for proc in running or ():
            used = getattr(proc, "usedGpuMemory", None)
            memory_by_pid[int(proc.pid)] = None if used is None else int(used)
        if not with_utilization:
            slot.process_util.clear()
            slot.process_due = float("-inf")  # ask as soon as the device is busy again
        elif self._clock.monotonic() >= slot.process_due:
            slot.process_due = self._clock.monotonic() + self._slow_interval_s
            fresh: dict[int, Any] = {}
            for sample in self._process_samples(p, slot, handle):
                previous = fresh.get(int(sample.pid))
                if previous is None or sample.timeStamp >= previous.timeStamp:
                    fresh[int(sample.pid)] = sample
            slot.process_util = fresh
        # carried samples only for processes still running (when NVML could list them)
        util_by_pid = dict(slot.process_util) if running is None else {
            pid: s for pid, s in slot.process_util.items() if pid in memory_by_pid
        }
        readings = []
        for pid in sorted(memory_by_pid.keys() | util_by_pid.keys()):
            sample = util_by_pid.get(pid)
            readings.append(
                ProcessReading(
                    pid=pid,
                    used_memory_bytes=memory_by_pid.get(pid),
                    sm_util_percent=None if sample is None else int(sample.smUtil),
                    mem_util_percent=None if sample is None else int(sample.memUtil),
                )
            )
        return tuple(readings)

    def _process_samples(self, p: _Pass, slot: _Slot, handle: Any) -> list[Any]:
        op = "process_utilization"
        if (p.uuid, op) in self._unsupported:
            return []
        since = slot.last_process_us or int((self._clock.now() - _FIRST_PROCESS_WINDOW_S) * 1e6)
        p.attempted += 1
        try:
            samples = list(self._api.nvmlDeviceGetProcessUtilization(handle, since))
        except pynvml.NVMLError_NotFound:
            return []  # no kernel ran since `since`: the documented idle answer
        except pynvml.NVMLError as err:
            self._classify(p, op, err)
            return []
        if samples:
            slot.last_process_us = max(slot.last_process_us, max(int(s.timeStamp) for s in samples))
        return samples

    def _call(self, p: _Pass, op: str, fn: Callable[..., T], *args: Any) -> T | None:
        if (p.uuid, op) in self._unsupported:
            return None
        p.attempted += 1
        try:
            return fn(*args)
        except pynvml.NVMLError as err:
            self._classify(p, op, err)
            return None

    def _classify(self, p: _Pass, op: str, err: pynvml.NVMLError) -> None:
        if isinstance(err, pynvml.NVMLError_GpuIsLost):
            raise _Lost() from err
        if isinstance(err, _ABSENT_ERRORS):
            self._unsupported.add((p.uuid, op))
            p.attempted = max(0, p.attempted - 1)
            log.debug("nvml op not supported op=%s uuid=%s error=%s", op, p.uuid, err)
            return
        if isinstance(err, _BACKEND_GONE_ERRORS):
            raise GpuBackendFailed(f"reading {op} of GPU {p.uuid}: {err}") from err
        p.failed += 1
        p.errors.append(f"{op}: {type(err).__name__}")
        key = (p.uuid, op, type(err).__name__)
        if key not in self._warned:
            self._warned.add(key)
            log.warning("nvml read failed op=%s uuid=%s error=%s", op, p.uuid, err)
