"""An NVML look-alike that plays a utilisation script, for this machine, CI and controller tests.

:class:`SimulatedNvml` has the functions of the ``pynvml`` module that
:class:`~gpufleet.autoscaler.gpu.nvml.NvmlReader` calls, with NVML's behaviour where it matters: handles,
``Uninitialized`` before ``nvmlInit``, ``GpuIsLost`` once a GPU falls off the bus, ``NotSupported``
for device utilisation in MIG mode, ``NotFound`` from process utilisation on an idle GPU and for
empty MIG slots. Errors are the real ``pynvml.NVMLError_*`` classes. So the simulated agent runs
the same reader code as the real one.

Tests can also inject the next error of any call (:meth:`SimulatedNvml.fail_next`) and read how
often each call was made (:attr:`SimulatedNvml.calls`).
"""

from __future__ import annotations

import hashlib
import uuid as uuidlib
import zlib
from collections import Counter, deque
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pynvml

from gpufleet.autoscaler.gpu.script import GpuScript, Phase, Scenario
from gpufleet.core.clock import Clock, SystemClock

_MIB = 1024 * 1024
_MAX_MIG_DEVICES = 7
_ENERGY_AT_START_MJ = 5_000_000_000  # energy counters count since the driver loaded


@dataclass(frozen=True, slots=True)
class SimHandle:
    gpu: int
    mig: int | None = None


class SimulatedNvml:
    """Plays ``scenario``; time 0 is the ``nvmlInit`` call. ``node_name`` varies the generated UUIDs."""

    def __init__(self, scenario: Scenario, clock: Clock | None = None, node_name: str = "") -> None:
        self.scenario = scenario
        self.calls: Counter[str] = Counter()
        self._clock = clock or SystemClock()
        self._init_count = 0
        self._t0 = 0.0
        self._injected: dict[str, deque[pynvml.NVMLError]] = {}
        gpus = scenario.gpus
        self._uuids = [g.uuid or _make_uuid("GPU", scenario.seed, node_name, i) for i, g in enumerate(gpus)]
        self._mig_uuids = [
            [_make_uuid("MIG", scenario.seed, node_name, i, j) for j in range(len(g.mig))] for i, g in enumerate(gpus)
        ]
        self._energy_mj = [float(_ENERGY_AT_START_MJ)] * len(gpus)
        self._energy_t = [0.0] * len(gpus)

    # -- test hooks ------------------------------------------------------------------------------

    def fail_next(self, op: str, error: pynvml.NVMLError, times: int = 1) -> None:
        """Make the next ``times`` calls of ``op`` (e.g. ``"nvmlDeviceGetPowerUsage"``) raise ``error``."""
        self._injected.setdefault(op, deque()).extend([error] * times)

    def uuid_of(self, ref: str) -> str | None:
        """The UUID a script's device reference ("3", "6/0", or a UUID) stands for."""
        if ref.startswith(("GPU-", "MIG-")):
            return ref
        gpu_part, _, mig_part = ref.partition("/")
        if not gpu_part.isdigit() or int(gpu_part) >= len(self._uuids):
            return None
        if not mig_part:
            return self._uuids[int(gpu_part)]
        migs = self._mig_uuids[int(gpu_part)]
        return migs[int(mig_part)] if mig_part.isdigit() and int(mig_part) < len(migs) else None

    # -- the simulated world ---------------------------------------------------------------------

    @property
    def _initialised(self) -> bool:
        return self._init_count > 0

    def _enter(self, op: str, handle: SimHandle | None = None, feature: str | None = None) -> GpuScript | None:
        self.calls[op] += 1
        queue = self._injected.get(op)
        if queue:
            raise queue.popleft()
        if not self._initialised and op != "nvmlInit":  # NVML: Uninitialized before init
            raise pynvml.NVMLError_Uninitialized()
        if handle is None:
            return None
        if not isinstance(handle, SimHandle) or not 0 <= handle.gpu < len(self.scenario.gpus):
            raise pynvml.NVMLError_InvalidArgument()
        gpu = self.scenario.gpus[handle.gpu]
        if self._phase(handle.gpu).lost:
            raise pynvml.NVMLError_GpuIsLost()
        if feature is not None and feature in gpu.unsupported:
            raise pynvml.NVMLError_NotSupported()
        return gpu

    def _elapsed(self) -> float:
        return max(0.0, self._clock.monotonic() - self._t0)

    def _phase(self, index: int) -> Phase:
        return self.scenario.gpus[index].phase_at(self._elapsed())

    def _util(self, index: int) -> int:
        phase = self._phase(index)
        if phase.util_low == phase.util_high:
            return phase.util_low
        second = int(self._elapsed())
        draw = zlib.crc32(f"{self.scenario.seed}:{index}:{second}".encode())
        return phase.util_low + draw % (phase.util_high - phase.util_low + 1)

    def _power_w(self, index: int) -> float:
        gpu, phase = self.scenario.gpus[index], self._phase(index)
        if phase.power_w is not None:
            return phase.power_w
        return gpu.power_idle_w + (gpu.power_max_w - gpu.power_idle_w) * self._util(index) / 100.0

    def _memory_used_mib(self, index: int) -> int:
        gpu = self.scenario.gpus[index]
        if gpu.mig:
            return sum(m.memory_used_mib for m in gpu.mig)
        return self._phase(index).memory_mib

    def _pids(self, index: int) -> list[int]:
        return [10_000 + 100 * index + k for k in range(self._phase(index).processes)]

    # -- NVML: system ----------------------------------------------------------------------------

    def nvmlInit(self) -> None:
        self._enter("nvmlInit")
        if not self._initialised:
            self._t0 = self._clock.monotonic()
        self._init_count += 1  # NVML counts inits; each needs its shutdown

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self._init_count -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        self._enter("nvmlSystemGetDriverVersion")
        return self.scenario.driver_version

    def nvmlSystemGetNVMLVersion(self) -> str:
        self._enter("nvmlSystemGetNVMLVersion")
        return "12." + self.scenario.driver_version

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.scenario.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> SimHandle:
        handle = SimHandle(index)
        self._enter("nvmlDeviceGetHandleByIndex", handle)
        return handle

    # -- NVML: device identity -------------------------------------------------------------------

    def nvmlDeviceGetUUID(self, handle: SimHandle) -> str:
        self._enter("nvmlDeviceGetUUID", handle)
        if handle.mig is not None:
            return self._mig_uuids[handle.gpu][handle.mig]
        return self._uuids[handle.gpu]

    def nvmlDeviceGetName(self, handle: SimHandle) -> str:
        gpu = self._enter("nvmlDeviceGetName", handle)
        assert gpu is not None
        if handle.mig is not None:
            return f"{gpu.model} MIG {gpu.mig[handle.mig].profile}"
        return gpu.model

    def nvmlDeviceGetMinorNumber(self, handle: SimHandle) -> int:
        self._enter("nvmlDeviceGetMinorNumber", handle)
        return handle.gpu

    def nvmlDeviceGetPciInfo(self, handle: SimHandle) -> Any:
        self._enter("nvmlDeviceGetPciInfo", handle)
        return SimpleNamespace(busId=f"00000000:{0x10 + handle.gpu:02X}:00.0".encode())

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: SimHandle) -> int:
        gpu = self._enter("nvmlDeviceGetEnforcedPowerLimit", handle, "power")
        assert gpu is not None
        return int(gpu.power_max_w * 1000)

    # -- NVML: MIG -------------------------------------------------------------------------------

    def nvmlDeviceGetMigMode(self, handle: SimHandle) -> list[int]:
        gpu = self._enter("nvmlDeviceGetMigMode", handle, "mig")
        assert gpu is not None
        mode = pynvml.NVML_DEVICE_MIG_ENABLE if gpu.mig else pynvml.NVML_DEVICE_MIG_DISABLE
        return [mode, mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: SimHandle) -> int:
        gpu = self._enter("nvmlDeviceGetMaxMigDeviceCount", handle, "mig")
        assert gpu is not None
        return _MAX_MIG_DEVICES if gpu.mig else 0

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: SimHandle, index: int) -> SimHandle:
        gpu = self._enter("nvmlDeviceGetMigDeviceHandleByIndex", handle, "mig")
        assert gpu is not None
        if not 0 <= index < len(gpu.mig):
            raise pynvml.NVMLError_NotFound()
        return SimHandle(handle.gpu, index)

    def nvmlDeviceGetGpuInstanceId(self, handle: SimHandle) -> int:
        self._enter("nvmlDeviceGetGpuInstanceId", handle)
        if handle.mig is None:
            raise pynvml.NVMLError_InvalidArgument()
        return handle.mig + 1

    def nvmlDeviceGetComputeInstanceId(self, handle: SimHandle) -> int:
        self._enter("nvmlDeviceGetComputeInstanceId", handle)
        if handle.mig is None:
            raise pynvml.NVMLError_InvalidArgument()
        return 0

    # -- NVML: readings --------------------------------------------------------------------------

    def nvmlDeviceGetMemoryInfo(self, handle: SimHandle) -> Any:
        gpu = self._enter("nvmlDeviceGetMemoryInfo", handle)
        assert gpu is not None
        if handle.mig is not None:
            total, used = gpu.mig[handle.mig].memory_mib, gpu.mig[handle.mig].memory_used_mib
        else:
            total, used = gpu.memory_mib, self._memory_used_mib(handle.gpu)
        return SimpleNamespace(total=total * _MIB, used=used * _MIB, free=(total - used) * _MIB)

    def nvmlDeviceGetUtilizationRates(self, handle: SimHandle) -> Any:
        gpu = self._enter("nvmlDeviceGetUtilizationRates", handle, "utilization")
        assert gpu is not None
        if gpu.mig:
            raise pynvml.NVMLError_NotSupported()  # NVML has no device utilisation in MIG mode
        util = self._util(handle.gpu)
        return SimpleNamespace(gpu=util, memory=util // 2)

    def nvmlDeviceGetPowerUsage(self, handle: SimHandle) -> int:
        self._enter("nvmlDeviceGetPowerUsage", handle, "power")
        return int(self._power_w(handle.gpu) * 1000)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: SimHandle) -> int:
        self._enter("nvmlDeviceGetTotalEnergyConsumption", handle, "energy")
        i, t = handle.gpu, self._elapsed()
        self._energy_mj[i] += self._power_w(i) * max(0.0, t - self._energy_t[i]) * 1000.0
        self._energy_t[i] = t
        return int(self._energy_mj[i])

    def nvmlDeviceGetTemperatureV(self, handle: SimHandle, sensor: int) -> int:
        self._enter("nvmlDeviceGetTemperatureV", handle, "temperature")
        return self._temperature(handle.gpu)

    def nvmlDeviceGetTemperature(self, handle: SimHandle, sensor: int) -> int:
        self._enter("nvmlDeviceGetTemperature", handle, "temperature")
        return self._temperature(handle.gpu)

    def _temperature(self, index: int) -> int:
        return int(32 + 0.4 * self._util(index))

    def nvmlDeviceGetClockInfo(self, handle: SimHandle, clock_type: int) -> int:
        """MHz: the SM (and graphics) clock idles until a kernel runs, then boosts; memory is constant."""
        gpu = self._enter("nvmlDeviceGetClockInfo", handle, "clocks")
        assert gpu is not None
        if handle.mig is not None:
            raise pynvml.NVMLError_NotSupported()  # the reader asks the parent GPU for clocks
        if clock_type == pynvml.NVML_CLOCK_MEM:
            return gpu.mem_clock_mhz
        if clock_type in (pynvml.NVML_CLOCK_SM, pynvml.NVML_CLOCK_GRAPHICS):
            return gpu.sm_clock_max_mhz if self._util(handle.gpu) > 0 else gpu.sm_clock_idle_mhz
        raise pynvml.NVMLError_InvalidArgument()

    def nvmlDeviceGetComputeRunningProcesses(self, handle: SimHandle) -> list[Any]:
        gpu = self._enter("nvmlDeviceGetComputeRunningProcesses", handle)
        assert gpu is not None
        if handle.mig is not None:
            used = gpu.mig[handle.mig].memory_used_mib
            pid = 10_000 + 100 * handle.gpu + 50 + handle.mig
            return [_process(pid, used * _MIB, handle.mig + 1)] if used else []
        pids = self._pids(handle.gpu)
        if not pids:
            return []
        share = self._memory_used_mib(handle.gpu) * _MIB // len(pids)
        return [_process(pid, share) for pid in pids]

    def nvmlDeviceGetProcessUtilization(self, handle: SimHandle, last_seen_us: int) -> list[Any]:
        gpu = self._enter("nvmlDeviceGetProcessUtilization", handle, "process_utilization")
        assert gpu is not None
        now_us = int(self._clock.now() * 1e6)
        util, pids = (0 if gpu.mig else self._util(handle.gpu)), self._pids(handle.gpu)
        if util == 0 or not pids or last_seen_us >= now_us:
            raise pynvml.NVMLError_NotFound()  # NVML: no sample newer than last_seen_us
        shares = [util // len(pids)] * len(pids)
        shares[0] += util - sum(shares)
        return [
            SimpleNamespace(pid=pid, timeStamp=now_us, smUtil=s, memUtil=s // 2, encUtil=0, decUtil=0)
            for pid, s in zip(pids, shares)
        ]


def _process(pid: int, used_bytes: int, gpu_instance_id: int = 0xFFFFFFFF) -> Any:
    return SimpleNamespace(pid=pid, usedGpuMemory=used_bytes, gpuInstanceId=gpu_instance_id,
                           computeInstanceId=0 if gpu_instance_id != 0xFFFFFFFF else 0xFFFFFFFF)


def _make_uuid(prefix: str, seed: int, node: str, *indexes: int) -> str:
    digest = hashlib.sha256(f"{prefix}:{seed}:{node}:{':'.join(map(str, indexes))}".encode()).digest()
    return f"{prefix}-{uuidlib.UUID(bytes=digest[:16])}"
