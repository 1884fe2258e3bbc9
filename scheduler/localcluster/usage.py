"""CPU time of the local cluster's processes, to say where the time of a benchmark went.

Each component leads a process group (``processes``); its CPU time is the user + system time of
every live member of the group (psutil). Take a snapshot before and after a run and
subtract. Linux only, like the rest of the local cluster.
"""

from __future__ import annotations

import os
from pathlib import Path

import psutil

from gpufleet.scheduler.localcluster.processes import group_members


def _group_cpu_seconds(pgid: int) -> float:
    total = 0.0
    for process in group_members(pgid):
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def cpu_seconds(state_dir: Path) -> dict[str, float]:
    """CPU seconds used so far by each running component of the cluster in ``state_dir``."""
    result: dict[str, float] = {}
    pid_dir = state_dir / "pids"
    if not pid_dir.is_dir():
        return result
    for pid_file in sorted(pid_dir.glob("*.pid")):
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        result[pid_file.stem] = _group_cpu_seconds(pid)
    return result


def self_cpu_seconds() -> float:
    """CPU seconds of this process (the benchmark or test driving the cluster)."""
    times = os.times()
    return times.user + times.system


def difference(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    """Per component, CPU seconds between two snapshots. A component restarted in between counts
    from its restart (its earlier process is gone, so its time is not in ``after``)."""
    result = {}
    for name, value in after.items():
        earlier = before.get(name, 0.0)
        result[name] = value - earlier if value >= earlier else value
    return result
