"""gpufleet reclaim: replay a GPU utilisation trace through the reclaim decision (the controller's own code).

  gpufleet reclaim backtest --utilisation FILE [--memory FILE] [--window 30m] [--threshold 1] [--json]
  gpufleet reclaim undo NAMESPACE/KIND/NAME     (give a workload the controller reclaimed its replicas back)

The trace is in GenTD26's layout (``value,timestamp_anon,container_ip``, gzip allowed; columns found by
header name). ``policy`` is gpufleet's default policy (the idle-span forecast), ``baseline`` is
gpu-pruner's rule (act once the last WINDOW were all <= THRESHOLD). An action is premature when the pod
is busy again within 30 minutes; useful GPU-hours count the reclaimed time of the other actions.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import sys
from typing import Any

from . import backtest
from .config import ReclaimConfig, ReclaimConfigError
from .tracefile import TraceError, read_trace

log = logging.getLogger(__name__)

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def duration(text: str) -> float:
    """``"30m"``, ``"90s"``, ``"2h"`` or a bare number of minutes -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected a duration like 30m, 90s or 2h, got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2) or "m"]


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a percentage like 1 or 0.5, got {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"expected a percentage between 0 and 100, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="reclaim_command", required=True, metavar="ACTION")
    bt = sub.add_parser("backtest", help="score the reclaim policy and gpu-pruner's rule on a trace",
                        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bt.add_argument("--utilisation", required=True, metavar="FILE",
                    help="per-pod GPU utilisation, GenTD26 layout (value,timestamp_anon,container_ip), .gz ok")
    bt.add_argument("--memory", metavar="FILE",
                    help="per-pod GPU memory used in bytes, same columns in any order; the policy then also "
                         "treats memory moving as activity")
    bt.add_argument("--window", type=duration, default=duration("30m"), metavar="DURATION",
                    help="gpu-pruner's idle window (default 30m)")
    bt.add_argument("--threshold", type=_percent, default=1.0, metavar="PERCENT",
                    help="utilisation at or below this is idle, %% (default 1)")
    bt.add_argument("--horizon", type=duration, default=duration("30m"), metavar="DURATION",
                    help="the policy acts when the idle span will likely last this much longer (default 30m)")
    bt.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    from gpufleet.autoscaler.controller import undo  # the CLI is an edge: it may reach the actuator

    undo.add_arguments(sub.add_parser("undo", help="restore a workload the controller reclaimed",
                                      description=undo.__doc__))


def run(args: argparse.Namespace) -> int:
    if args.reclaim_command == "backtest":
        return _backtest(args)
    if args.reclaim_command == "undo":
        from gpufleet.autoscaler.controller import undo

        return undo.run(args)
    raise AssertionError(args.reclaim_command)


def configs(threshold: float, window_s: float, horizon_s: float) -> tuple[ReclaimConfig, ReclaimConfig]:
    """(policy, baseline) for a backtest with these settings."""
    base = ReclaimConfig()
    policy = dataclasses.replace(
        base, detection=dataclasses.replace(base.detection, threshold_percent=threshold),
        forecast=dataclasses.replace(base.forecast, horizon_s=horizon_s))
    baseline = dataclasses.replace(policy, window=dataclasses.replace(base.window, window_s=window_s)).with_baseline()
    return policy, baseline


def backtest_report(trace: dict, policy: ReclaimConfig, baseline: ReclaimConfig) -> dict[str, Any]:
    """The JSON object ``gpufleet reclaim backtest --json`` prints."""
    report: dict[str, Any] = {
        "pods": len(trace),
        "idle_gpu_hours": round(backtest.idle_gpu_hours(trace, policy.detection.threshold_percent,
                                                        policy.detection.max_gap_s), 3),
    }
    for name, config in (("policy", policy), ("baseline", baseline)):
        report[name] = {"name": config.policy, **backtest.score(backtest.run(trace, config)).as_dict()}
    return report


def _backtest(args: argparse.Namespace) -> int:
    try:
        policy, baseline = configs(args.threshold, args.window, args.horizon)
        trace = read_trace(args.utilisation, args.memory)
    except (TraceError, ReclaimConfigError) as err:
        print(f"gpufleet reclaim backtest: error: {err}", file=sys.stderr)
        return 2
    log.info("backtest pods=%d policy=%s baseline_window_s=%g", len(trace), policy.policy, args.window)
    report = backtest_report(trace, policy, baseline)
    if args.json:
        print(json.dumps(report))
    else:
        print(format_table(report, args.window, args.horizon, args.threshold))
    return 0


def format_table(report: dict[str, Any], window_s: float, horizon_s: float, threshold: float) -> str:
    rows = [("", "actions", "premature", "premature %", "useful GPU-h", "reclaimed GPU-h")]
    labels = {"policy": f"gpufleet forecast (horizon {horizon_s / 60:g}m)",
              "baseline": f"gpu-pruner (window {window_s / 60:g}m)"}
    for name in ("policy", "baseline"):
        r = report[name]
        share = 100.0 * r["premature_actions"] / r["actions"] if r["actions"] else 0.0
        rows.append((labels[name], str(r["actions"]), str(r["premature_actions"]), f"{share:.1f}",
                     f"{r['useful_gpu_hours']:.1f}", f"{r['reclaimed_gpu_hours']:.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [f"{report['pods']} pods, {report['idle_gpu_hours']:.1f} idle GPU-hours (utilisation <= {threshold:g}%)"]
    lines += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
              for row in rows]
    base = report["baseline"]["useful_gpu_hours"]
    if base > 0:
        lines.append(f"useful GPU-hours, policy / baseline: {report['policy']['useful_gpu_hours'] / base:.2f}x")
    return "\n".join(lines)
