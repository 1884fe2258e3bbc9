"""Run the GPU node agent: sample every GPU, map GPUs to pods, serve gRPC and Prometheus metrics.

Reads GPUs through NVML (the NVIDIA driver must be present), or plays simulated GPUs with
--simulate [SCRIPT] (the built-in scenario: 8 GPUs, some busy, some idle, one falling off the bus).
Exit status: 0 after SIGTERM/SIGINT, 2 for invalid settings or scripts, 3 when no GPU backend is
available (no NVIDIA driver and no --simulate).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gpufleet.autoscaler.agent.config import DEFAULT_LISTEN, DEFAULT_METRICS_LISTEN
from gpufleet.autoscaler.kubelet.podresources import DEFAULT_SOCKET
from gpufleet.core.signals import stop_on_signals

if TYPE_CHECKING:
    from gpufleet.autoscaler.agent.config import AgentConfig
    from gpufleet.autoscaler.agent.pods import PodSource
    from gpufleet.autoscaler.gpu.backend import OpenedBackend

log = logging.getLogger(__name__)

_BUILTIN = "<builtin>"  # same value as gpufleet.autoscaler.gpu.backend.BUILTIN, without importing it here


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--simulate", nargs="?", const=_BUILTIN, default=None, metavar="SCRIPT",
                        help="play simulated GPUs from a YAML/JSON script (no SCRIPT: the built-in 8-GPU scenario) "
                             "instead of reading NVML")
    parser.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                        help=f"gRPC address (gpufleet.v1.GpuAgent); port 0 picks one (default {DEFAULT_LISTEN})")
    parser.add_argument("--metrics-listen", default=DEFAULT_METRICS_LISTEN, metavar="HOST:PORT",
                        help=f"HTTP address for /metrics and /healthz (default {DEFAULT_METRICS_LISTEN})")
    parser.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                        help="sampling period (default 1)")
    parser.add_argument("--node-name", default=os.environ.get("NODE_NAME") or socket.gethostname(),
                        help="node name reported in metrics (hostname label) and on the stream "
                             "(default $NODE_NAME, else the host name)")
    parser.add_argument("--pod-resources-socket", default=None, metavar="PATH",
                        help=f"kubelet PodResources socket (default {DEFAULT_SOCKET}; with --simulate the "
                             "script's pods unless given); '' turns pod mapping off")
    parser.add_argument("--pod-refresh", type=float, default=5.0, metavar="SECONDS",
                        help="how often to ask the kubelet who holds which GPU (default 5)")
    parser.add_argument("--history", type=int, default=300, metavar="PASSES",
                        help="sampling passes kept for StreamSamples replay (default 300)")
    parser.add_argument("--max-streams", type=int, default=8, help="concurrent StreamSamples calls (default 8)")
    parser.add_argument("--ready-file", metavar="PATH",
                        help="write {pid, grpc_port, metrics_port} as JSON here once serving")
    parser.add_argument("--nodes", metavar="NAMES", help="with --simulate: stand in for many nodes in one process "
                        "(a,b,c or FORMAT:COUNT such as gpu-node-{:05d}:1000), all on the --listen port; "
                        "--pod-resources-socket may hold {node}")
    parser.add_argument("--print-builtin-script", action="store_true",
                        help="print the built-in simulation script (an example of the format) and exit")


def run(args: argparse.Namespace) -> int:
    from gpufleet.autoscaler.agent.app import Agent
    from gpufleet.autoscaler.agent.config import AgentConfig, AgentConfigError
    from gpufleet.autoscaler.agent.service import AgentServiceError
    from gpufleet.autoscaler.agent.web import WebServerError
    from gpufleet.autoscaler.gpu.backend import open_backend
    from gpufleet.autoscaler.gpu.model import GpuBackendUnavailable, GpuError
    from gpufleet.autoscaler.gpu.script import BUILTIN_SCRIPT, ScriptError
    from gpufleet.core.clock import SystemClock

    if args.print_builtin_script:
        sys.stdout.write(BUILTIN_SCRIPT)
        return 0
    if args.nodes:
        return _run_fleet(args)
    socket_arg = args.pod_resources_socket
    try:
        config = AgentConfig(
            node_name=args.node_name,
            listen=args.listen,
            metrics_listen=args.metrics_listen,
            interval_s=args.interval,
            simulate=args.simulate,
            pod_resources_socket=(DEFAULT_SOCKET if socket_arg is None else socket_arg) or None,
            pod_refresh_s=args.pod_refresh,
            history=args.history,
            max_streams=args.max_streams,
        )
    except AgentConfigError as err:
        print(f"gpufleet agent: invalid settings: {err}", file=sys.stderr)
        return 2
    clock = SystemClock()
    try:
        backend = open_backend(config.simulate, clock=clock, node_name=config.node_name)
    except ScriptError as err:
        print(f"gpufleet agent: invalid simulation script {err.source}:", file=sys.stderr)
        for line in err.errors:
            print(f"  {line}", file=sys.stderr)
        return 2
    except GpuBackendUnavailable as err:
        print(f"gpufleet agent: {err}", file=sys.stderr)
        return 3
    except GpuError as err:
        print(f"gpufleet agent: {err}", file=sys.stderr)
        return 3
    pods = _pod_source(config, backend, explicit_socket=socket_arg is not None)
    agent = Agent(config, backend, pods, clock)
    try:
        agent.start()
    except (AgentServiceError, WebServerError) as err:
        print(f"gpufleet agent: {err}", file=sys.stderr)
        agent.stop(grace_s=0)
        return 2
    stop = stop_on_signals()
    if args.ready_file:
        Path(args.ready_file).write_text(json.dumps(
            {"pid": os.getpid(), "grpc_port": agent.grpc_port, "metrics_port": agent.metrics_port}
        ))
    try:
        stop.wait()
    finally:
        agent.stop()
    return 0


def _run_fleet(args: argparse.Namespace) -> int:
    """Many simulated nodes in one process (gpufleet.autoscaler.agent.fleet)."""
    from gpufleet.autoscaler.agent.config import grpc_address
    from gpufleet.autoscaler.agent.fleet import FleetAgent, node_names
    from gpufleet.autoscaler.gpu.model import GpuError
    from gpufleet.autoscaler.gpu.script import ScriptError
    from gpufleet.core.clock import SystemClock

    socket_template = args.pod_resources_socket or None
    if args.simulate is None or (socket_template and "{node}" not in socket_template):
        print("gpufleet agent: --nodes needs --simulate, and a --pod-resources-socket with {node} (or none)",
              file=sys.stderr)
        return 2
    try:
        fleet = FleetAgent(args.simulate, node_names(args.nodes), SystemClock(), args.interval, socket_template,
                           args.pod_refresh, max(1, args.history))
        port = fleet.start(grpc_address(args.listen), args.max_streams)
    except (ScriptError, ValueError, OSError, GpuError) as err:
        print(f"gpufleet agent: {err}", file=sys.stderr)
        return 2
    if args.ready_file:
        Path(args.ready_file).write_text(json.dumps({"pid": os.getpid(), "grpc_port": port,
                                                     "nodes": len(fleet.nodes)}))
    stop = stop_on_signals()
    try:
        stop.wait()
    finally:
        fleet.stop()
    return 0


def _pod_source(config: AgentConfig, backend: OpenedBackend, explicit_socket: bool) -> PodSource:
    from gpufleet.autoscaler.agent.pods import KubeletPodSource, NoPodSource, StaticPodSource
    from gpufleet.autoscaler.kubelet.podresources import PodResourcesClient

    if config.pod_resources_socket is None:
        return NoPodSource()
    if backend.simulator is not None and backend.scenario is not None and not explicit_socket:
        return StaticPodSource(backend.scenario, backend.simulator)
    if not os.path.exists(config.pod_resources_socket):
        log.warning("kubelet pod-resources socket not found path=%s; GPUs will be reported without pods "
                    "until it appears", config.pod_resources_socket)
    return KubeletPodSource(PodResourcesClient(config.pod_resources_socket))
