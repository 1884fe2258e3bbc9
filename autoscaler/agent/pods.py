"""Where the agent learns which container holds which device: the kubelet, a script, or nowhere.

A :class:`PodSource` never raises: a failed refresh is a snapshot with ``ok=False`` and the error,
so one slow or missing kubelet never stops GPU sampling.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from gpufleet.autoscaler.kubelet.podresources import ContainerDevices, PodResourcesClient, PodResourcesError
from gpufleet.core import names

if TYPE_CHECKING:
    from gpufleet.autoscaler.gpu.script import Scenario
    from gpufleet.autoscaler.gpu.simulated import SimulatedNvml

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PodSnapshot:
    containers: tuple[ContainerDevices, ...] = ()
    allocatable: tuple[tuple[str, str], ...] = ()  # (resource_name, device_id)
    ok: bool = False
    error: str = ""


class PodSource(Protocol):
    name: str

    def snapshot(self) -> PodSnapshot: ...

    def close(self) -> None: ...


class KubeletPodSource:
    """Asks the kubelet's PodResources API on every refresh."""

    name = "kubelet"

    def __init__(self, client: PodResourcesClient) -> None:
        self._client = client
        self._allocatable_supported = True
        self._failing = False

    def snapshot(self) -> PodSnapshot:
        try:
            containers = self._client.list()
            allocatable: tuple[tuple[str, str], ...] = ()
            if self._allocatable_supported:
                answer = self._client.allocatable()
                if answer is None:
                    self._allocatable_supported = False
                    log.info("kubelet has no GetAllocatableResources; unallocated GPUs will not be reported")
                else:
                    allocatable = answer
        except PodResourcesError as err:
            if not self._failing:
                log.warning("pod resources unavailable error=%s", err)
            self._failing = True
            return PodSnapshot(ok=False, error=str(err))
        if self._failing:
            log.info("pod resources available again target=%s", self._client.target)
        self._failing = False
        return PodSnapshot(containers, allocatable, ok=True)

    def close(self) -> None:
        self._client.close()


class StaticPodSource:
    """A fixed answer: the ``pods`` of a simulation script, with every simulated device allocatable."""

    name = "script"

    def __init__(self, scenario: Scenario, simulator: SimulatedNvml) -> None:
        containers = []
        for pod in scenario.pods:
            ids = tuple(uuid for ref in pod.devices if (uuid := simulator.uuid_of(ref)) is not None)
            containers.append(ContainerDevices(pod.namespace, pod.pod, pod.container, pod.resource_name, ids))
        allocatable = []
        for i, gpu in enumerate(scenario.gpus):
            if gpu.mig:
                for j, mig in enumerate(gpu.mig):
                    allocatable.append((f"nvidia.com/mig-{mig.profile}", simulator.uuid_of(f"{i}/{j}") or ""))
            else:
                allocatable.append((names.GPU_RESOURCE, simulator.uuid_of(str(i)) or ""))
        self._snapshot = PodSnapshot(tuple(containers), tuple(allocatable), ok=True)

    def snapshot(self) -> PodSnapshot:
        return self._snapshot

    def close(self) -> None:
        pass


class NoPodSource:
    """Pod mapping switched off (``--pod-resources-socket ''``): GPUs are reported without pods."""

    name = "none"

    def snapshot(self) -> PodSnapshot:
        return PodSnapshot(ok=False, error="pod mapping disabled")

    def close(self) -> None:
        pass
