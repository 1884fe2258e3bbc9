"""The seams of this package: what the agent needs from a GPU reader, and from an NVML library."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from gpufleet.autoscaler.gpu.model import DriverInfo, GpuDevice, GpuReading


class GpuReader(Protocol):
    """Reads every GPU of one node. ``open`` first; then ``devices`` and ``read_all`` any number of times.

    Implementations raise only :class:`~gpufleet.autoscaler.gpu.model.GpuError` subclasses.
    """

    def open(self) -> DriverInfo:
        """Connect to the backend and discover the devices."""
        ...

    def devices(self) -> tuple[GpuDevice, ...]:
        """The devices found by ``open``, by NVML index."""
        ...

    def read_all(self) -> tuple[GpuReading, ...]:
        """One reading per GPU, then one per MIG device, in index order."""
        ...

    def close(self) -> None:
        ...


class NvmlApi(Protocol):
    """The part of the ``pynvml`` module (package ``nvidia-ml-py``) that :class:`NvmlReader` calls.

    The real module satisfies it, and so does :class:`~gpufleet.autoscaler.gpu.simulated.SimulatedNvml`.
    Errors are ``pynvml.NVMLError`` subclasses in both.
    """

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlSystemGetDriverVersion(self) -> str | bytes: ...
    def nvmlSystemGetNVMLVersion(self) -> str | bytes: ...
    def nvmlDeviceGetCount(self) -> int: ...
    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any: ...
    def nvmlDeviceGetUUID(self, handle: Any) -> str | bytes: ...
    def nvmlDeviceGetName(self, handle: Any) -> str | bytes: ...
    def nvmlDeviceGetMinorNumber(self, handle: Any) -> int: ...
    def nvmlDeviceGetPciInfo(self, handle: Any) -> Any: ...  # .busId
    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> Any: ...  # .total .free .used, bytes
    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Any) -> int: ...  # mW
    def nvmlDeviceGetMigMode(self, handle: Any) -> Sequence[int]: ...  # (current, pending)
    def nvmlDeviceGetMaxMigDeviceCount(self, handle: Any) -> int: ...
    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: Any, index: int) -> Any: ...
    def nvmlDeviceGetGpuInstanceId(self, handle: Any) -> int: ...
    def nvmlDeviceGetComputeInstanceId(self, handle: Any) -> int: ...
    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any: ...  # .gpu .memory, percent
    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int: ...  # mW
    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int: ...  # mJ
    def nvmlDeviceGetTemperatureV(self, handle: Any, sensor: int) -> int: ...  # Celsius
    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int: ...  # older drivers
    def nvmlDeviceGetClockInfo(self, handle: Any, clock_type: int) -> int: ...  # MHz
    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> Sequence[Any]: ...  # .pid .usedGpuMemory
    def nvmlDeviceGetProcessUtilization(self, handle: Any, last_seen_us: int) -> Sequence[Any]: ...
