"""Choose and open the GPU backend: NVML on a GPU node, the simulator only when asked.

Never silently: without ``simulate`` and without an NVIDIA driver, :func:`open_backend` raises
:class:`~gpufleet.autoscaler.gpu.model.GpuBackendUnavailable` with a message saying what to do.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpufleet.autoscaler.gpu.model import DriverInfo, GpuBackendUnavailable
from gpufleet.autoscaler.gpu.nvml import NvmlReader
from gpufleet.autoscaler.gpu.reader import NvmlApi
from gpufleet.autoscaler.gpu.script import Scenario, builtin_scenario, load_scenario
from gpufleet.autoscaler.gpu.simulated import SimulatedNvml
from gpufleet.core.clock import Clock

BUILTIN = "<builtin>"  # the value of --simulate given without a script


@dataclass(frozen=True, slots=True)
class OpenedBackend:
    reader: NvmlReader
    info: DriverInfo
    scenario: Scenario | None = None  # set for the simulator
    simulator: SimulatedNvml | None = None


def open_backend(
    simulate: str | None, *, clock: Clock, node_name: str, nvml_api: NvmlApi | None = None
) -> OpenedBackend:
    """Open NVML (``simulate`` is None) or the simulator playing ``simulate`` (a path, or BUILTIN).

    Raises GpuBackendUnavailable, or ScriptError for an invalid script.
    """
    if simulate is None:
        reader = NvmlReader(nvml_api, clock, backend="nvml")
        try:
            info = reader.open()
        except GpuBackendUnavailable as err:
            raise GpuBackendUnavailable(
                f"{err}. This agent reads GPUs through the NVIDIA driver; run it on a GPU node "
                "(with the NVIDIA container runtime), or pass --simulate [SCRIPT] to play simulated GPUs"
            ) from err
        return OpenedBackend(reader, info)
    scenario = builtin_scenario() if simulate == BUILTIN else load_scenario(simulate)
    simulator = SimulatedNvml(scenario, clock, node_name=node_name)
    reader = NvmlReader(simulator, clock, backend="simulated")
    return OpenedBackend(reader, reader.open(), scenario, simulator)
