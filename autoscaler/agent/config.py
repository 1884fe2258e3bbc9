"""The agent's settings, one frozen dataclass with units and defaults in the field names and comments."""

from __future__ import annotations

from dataclasses import dataclass

from gpufleet.autoscaler.kubelet.podresources import DEFAULT_SOCKET

DEFAULT_LISTEN = "0.0.0.0:9450"  # gRPC, gpufleet.v1.GpuAgent
DEFAULT_METRICS_LISTEN = "0.0.0.0:9451"  # HTTP, /metrics and /healthz


class AgentConfigError(ValueError):
    """A setting is invalid."""


@dataclass(frozen=True, slots=True)
class AgentConfig:
    node_name: str
    listen: str = DEFAULT_LISTEN  # HOST:PORT for gRPC; port 0 picks a free port
    metrics_listen: str = DEFAULT_METRICS_LISTEN  # HOST:PORT for HTTP; port 0 picks a free port
    interval_s: float = 1.0  # sampling period, seconds
    simulate: str | None = None  # None: NVML; a script path, or gpufleet.autoscaler.gpu.backend.BUILTIN
    pod_resources_socket: str | None = DEFAULT_SOCKET  # None: pod mapping off ("" on the command line)
    pod_refresh_s: float = 5.0  # how often the kubelet is asked who holds which GPU, seconds
    history: int = 300  # sampling passes kept for replay (5 min at 1 Hz)
    max_streams: int = 8  # concurrent StreamSamples calls

    def __post_init__(self) -> None:
        errors = []
        if not self.interval_s > 0:
            errors.append(f"interval: must be > 0 s, got {self.interval_s}")
        if not self.pod_refresh_s > 0:
            errors.append(f"pod_refresh: must be > 0 s, got {self.pod_refresh_s}")
        if self.history < 1:
            errors.append(f"history: must be >= 1 pass, got {self.history}")
        if self.max_streams < 1:
            errors.append(f"max_streams: must be >= 1, got {self.max_streams}")
        if not self.node_name:
            errors.append("node_name: must not be empty")
        for name in ("listen", "metrics_listen"):
            try:
                split_host_port(getattr(self, name))
            except AgentConfigError as err:
                errors.append(f"{name}: {err}")
        if errors:
            raise AgentConfigError("; ".join(errors))


def split_host_port(address: str) -> tuple[str, int]:
    """``"0.0.0.0:9450"`` -> ("0.0.0.0", 9450); ``"[::]:0"`` -> ("::", 0); ``":9450"`` -> ("0.0.0.0", 9450)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise AgentConfigError(f"expected HOST:PORT, got {address!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def grpc_address(address: str) -> str:
    host, port = split_host_port(address)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
