"""Run the reclaim controller: find idle GPUs from the agents' samples and give them back safely.

Only pods that opt in (gpufleet.io/reclaim on the pod or its namespace: report, notify, scale-to-zero,
evict) are looked at. Every replica observes; the holder of the leader Lease gives notice
(gpufleet.io/idle-since + an Event) and, after the notice period, scales the workload to zero,
suspends the Job or evicts the pod (PDBs honoured). Undo: gpufleet reclaim undo NAMESPACE/KIND/NAME.
Exit status: 0 after SIGTERM/SIGINT, 2 for invalid settings, 3 when the API server cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
from pathlib import Path

from gpufleet.core.signals import stop_on_signals

log = logging.getLogger(__name__)

DEFAULT_METRICS_LISTEN = "0.0.0.0:9460"
DEFAULT_AGENT_SERVICE = "gpufleet-system/gpufleet-agent"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG") or None,
                        help="kubeconfig file (default $KUBECONFIG, else the in-cluster service account)")
    parser.add_argument("--config", metavar="FILE", help="controller settings (YAML): reclaim policy, action budget, "
                        "allowed windows, sample buffers, lease, team GPU budgets (budgets:) and cost attribution "
                        "(cost:); see docs/designs/009b-reclaim-controller.md and 010-waste-and-rightsizing.md")
    parser.add_argument("--agents", metavar="HOST:PORT,...", help="agent gRPC endpoints (default: discover them "
                        "from the EndpointSlices of --agent-service)")
    parser.add_argument("--agent-service", default=DEFAULT_AGENT_SERVICE, metavar="NAMESPACE/NAME",
                        help=f"the agents' Service (default {DEFAULT_AGENT_SERVICE})")
    parser.add_argument("--metrics-listen", default=DEFAULT_METRICS_LISTEN, metavar="HOST:PORT",
                        help=f"HTTP address for /metrics and /healthz (default {DEFAULT_METRICS_LISTEN})")
    parser.add_argument("--identity", default=os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}",
                        help="holder identity on the leader Lease (default $POD_NAME, else host-pid)")
    parser.add_argument("--lease-namespace", default=os.environ.get("POD_NAMESPACE") or None,
                        help="namespace of the leader Lease (default $POD_NAMESPACE, else the config's)")
    parser.add_argument("--ready-file", metavar="PATH", help="write {pid, metrics_port} as JSON here once serving")


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from prometheus_client import CollectorRegistry

    from gpufleet.autoscaler.agent.config import AgentConfigError, split_host_port
    from gpufleet.autoscaler.agent.web import WebServer, WebServerError
    from gpufleet.autoscaler.controller.app import Controller
    from gpufleet.autoscaler.controller.config import ControllerConfig, ControllerConfigError
    from gpufleet.core.clock import SystemClock
    from gpufleet.core.kube.client import KubernetesAPI
    from gpufleet.core.kube.errors import KubeAPIError

    try:
        config = ControllerConfig.load(args.config) if args.config else ControllerConfig()
        if args.lease_namespace:
            config = replace(config, lease=replace(config.lease, namespace=args.lease_namespace))
        host, port = split_host_port(args.metrics_listen)
        discovery = _discovery(args.agents, args.agent_service)
    except (ControllerConfigError, AgentConfigError, ValueError) as err:
        print(f"gpufleet controller: {err}", file=sys.stderr)
        return 2
    try:
        api = KubernetesAPI.connect(args.kubeconfig, user_agent="gpufleet-controller")
    except KubeAPIError as err:
        print(f"gpufleet controller: {err}", file=sys.stderr)
        return 3
    registry = CollectorRegistry()
    controller = Controller(api, config, SystemClock(), registry, args.identity, discovery)
    try:
        web = WebServer(host, port, registry, controller.healthy)
    except WebServerError as err:
        print(f"gpufleet controller: {err}", file=sys.stderr)
        return 2
    web.start()
    stop = stop_on_signals()
    try:
        controller.start()
    except KubeAPIError as err:
        print(f"gpufleet controller: {err}", file=sys.stderr)
        web.stop()
        return 3
    if args.ready_file:
        Path(args.ready_file).write_text(json.dumps({"pid": os.getpid(), "metrics_port": web.port}))
    try:
        stop.wait()
    finally:
        controller.stop()
        web.stop()
        api.close()
    return 0


def _discovery(agents: str | None, service: str) -> object:
    from gpufleet.autoscaler.agent.config import split_host_port
    from gpufleet.autoscaler.controller.app import Discovery

    if agents:
        endpoints = tuple(a.strip() for a in agents.split(",") if a.strip())
        for endpoint in endpoints:
            split_host_port(endpoint)
        return Discovery(endpoints=endpoints)
    namespace, sep, name = service.partition("/")
    if not sep or not namespace or not name:
        raise ValueError(f"--agent-service: expected NAMESPACE/NAME, got {service!r}")
    return Discovery(namespace=namespace, service=name)
