"""Run a local Kubernetes control plane with fake GPU nodes: `gpufleet cluster up|down|status`.

`up` starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler (profiles
default-scheduler and gpufleet-scheduler) and kwok on 127.0.0.1, creates the GPU nodes, waits until
they are Ready and writes a kubeconfig. `down` stops every process it started. The binaries come
from deploy/local/build.sh.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    up = actions.add_parser("up", help="start the cluster and wait until it is ready")
    up.add_argument("--profile", choices=("openb", "uniform"), default="uniform",
                    help="openb: the Alibaba trace's 1,213 GPU nodes; uniform: identical A100 nodes "
                         "(default %(default)s)")
    up.add_argument("--nodes", type=int, default=None,
                    help="number of nodes (default: all 1,213 for openb, 16 for uniform)")
    up.add_argument("--gpus-per-node", type=int, default=8, help="GPUs per uniform node (default %(default)s)")
    up.add_argument("--kubeconfig", type=Path, default=None,
                    help="also write the admin kubeconfig here (default: STATE_DIR/kubeconfig)")
    up.add_argument("--extender", metavar="URL", default=None,
                    help="urlPrefix of a gpufleet extender already running (http://127.0.0.1:PORT); "
                         "default: start `gpufleet extender` when available")
    up.add_argument("--no-extender", action="store_true", help="run kube-scheduler without an extender")
    up.add_argument("--node-list", type=Path, default=None,
                    help="openb node list CSV (default: bench/data/alibaba-gpu-v2023/ in the checkout)")
    up.add_argument("--bin-dir", type=Path, default=None,
                    help="folder with the binaries (default: $GPUFLEET_BIN_DIR or the build.sh cache)")
    up.add_argument("--timeout", type=float, default=300.0, help="seconds allowed for each wait (default 300)")
    up.add_argument("--monitoring", action="store_true",
                    help="also run simulated GPU agents and Prometheus (on PATH) scraping every component")
    up.add_argument("--agents", type=int, default=2, help="nodes given a simulated agent with --monitoring "
                                                          "(default %(default)s)")
    up.add_argument("--controller-metrics-port", type=int, default=None, metavar="PORT",
                    help="with --monitoring, also scrape a gpufleet controller's /metrics on 127.0.0.1:PORT")
    up.add_argument("--gitops", action="store_true",
                    help="also run a Git server on loopback and Flux (source- and kustomize-controller) "
                         "applying its fleet-config repository, seeded from deploy/gitops/example/")
    _state_dir_argument(up)

    down = actions.add_parser("down", help="stop every process of the cluster")
    down.add_argument("--purge", action="store_true", help="also delete the state folder (logs, PKI)")
    _state_dir_argument(down)

    status = actions.add_parser("status", help="show the processes, their memory and the cluster's addresses")
    _state_dir_argument(status)


def _state_dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="pid files, logs, certificates, etcd data (default: $GPUFLEET_STATE_DIR or "
                             "~/.local/state/gpufleet/cluster)")


def run(args: argparse.Namespace) -> int:
    from gpufleet.gitops.errors import GitOpsError
    from gpufleet.scheduler.localcluster.binaries import BinariesMissingError
    from gpufleet.scheduler.localcluster.cluster import (
        ClusterError,
        ClusterOptions,
        LocalCluster,
        default_state_dir,
        read_info,
    )
    from gpufleet.scheduler.localcluster.components import ConfigFileError
    from gpufleet.scheduler.localcluster.processes import ProcessError
    from gpufleet.scheduler.localcluster.prometheus import PrometheusError
    from gpufleet.scheduler.localcluster.readiness import NotReadyError

    state_dir = args.state_dir or default_state_dir()
    try:
        if args.action == "up":
            if args.extender and args.no_extender:
                print("gpufleet cluster up: --extender and --no-extender exclude each other", file=sys.stderr)
                return 2
            options = ClusterOptions(
                state_dir=state_dir, profile=args.profile, nodes=args.nodes, gpus_per_node=args.gpus_per_node,
                kubeconfig=args.kubeconfig, extender_url=args.extender, start_extender=not args.no_extender,
                bin_dir=args.bin_dir, node_list=args.node_list, timeout_s=args.timeout,
                monitoring=args.monitoring, agents=args.agents, controller_metrics_port=args.controller_metrics_port,
                gitops=args.gitops,
            )
            info = LocalCluster(options, progress=lambda message: print(message, flush=True)).up()
            print(f"\nlocal cluster ready in {info.seconds_to_ready:.1f} s: {info.nodes} nodes, {info.gpus} GPUs")
            print(f"  export KUBECONFIG={info.kubeconfig}")
            if info.prometheus_url:
                print(f"  Prometheus: {info.prometheus_url}  (dashboards: deploy/monitoring/dashboards/)")
            if info.git_url:
                print(f"  config repo (Flux applies main): git clone {info.git_url}")
            print(f"  stop it with: gpufleet cluster down --state-dir {info.state_dir}")
            return 0
        cluster = LocalCluster(ClusterOptions(state_dir=state_dir))
        if args.action == "down":
            stopped = cluster.down(purge=args.purge)
            print(f"stopped: {', '.join(stopped)}" if stopped else f"nothing was running in {cluster.state_dir}")
            return 0
        info = read_info(cluster.state_dir)
        report = {"cluster": None if info is None else vars(info), "processes": cluster.status()}
        print(json.dumps(report, indent=2, default=str))
        return 0
    except (BinariesMissingError, ClusterError, ConfigFileError, ProcessError, NotReadyError,
            PrometheusError, GitOpsError) as err:
        print(f"gpufleet cluster {args.action}: {err}", file=sys.stderr)
        return 1
