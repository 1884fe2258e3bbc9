"""``cluster up --monitoring``: simulated agents, then Prometheus scraping everything, on loopback.

Called by ``LocalCluster`` once the nodes are Ready. Starts the fake kubelets and the agents
(``agents``), the reclaim controller streaming from them (``controller``, when this gpufleet has one
and no ``--controller-metrics-port`` names one already running), writes ``prometheus.yml`` into the state folder (``prometheus``), starts Prometheus
and waits until the agents are healthy and Prometheus is ready. A failure raises; the caller stops
whatever was started.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gpufleet.scheduler.localcluster import agents, controller, prometheus, readiness
from gpufleet.scheduler.localcluster.certs import Pki
from gpufleet.scheduler.localcluster.nodes import NodeSpec
from gpufleet.scheduler.localcluster.processes import ProcessGroup


@dataclass(frozen=True)
class MonitoringInfo:
    prometheus_url: str
    #: node -> the agent's /metrics port
    agent_metrics_ports: dict[str, int]
    #: the controller's /metrics port (started here, or the one given), None without one
    controller_metrics_port: int | None = None


def start(processes: ProcessGroup, say: Callable[[str], None], *, state_dir: Path, repo_root: Path,
          specs: Sequence[NodeSpec], agent_count: int, kubeconfig: Path, ports: Mapping[str, int], pki: Pki,
          extender_port: int | None, controller_port: int | None, free_ports: Callable[[int], list[int]],
          wait_s: float) -> MonitoringInfo:
    binary = prometheus.find_binary("prometheus")
    nodes = agents.agent_nodes(specs, agent_count)
    numbers = free_ports(1 + 2 * len(nodes))
    prometheus_port, pairs = numbers[0], list(zip(numbers[1::2], numbers[2::2], strict=True))
    agent_ports = agents.start(processes, nodes, state_dir, kubeconfig, pairs, wait_s)
    if agent_ports:
        say(f"{len(agent_ports)} simulated agents serving (fake kubelets mirror the API server's pods)")
    if controller_port is None and agent_ports and controller.controller_available():
        controller_port = free_ports(1)[0]
        settings = controller.write_settings(state_dir / "controller.yaml")
        controller.start(processes, controller_port, kubeconfig, [f"127.0.0.1:{a.grpc}" for a in agent_ports],
                         settings, wait_s)
        say(f"gpufleet controller serving /metrics on 127.0.0.1:{controller_port} (reclaim: opt-in pods only)")

    targets = prometheus.control_plane_targets(ports, pki) + prometheus.gpufleet_targets(
        extender_port, [a.metrics for a in agent_ports], controller_port)
    config = prometheus.write_config(state_dir / "prometheus.yml", prometheus.scrape_config(
        targets, prometheus.rule_files(repo_root)))
    data = state_dir / "prometheus-data"
    shutil.rmtree(data, ignore_errors=True)  # a new cluster, new series (like etcd's data)
    processes.start(prometheus.prometheus_process(binary, config, data, prometheus_port))
    url = f"http://127.0.0.1:{prometheus_port}"
    waited = readiness.wait_until("Prometheus /-/ready", prometheus.PrometheusClient(url).ready, wait_s,
                                  check_alive=lambda: processes.check(prometheus.NAME))
    say(f"Prometheus ready at {url} ({waited:.1f} s), scraping {len(targets)} targets")
    return MonitoringInfo(url, {a.node: a.metrics for a in agent_ports}, controller_port)
