"""The seam to the gpufleet extender: start ``gpufleet extender`` next to the local cluster when
that subcommand exists and no ``--extender URL`` names one already running."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from gpufleet.scheduler.localcluster.processes import ProcessSpec

NAME = "gpufleet-extender"
#: Path prefix of the verbs; kube-scheduler POSTs to urlPrefix + "/filter" etc.
PREFIX = "/v1"


def extender_available() -> bool:
    """Whether this gpufleet has the ``extender`` subcommand."""
    from gpufleet.cli import SUBCOMMANDS

    return "extender" in SUBCOMMANDS


def extender_url(port: int) -> str:
    """The urlPrefix kube-scheduler calls (``urlPrefix/filter``, ``/prioritize``, ``/bind``)."""
    return f"http://127.0.0.1:{port}{PREFIX}"


def readyz_url(port: int) -> str:
    """200 once the extender's watches have listed the cluster."""
    return f"http://127.0.0.1:{port}/readyz"


def extender_process(port: int, kubeconfig: Path, extra_args: Sequence[str] = ()) -> ProcessSpec:
    """``gpufleet -v extender --listen 127.0.0.1:PORT --kubeconfig KUBECONFIG``, with this Python.

    ``-v`` logs at INFO: one line per decision (``pod=NS/NAME policy=P node=N gpus=G``) and per bind,
    which is the extender's record of its top node per pod that tests and benchmarks read
    (``gpufleet.scheduler.localcluster.decisions``); Events carry it too, but rate-limited. ``extra_args`` go
    after the others (e.g. ``--workload-mix PATH``)."""
    return ProcessSpec(NAME, [
        sys.executable, "-m", "gpufleet.cli", "-v", "extender",
        "--listen", f"127.0.0.1:{port}", "--kubeconfig", str(kubeconfig), "--prefix", f"{PREFIX}/",
        *extra_args,
    ])
