"""The agent's Prometheus metrics, built against an injected registry.

Two kinds:

- per-device series rendered at scrape time from the newest pass (so no stale label sets are left
  behind when a pod goes away): DCGM-exporter-compatible ``DCGM_FI_DEV_*`` series with DCGM's label
  names (``gpu``, ``UUID``, ``pci_bus_id``, ``device``, ``modelName``, ``hostname``, ``GPU_I_PROFILE``,
  ``GPU_I_ID``, ``pod``, ``namespace``, ``container``) and units (MiB, W, mJ, %, C, MHz), plus
  ``gpufleet_agent_gpu_*`` series in base units;
- the agent's own counters and histograms (passes, their duration, NVML errors, pod refreshes, streams).

A device held by several containers (time-slicing) gets one series per container, as DCGM does;
an unallocated device gets one series with empty pod labels.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from gpufleet.autoscaler.agent.history import AgentIdentity, Batch, SampleHistory
from gpufleet.autoscaler.agent.podmap import PodAssignments, PodRef
from gpufleet.autoscaler.gpu.model import GpuDevice, GpuReading, Health

_MIB = 1024 * 1024
DEVICE_LABELS = ("gpu", "UUID", "pci_bus_id", "device", "modelName", "hostname", "GPU_I_PROFILE", "GPU_I_ID")
POD_LABELS = ("pod", "namespace", "container")
_NO_POD = ("", "", "")


@dataclass(frozen=True, slots=True)
class _DeviceLabels:
    values: tuple[str, ...]  # in DEVICE_LABELS order


def device_labels(devices: Sequence[GpuDevice], hostname: str) -> dict[str, _DeviceLabels]:
    """DCGM label values for every device UUID (a MIG device carries its parent's gpu/UUID + GPU_I_*)."""
    out: dict[str, _DeviceLabels] = {}
    for d in devices:
        base = (str(d.index), d.uuid, d.pci_bus_id, d.device_name, d.model_name, hostname)
        out[d.uuid] = _DeviceLabels((*base, "", ""))
        for m in d.mig_devices:
            profile = m.name.rsplit(" ", 1)[-1] if " MIG " in m.name else m.name
            out[m.uuid] = _DeviceLabels((*base, profile, str(m.gpu_instance_id)))
    return out


class DeviceCollector(Collector):
    """Renders the newest batch of ``history`` at scrape time."""

    def __init__(self, history: SampleHistory, devices: Sequence[GpuDevice], identity: AgentIdentity) -> None:
        self._history = history
        self._labels = device_labels(devices, identity.node_name)
        self._identity = identity

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # families depend on what the devices support; register without a dry collect

    def collect(self) -> Iterator[GaugeMetricFamily | InfoMetricFamily]:
        ident = self._identity
        info = InfoMetricFamily("gpufleet_agent", "The agent and the GPU backend it reads.")
        info.add_metric([], {"hostname": ident.node_name, "version": ident.agent_version, "backend": ident.backend,
                             "driver_version": ident.driver_version, "instance_id": ident.instance_id})
        yield info
        batch = self._history.latest()
        if batch is None:
            return
        yield from self._device_families(batch)
        last = GaugeMetricFamily("gpufleet_agent_last_sample_timestamp_seconds", "Unix time of the newest pass.")
        last.add_metric([], batch.unix_time)
        yield last
        up = GaugeMetricFamily("gpufleet_agent_pod_resources_up",
                               "1 when the last ask of the kubelet's PodResources API succeeded.")
        up.add_metric([], 1.0 if batch.assignments.ok else 0.0)
        yield up

    def _device_families(self, batch: Batch) -> Iterator[GaugeMetricFamily]:
        labels_pod = [*DEVICE_LABELS, *POD_LABELS]
        f = {
            "util": GaugeMetricFamily("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", labels=labels_pod),
            "copy": GaugeMetricFamily("DCGM_FI_DEV_MEM_COPY_UTIL", "Memory utilization (in %).", labels=labels_pod),
            "fb_used": GaugeMetricFamily("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", labels=labels_pod),
            "fb_free": GaugeMetricFamily("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", labels=labels_pod),
            "power": GaugeMetricFamily("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", labels=labels_pod),
            "energy": GaugeMetricFamily("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
                                        "Total energy consumption since boot (in mJ).", labels=labels_pod),
            "temp": GaugeMetricFamily("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", labels=labels_pod),
            "sm_clock": GaugeMetricFamily("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).", labels=labels_pod),
            "mem_clock": GaugeMetricFamily("DCGM_FI_DEV_MEM_CLOCK", "Memory clock frequency (in MHz).",
                                           labels=labels_pod),
            "ratio": GaugeMetricFamily("gpufleet_agent_gpu_utilization_ratio",
                                       "Share of the last sample period a kernel ran (0-1).", labels=labels_pod),
            "used": GaugeMetricFamily("gpufleet_agent_gpu_memory_used_bytes", "Device memory used.",
                                      labels=labels_pod),
            "total": GaugeMetricFamily("gpufleet_agent_gpu_memory_total_bytes", "Device memory.",
                                       labels=list(DEVICE_LABELS)),
            "watts": GaugeMetricFamily("gpufleet_agent_gpu_power_watts", "Power draw.", labels=labels_pod),
            "healthy": GaugeMetricFamily("gpufleet_agent_gpu_healthy",
                                         "1 when the last read of the device worked.", labels=list(DEVICE_LABELS)),
            "lost": GaugeMetricFamily("gpufleet_agent_gpu_lost",
                                      "1 when NVML said the GPU fell off the bus.", labels=list(DEVICE_LABELS)),
            "allocated": GaugeMetricFamily("gpufleet_agent_gpu_allocated",
                                           "1 when a pod holds the device, per the kubelet.",
                                           labels=list(DEVICE_LABELS)),
            "holders": GaugeMetricFamily("gpufleet_agent_gpu_holders",
                                         "Containers holding the device (more than 1 when shared).",
                                         labels=list(DEVICE_LABELS)),
            "proc_sm": GaugeMetricFamily("gpufleet_agent_process_sm_utilization_ratio",
                                         "Per-process SM utilisation over the last pass (0-1).",
                                         labels=[*DEVICE_LABELS, "pid"]),
            "proc_mem": GaugeMetricFamily("gpufleet_agent_process_memory_used_bytes",
                                          "Device memory used by a process.", labels=[*DEVICE_LABELS, "pid"]),
        }
        assignments = batch.assignments
        for reading in batch.readings:
            device = self._labels.get(reading.uuid)
            if device is None:
                continue
            self._add_device(f, reading, device.values, assignments)
        yield from f.values()

    @staticmethod
    def _add_device(
        f: dict[str, GaugeMetricFamily], r: GpuReading, dev: tuple[str, ...], assignments: PodAssignments
    ) -> None:
        f["healthy"].add_metric(dev, 1.0 if r.health is Health.OK else 0.0)
        f["lost"].add_metric(dev, 1.0 if r.health is Health.LOST else 0.0)
        f["total"].add_metric(dev, float(r.memory_total_bytes))
        holders: tuple[PodRef, ...] = assignments.pods_of(r.uuid)
        if assignments.ok:
            f["allocated"].add_metric(dev, 1.0 if holders else 0.0)
            f["holders"].add_metric(dev, float(len(holders)))
        if r.health is Health.LOST:
            return  # DCGM stops exporting a lost GPU; so do we, except health
        pod_values = [(p.pod, p.namespace, p.container) for p in holders] or [_NO_POD]
        for pod in pod_values:
            labels = (*dev, *pod)
            if r.gpu_util_percent is not None:
                f["util"].add_metric(labels, float(r.gpu_util_percent))
                f["ratio"].add_metric(labels, r.gpu_util_percent / 100.0)
            if r.mem_util_percent is not None:
                f["copy"].add_metric(labels, float(r.mem_util_percent))
            if r.memory_used_bytes is not None:
                f["fb_used"].add_metric(labels, float(r.memory_used_bytes // _MIB))
                f["fb_free"].add_metric(labels, float(max(0, r.memory_total_bytes - r.memory_used_bytes) // _MIB))
                f["used"].add_metric(labels, float(r.memory_used_bytes))
            if r.power_watts is not None:
                f["power"].add_metric(labels, r.power_watts)
                f["watts"].add_metric(labels, r.power_watts)
            if r.energy_millijoules is not None:
                f["energy"].add_metric(labels, float(r.energy_millijoules))
            if r.temperature_celsius is not None:
                f["temp"].add_metric(labels, float(r.temperature_celsius))
            if r.sm_clock_mhz is not None:
                f["sm_clock"].add_metric(labels, float(r.sm_clock_mhz))
            if r.mem_clock_mhz is not None:
                f["mem_clock"].add_metric(labels, float(r.mem_clock_mhz))
        for p in r.processes:
            if p.sm_util_percent is not None:
                f["proc_sm"].add_metric((*dev, str(p.pid)), p.sm_util_percent / 100.0)
            if p.used_memory_bytes is not None:
                f["proc_mem"].add_metric((*dev, str(p.pid)), float(p.used_memory_bytes))


class AgentMetrics:
    """The agent's own metrics plus the device collector, all on ``registry``."""

    def __init__(
        self,
        registry: CollectorRegistry,
        history: SampleHistory,
        devices: Sequence[GpuDevice],
        identity: AgentIdentity,
    ) -> None:
        self.passes = Counter("gpufleet_agent_sampling_passes_total", "Sampling passes completed.",
                              registry=registry)
        self.pass_failures = Counter("gpufleet_agent_sampling_failures_total",
                                     "Sampling passes that failed because the GPU backend failed.", registry=registry)
        self.pass_seconds = Histogram(
            "gpufleet_agent_sampling_pass_duration_seconds", "Time to read every device once.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0), registry=registry,
        )
        self.nvml_errors = Counter("gpufleet_agent_nvml_errors_total",
                                   "Device reads that failed, by NVML operation and error class.",
                                   ["operation", "error"], registry=registry)
        self.pod_refreshes = Counter("gpufleet_agent_pod_resources_refreshes_total",
                                     "Asks of the pod source, by outcome.", ["outcome"], registry=registry)
        self.pod_refresh_seconds = Histogram("gpufleet_agent_pod_resources_duration_seconds",
                                             "Time to ask the kubelet's PodResources API.",
                                             buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5),
                                             registry=registry)
        self.stream_clients = Gauge("gpufleet_agent_stream_clients", "Open StreamSamples calls.", registry=registry)
        self.batches_sent = Counter("gpufleet_agent_stream_batches_sent_total",
                                    "Sample batches sent on StreamSamples calls.", registry=registry)
        interval = Gauge("gpufleet_agent_sampling_interval_seconds", "Configured sampling period.",
                         registry=registry)
        interval.set(identity.interval_s)
        registry.register(DeviceCollector(history, devices, identity))

    def observe_pass(self, batch: Batch) -> None:
        self.passes.inc()
        self.pass_seconds.observe(batch.pass_seconds)
        for reading in batch.readings:
            for error in reading.errors:
                operation, _, kind = error.partition(": ")
                self.nvml_errors.labels(operation, kind or "unknown").inc()

    def observe_pass_failure(self, error: Exception) -> None:
        self.pass_failures.inc()

    def observe_pod_refresh(self, seconds: float, ok: bool) -> None:
        self.pod_refreshes.labels("ok" if ok else "error").inc()
        self.pod_refresh_seconds.observe(seconds)
