"""gpufleet device-plugin: give each container the GPUs the extender chose.

A kubelet device plugin (API v1beta1) for nvidia.com/gpu (one device per GPU) and
gpufleet.io/gpu-milli (1000 per GPU, for GPU shares). Each container gets the GPUs its pod's
gpufleet.io/gpu-ids names, as NVIDIA_VISIBLE_DEVICES (and CDI names with --cdi); a share also gets
GPUFLEET_GPU_MILLI and GPUFLEET_GPU_MEMORY_LIMIT_MIB. Replaces the NVIDIA device plugin on the node
(two plugins must not both serve nvidia.com/gpu). Reads GPUs through NVML, or plays simulated GPUs
with --simulate. See docs/designs/014-gpu-sharing.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gpufleet.autoscaler.deviceplugin.plugin import DEFAULT_DIR

    parser.add_argument("--node-name", default=os.environ.get("NODE_NAME") or socket.gethostname(),
                        help="this node (default $NODE_NAME, else the host name)")
    parser.add_argument("--socket-dir", default=DEFAULT_DIR, metavar="DIR",
                        help=f"the kubelet's device-plugins directory (default {DEFAULT_DIR})")
    parser.add_argument("--kubeconfig", default=None, metavar="PATH",
                        help="kubeconfig for reading this node's pods (default: the in-cluster service account)")
    parser.add_argument("--simulate", nargs="?", const="<builtin>", default=None, metavar="SCRIPT",
                        help="simulated GPUs from a script (no SCRIPT: the built-in 8-GPU scenario) instead of NVML")
    parser.add_argument("--cdi", action="store_true", help="also pass the GPUs as CDI devices (nvidia.com/gpu=<uuid>)")
    parser.add_argument("--poll", type=float, default=1.0, metavar="SECONDS",
                        help="how often to check for a kubelet restart (default 1)")


def run(args: argparse.Namespace) -> int:
    from gpufleet.autoscaler.deviceplugin.assignment import Gpu
    from gpufleet.autoscaler.deviceplugin.plugin import DevicePluginRunner, PluginConfig
    from gpufleet.autoscaler.deviceplugin.pods import KubePodSource
    from gpufleet.autoscaler.gpu.backend import open_backend
    from gpufleet.autoscaler.gpu.model import GpuBackendUnavailable
    from gpufleet.core.clock import SystemClock
    from gpufleet.core.kube.client import KubernetesAPI
    from gpufleet.core.kube.errors import KubeAPIError
    from gpufleet.core.signals import stop_on_signals

    if not os.path.isdir(args.socket_dir):
        log.error("no directory %s: run on a node with a kubelet, or pass --socket-dir", args.socket_dir)
        return 2
    try:
        backend = open_backend(args.simulate, clock=SystemClock(), node_name=args.node_name)
        devices = backend.reader.devices()
        api = KubernetesAPI.connect(args.kubeconfig, user_agent="gpufleet-device-plugin")
    except (GpuBackendUnavailable, KubeAPIError) as err:
        log.error("%s", err)
        return 2
    gpus = [Gpu(d.index, d.uuid, d.memory_total_bytes // 2**20) for d in devices]
    if not gpus:
        log.error("no GPUs found on node %s; nothing to advertise", args.node_name)
        return 2
    runner = DevicePluginRunner(gpus, KubePodSource(api, args.node_name),
                                PluginConfig(socket_dir=args.socket_dir, node=args.node_name, cdi=args.cdi,
                                             poll_s=args.poll)).start()
    log.info("device plugin node=%s gpus=%d dir=%s", args.node_name, len(gpus), args.socket_dir)
    stop = stop_on_signals()
    stop.wait()
    runner.stop()
    api.close()
    return 0
