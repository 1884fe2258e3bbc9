"""The composition root: one running agent (sampler thread, gRPC server, HTTP server).

``Agent(config, backend, pods)`` builds everything; ``start`` takes a first pass before serving so
the first scrape and the first inventory are never empty; ``stop`` ends the streams, the servers
and the backend, in that order. Tests run it in-process with ports 0.
"""

from __future__ import annotations

import logging
import os
import uuid
from importlib import metadata

from prometheus_client import CollectorRegistry

from gpufleet.autoscaler.agent.config import AgentConfig, grpc_address, split_host_port
from gpufleet.autoscaler.agent.history import AgentIdentity, SampleHistory
from gpufleet.autoscaler.agent.metrics import AgentMetrics
from gpufleet.autoscaler.agent.pods import PodSource
from gpufleet.autoscaler.agent.sampler import Sampler
from gpufleet.autoscaler.agent.service import GpuAgentService, start_server
from gpufleet.autoscaler.agent.web import WebServer
from gpufleet.autoscaler.gpu.backend import OpenedBackend
from gpufleet.autoscaler.gpu.model import GpuError, Health
from gpufleet.core.clock import Clock, SystemClock

log = logging.getLogger(__name__)


def agent_version() -> str:
    try:
        return metadata.version("gpufleet")
    except metadata.PackageNotFoundError:
        return "0+unknown"


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        backend: OpenedBackend,
        pods: PodSource,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.backend = backend
        self.pods = pods
        self.registry = registry if registry is not None else CollectorRegistry()
        self.devices = backend.reader.devices()
        self.identity = AgentIdentity(
            node_name=config.node_name,
            agent_version=agent_version(),
            backend=backend.info.backend,
            driver_version=backend.info.driver_version,
            nvml_version=backend.info.nvml_version,
            instance_id=str(uuid.uuid4()),
            started_unix=self.clock.now(),
            interval_s=config.interval_s,
        )
        self.history = SampleHistory(config.history)
        self.metrics = AgentMetrics(self.registry, self.history, self.devices, self.identity)
        self.sampler = Sampler(
            backend.reader, self.devices, pods, self.history, self.clock,
            interval_s=config.interval_s, pod_refresh_s=config.pod_refresh_s, observer=self.metrics,
        )
        self.service = GpuAgentService(
            self.identity, self.devices, self.history, lambda: self.sampler.assignments, self.clock.now, self.metrics
        )
        self._grpc_server = None
        self._web: WebServer | None = None
        self.grpc_port = 0
        self.metrics_port = 0

    def start(self) -> None:
        try:
            self.sampler.sample_once()
        except GpuError as err:
            log.error("first sampling pass failed error=%s", err)
        self._grpc_server, self.grpc_port = start_server(
            self.service, grpc_address(self.config.listen), self.config.max_streams
        )
        host, port = split_host_port(self.config.metrics_listen)
        try:
            self._web = WebServer(host, port, self.registry, self.health)
        except Exception:
            self._grpc_server.stop(grace=None)
            raise
        self._web.start()
        self.metrics_port = self._web.port
        self.sampler.start()
        log.info(
            "agent started node=%s backend=%s gpus=%d grpc_port=%d metrics_port=%d interval_s=%s pods=%s pid=%d",
            self.identity.node_name, self.identity.backend, len(self.devices), self.grpc_port,
            self.metrics_port, self.config.interval_s, self.pods.name, os.getpid(),
        )

    def health(self) -> tuple[bool, dict[str, object]]:
        h = self.sampler.health()
        latest = self.history.latest()
        lost = [r.uuid for r in latest.readings if r.health is Health.LOST] if latest else []
        return h.ok, {
            "backend": self.identity.backend,
            "devices": len(self.devices),
            "last_pass_age_s": None if h.last_pass_age_s is None else round(h.last_pass_age_s, 3),
            "last_error": h.last_error,
            "lost": lost,
            "pod_resources_ok": self.sampler.assignments.ok,
        }

    def stop(self, grace_s: float = 1.0) -> None:
        self.sampler.stop()
        self.history.close()
        if self._grpc_server is not None:
            self._grpc_server.stop(grace=grace_s).wait()
            self._grpc_server = None
        if self._web is not None:
            self._web.stop()
            self._web = None
        self.pods.close()
        self.backend.reader.close()
        log.info("agent stopped node=%s", self.identity.node_name)
