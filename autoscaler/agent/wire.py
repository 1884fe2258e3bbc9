"""Conversions from the agent's data types to the gpufleet.v1 protobuf messages. No I/O here."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from gpufleet.autoscaler.agent.history import AgentIdentity, Batch
from gpufleet.autoscaler.agent.podmap import PodAssignments, PodRef
from gpufleet.autoscaler.gpu.model import GpuDevice, GpuReading, Health
from gpufleet.proto.gpufleet.v1 import agent_pb2

_HEALTH = {
    Health.OK: agent_pb2.HEALTH_OK,
    Health.LOST: agent_pb2.HEALTH_LOST,
    Health.ERROR: agent_pb2.HEALTH_ERROR,
}


def identity_message(identity: AgentIdentity) -> Any:
    return agent_pb2.AgentIdentity(
        node_name=identity.node_name,
        agent_version=identity.agent_version,
        backend=identity.backend,
        driver_version=identity.driver_version,
        nvml_version=identity.nvml_version,
        instance_id=identity.instance_id,
        started_unix_ms=int(identity.started_unix * 1000),
        interval_seconds=identity.interval_s,
    )


def pod_message(pod: PodRef) -> Any:
    return agent_pb2.PodRef(namespace=pod.namespace, pod=pod.pod, container=pod.container,
                            resource_name=pod.resource_name)


def device_message(device: GpuDevice) -> Any:
    message = agent_pb2.Device(
        index=device.index,
        uuid=device.uuid,
        model_name=device.model_name,
        memory_total_bytes=device.memory_total_bytes,
        pci_bus_id=device.pci_bus_id,
        minor_number=device.minor_number,
        mig_enabled=device.mig_enabled,
        mig_devices=[
            agent_pb2.MigDevice(uuid=m.uuid, index=m.index, gpu_instance_id=m.gpu_instance_id,
                                compute_instance_id=m.compute_instance_id, name=m.name,
                                memory_total_bytes=m.memory_total_bytes)
            for m in device.mig_devices
        ],
    )
    if device.power_limit_milliwatts is not None:
        message.power_limit_milliwatts = device.power_limit_milliwatts
    return message


def inventory_message(
    identity: AgentIdentity, devices: Sequence[GpuDevice], assignments: PodAssignments, observed_unix: float
) -> Any:
    uuids = [d.uuid for d in devices] + [m.uuid for d in devices for m in d.mig_devices]
    return agent_pb2.Inventory(
        agent=identity_message(identity),
        devices=[device_message(d) for d in devices],
        assignments=[
            agent_pb2.Assignment(device_uuid=u, pods=[pod_message(p) for p in assignments.pods_of(u)]) for u in uuids
        ],
        allocatable_device_uuids=sorted(assignments.allocatable),
        pod_resources_ok=assignments.ok,
        observed_unix_ms=int(observed_unix * 1000),
    )


def reading_message(reading: GpuReading, pods: Sequence[PodRef]) -> Any:
    message = agent_pb2.GpuSample(
        uuid=reading.uuid,
        index=reading.index,
        parent_uuid=reading.parent_uuid,
        health=_HEALTH[reading.health],
        memory_total_bytes=reading.memory_total_bytes,
        pods=[pod_message(p) for p in pods],
        errors=list(reading.errors),
    )
    for field, value in (
        ("gpu_util_percent", reading.gpu_util_percent),
        ("mem_util_percent", reading.mem_util_percent),
        ("memory_used_bytes", reading.memory_used_bytes),
        ("power_watts", reading.power_watts),
        ("energy_millijoules", reading.energy_millijoules),
        ("temperature_celsius", reading.temperature_celsius),
    ):
        if value is not None:
            setattr(message, field, value)
    for proc in reading.processes:
        p = message.processes.add(pid=proc.pid)
        if proc.used_memory_bytes is not None:
            p.used_memory_bytes = proc.used_memory_bytes
        if proc.sm_util_percent is not None:
            p.sm_util_percent = proc.sm_util_percent
        if proc.mem_util_percent is not None:
            p.mem_util_percent = proc.mem_util_percent
    return message


def batch_message(
    batch: Batch, identity: AgentIdentity, uuids: Collection[str] = (), replayed: bool = False
) -> Any:
    """``uuids`` limits the devices sent (empty: all)."""
    return agent_pb2.SampleBatch(
        seq=batch.seq,
        unix_ms=int(batch.unix_time * 1000),
        node_name=identity.node_name,
        instance_id=identity.instance_id,
        gpus=[
            reading_message(r, batch.assignments.pods_of(r.uuid))
            for r in batch.readings
            if not uuids or r.uuid in uuids
        ],
        pass_seconds=batch.pass_seconds,
        replayed=replayed,
    )
