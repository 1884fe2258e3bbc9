"""Plain data about GPUs: devices, one reading per device per pass, and the GPU error family.

No I/O here. Units are in the field names; ``None`` means NVML could not tell (not supported on
this device, a MIG device, or the read failed), which is different from zero.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class GpuError(Exception):
    """Base of every error the GPU readers raise; third-party NVML errors never leak past it."""


class GpuBackendUnavailable(GpuError):
    """No usable GPU backend: the NVML library or the NVIDIA driver is missing."""


class GpuBackendFailed(GpuError):
    """The backend worked and then stopped (NVML uninitialised, driver unloaded mid-run)."""


class Health(enum.Enum):
    OK = "ok"
    LOST = "lost"  # fell off the bus (NVML GpuIsLost): never to be treated as idle
    ERROR = "error"  # every read of the pass failed for some other reason


@dataclass(frozen=True, slots=True)
class DriverInfo:
    backend: str  # "nvml" or "simulated"
    driver_version: str
    nvml_version: str


@dataclass(frozen=True, slots=True)
class MigDevice:
    uuid: str
    index: int  # slot on the parent GPU
    gpu_instance_id: int
    compute_instance_id: int
    name: str
    memory_total_bytes: int


@dataclass(frozen=True, slots=True)
class GpuDevice:
    index: int
    uuid: str
    model_name: str
    memory_total_bytes: int
    pci_bus_id: str
    minor_number: int
    power_limit_milliwatts: int | None = None
    mig_enabled: bool = False
    mig_devices: tuple[MigDevice, ...] = ()

    @property
    def device_name(self) -> str:
        """The device node name DCGM uses as its ``device`` label, e.g. ``nvidia0``."""
        return f"nvidia{self.minor_number}"


@dataclass(frozen=True, slots=True)
class ProcessReading:
    pid: int
    used_memory_bytes: int | None = None
    sm_util_percent: int | None = None
    mem_util_percent: int | None = None


@dataclass(frozen=True, slots=True)
class GpuReading:
    """One device (a GPU, or a MIG device with ``parent_uuid`` set) in one sampling pass."""

    uuid: str
    index: int
    health: Health
    memory_total_bytes: int
    parent_uuid: str = ""
    gpu_util_percent: int | None = None
    mem_util_percent: int | None = None
    memory_used_bytes: int | None = None
    power_watts: float | None = None
    energy_millijoules: int | None = None
    temperature_celsius: int | None = None
    sm_clock_mhz: int | None = None
    mem_clock_mhz: int | None = None
    processes: tuple[ProcessReading, ...] = ()
    errors: tuple[str, ...] = field(default=())

    @property
    def is_mig(self) -> bool:
        return bool(self.parent_uuid)
