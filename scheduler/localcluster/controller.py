"""The seam to the gpufleet reclaim controller for ``cluster up --monitoring``: start
``gpufleet controller`` against the simulated agents when that subcommand exists.

The local cluster's controller settings are the shipped defaults with minutes turned into seconds
(the demo and the tests last a minute or two): a gpu-pruner style window and minimum idle run of
10 s, no grace, 5 s of
notice, 2 s passes and sample buckets; the leader Lease lives in kube-system; a monthly GPU budget for
the ``unassigned`` team (the waste ledger's series feed the Cost dashboard). Only pods that opt in
(``gpufleet.io/reclaim``) are looked at, as anywhere else.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from gpufleet.scheduler.localcluster import readiness
from gpufleet.scheduler.localcluster.processes import ProcessGroup, ProcessSpec

NAME = "gpufleet-controller"
LOCAL_SETTINGS = {
    "reclaim": {"policy": "window", "graceSeconds": 0, "noticeSeconds": 5, "window": {"windowSeconds": 10},
                "detection": {"staleAfterSeconds": 30, "maxGapSeconds": 30, "minIdleSeconds": 10}},
    "samples": {"bucketSeconds": 2},
    "agents": {"staleAfterSeconds": 15, "inventoryEverySeconds": 5},
    "lease": {"namespace": "kube-system"},
    "passInterval": "2s",
    # the demo's pods carry no team label: their GPU spend goes to "unassigned", given a budget here so
    # the Cost dashboard's budget panels have a team to show
    "budgets": [{"team": "unassigned", "monthlyUSD": 5000}],
}


def controller_available() -> bool:
    """Whether this gpufleet has the ``controller`` subcommand."""
    from gpufleet.cli import SUBCOMMANDS

    return "controller" in SUBCOMMANDS


def write_settings(path: Path, settings: dict = LOCAL_SETTINGS) -> Path:
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def controller_process(metrics_port: int, kubeconfig: Path, agent_endpoints: Sequence[str],
                       settings: Path) -> ProcessSpec:
    """``gpufleet -v controller`` with the agents' gRPC endpoints given (no Service to discover them)."""
    return ProcessSpec(NAME, [
        sys.executable, "-m", "gpufleet.cli", "-v", "controller", "--kubeconfig", str(kubeconfig),
        "--config", str(settings), "--agents", ",".join(agent_endpoints),
        "--metrics-listen", f"127.0.0.1:{metrics_port}", "--identity", "local-controller",
    ])


def start(processes: ProcessGroup, metrics_port: int, kubeconfig: Path, agent_endpoints: Sequence[str],
          settings: Path, wait_s: float) -> None:
    """Start :func:`controller_process` and wait until its /healthz answers."""
    processes.start(controller_process(metrics_port, kubeconfig, agent_endpoints, settings))
    readiness.wait_until(f"{NAME} /healthz", readiness.http_ok(f"http://127.0.0.1:{metrics_port}/healthz"), wait_s,
                         check_alive=lambda: processes.check(NAME))
