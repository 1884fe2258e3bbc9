"""gpufleet report: GPU waste by kind and team from recorded per-pod series, the workloads to fix first
with the dollars saved, and PNG charts.

Feeds the waste ledger with GenTD26-style series (--utilisation duty cycle %, --memory bytes): each pod
holds one whole GPU of its own node of --instance-type (GenTD26 names no GPU; default g6e.xlarge, an
L40S, the catalog's closest to its 48 GiB-class card), for each sampling interval (capped at twice
the median step, so gaps are not charged). Teams come from --teams (CSV ``pod,team``; the pod key
prefix as printed), else every pod is ``unassigned``. Budgets (--budgets, YAML) add spend vs budget
with the month-end forecast. Prints a table (or --json); writes PNGs under --out.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml

from gpufleet.autoscaler.cost.budgets import BudgetConfig, BudgetConfigError, forecast, parse_budgets
from gpufleet.autoscaler.cost.catalog import CatalogError, load_catalog
from gpufleet.autoscaler.cost.ledger import KINDS, Holding, Ledger, LedgerSnapshot, NodeRef, PodRef
from gpufleet.autoscaler.cost.profiles import ProfileError, load_series
from gpufleet.autoscaler.cost.sizing import Usage, Workload, needed_rate, recommend_workload
from gpufleet.core import names
from gpufleet.core.pricing import PriceCatalog


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--utilisation", required=True, help="per-pod GPU duty cycle CSV (GenTD26 columns)")
    parser.add_argument("--memory", required=True, help="per-pod GPU memory used CSV (GenTD26 columns)")
    parser.add_argument("--prices", required=True, help="GPU instance price table CSV")
    parser.add_argument("--instance-type", default="g6e.xlarge", help="what each pod's node is (default g6e.xlarge)")
    parser.add_argument("--teams", help="CSV pod,team (pods not listed are unassigned)")
    parser.add_argument("--budgets", help="budget config YAML (budgets: [{team, monthlyUSD}])")
    parser.add_argument("--top", type=int, default=10, help="workloads to list (default 10)")
    parser.add_argument("--out", type=Path, help="folder for PNG charts (none written without it)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    try:
        report = build(args)
    except (CatalogError, ProfileError, BudgetConfigError, ValueError, OSError) as err:
        print(f"gpufleet report: error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({k: v for k, v in report.items() if k != "snapshot"}))
    else:
        print(render(report))
    if args.out:
        for path in charts(report, args.out):
            print(f"wrote {path}", file=sys.stderr)
    return 0


def build(args: argparse.Namespace) -> dict:
    prices_text = Path(args.prices).read_text(encoding="utf-8")
    everything = load_catalog(args.prices)
    t = everything.get(args.instance_type)
    if t is None or t.gpu_count < 1:
        raise ValueError(f"--instance-type {args.instance_type}: not a GPU type in {args.prices}")
    spec = everything.cloud(t.cloud)  # recommend within the node's cloud
    teams = _teams(args.teams) if args.teams else {}
    budgets = parse_budgets(yaml.safe_load(Path(args.budgets).read_text(encoding="utf-8"))) if args.budgets \
        else BudgetConfig()
    duty, memory = load_series(Path(args.utilisation)), load_series(Path(args.memory))
    ledger = Ledger(PriceCatalog.from_csv_text(prices_text, args.prices), needed_rate(spec.recommendable()))
    labels = {names.INSTANCE_TYPE_LABEL: t.name}
    usage: dict[str, Usage] = {}
    last = 0.0
    for key in sorted(set(duty) & set(memory)):
        times, values = duty[key]
        order = np.argsort(times)
        times, values = times[order], values[order]
        mem_at = dict(zip(*memory[key]))
        if len(times) < 2:
            continue
        step = float(np.median(np.diff(times)))
        pod = PodRef(key[:12], "gentd26", owner=f"Pod/{key[:12]}", labels=(("team", teams[key[:12]]),)
                     if key[:12] in teams else ())
        node = NodeRef(f"node-{key[:12]}", t.gpu_count, t.gpu_model, labels)
        peak_bytes = 0.0
        for k in range(len(times) - 1):
            seconds = min(float(times[k + 1] - times[k]), 2 * step)
            held = [Holding(pod, g, 1.0, values[k] / 100.0, mem_at.get(times[k], peak_bytes))
                    for g in range(t.gpu_count)]
            peak_bytes = max(peak_bytes, mem_at.get(times[k], 0.0))
            ledger.add_sample(node, float(times[k]), seconds, held)
        mem_gib = np.array(list(mem_at.values())) / 2**30
        usage[pod.key] = Usage(float(np.percentile(mem_gib, 99)), float(np.percentile(values, 99)) / 100,
                               float(values.mean()) / 100, float(times[-1] - times[0]), len(times))
        last = max(last, float(times[-1]))
    snap = ledger.snapshot()
    if not snap.pods:
        raise ValueError("no pod has two or more samples in both series")
    total = snap.total_usd
    rows = []
    for key, cost in snap.pods.items():
        w = Workload(key, 0, 0, 1, 1000, usage=usage[key])
        rec = recommend_workload(w, spec.recommendable(), usd_per_hour_now=t.gpu_hour_price())
        hours = usage[key].window_s / 3600 or 1.0
        saved = max(0.0, t.gpu_hour_price() - rec.usd_per_hour_after)
        rows.append({"workload": key, "team": cost.team, "usd": round(cost.total_usd, 4),
                     "idle_usd": round(cost.usd["allocated-idle"], 4), "wrong_size_usd": round(cost.wrong_size_usd, 4),
                     "recommendation": rec.reason, "usd_per_hour_now": round(t.gpu_hour_price(), 4),
                     "usd_per_hour_after": round(rec.usd_per_hour_after, 4), "saved_usd_per_hour": round(saved, 4),
                     "saved_usd_over_window": round(saved * hours, 4), "window_hours": round(hours, 2)})
    top = sorted(rows, key=lambda r: (-r["saved_usd_over_window"], r["workload"]))[: args.top]
    team_hourly: dict[str, dict[float, float]] = defaultdict(dict)
    for (team, hour), usd in snap.hourly.items():
        team_hourly[team][hour] = usd
    budget_rows = []
    for b in budgets.budgets:
        f = forecast(team_hourly.get(b.team, {}), last, time_zone=b.time_zone)
        budget_rows.append({"team": b.team, "budget_usd": b.monthly_usd, "spent_usd": round(f.spent_usd, 2),
                            "forecast_usd": round(f.month_end_usd, 2)})
    return {"total_usd": round(total, 4),
            "by_kind": {k: round(snap.by_kind[k], 4) for k in KINDS},
            "wrong_size_usd": round(snap.wrong_size_usd, 4),
            "by_team": {team: round(sum(v.values()), 4) for team, v in sorted(snap.by_team.items())},
            "top": top, "budgets": budget_rows, "snapshot": snap, "now": last}


def render(report: dict) -> str:
    total = report["total_usd"] or 1.0
    lines = [f"GPU cost {report['total_usd']:.2f} $"]
    for kind, usd in report["by_kind"].items():
        lines.append(f"  {kind:<18}{usd:>12.2f} $  {100 * usd / total:5.1f}%")
    lines.append(f"  {'wrong size':<18}{report['wrong_size_usd']:>12.2f} $  {100 * report['wrong_size_usd'] / total:5.1f}%"
                 "  (part of the allocated cost)")
    lines.append("by team: " + ", ".join(f"{t} {v:.2f} $" for t, v in report["by_team"].items()))
    lines.append("top workloads to fix (by $ saved over their window at the recommended size):")
    for row in report["top"]:
        lines.append(f"  {row['workload']:<24} saves {row['saved_usd_over_window']:8.2f} $ "
                     f"({row['saved_usd_per_hour']:.3f} $/h; idle {row['idle_usd']:.2f} $, wrong size "
                     f"{row['wrong_size_usd']:.2f} $): {row['recommendation']}")
    for row in report["budgets"]:
        lines.append(f"budget {row['team']}: spent {row['spent_usd']:.2f} of {row['budget_usd']:.2f} $, "
                     f"month-end forecast {row['forecast_usd']:.2f} $")
    return "\n".join(lines)


def charts(report: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    snap: LedgerSnapshot = report["snapshot"]
    hours = sorted({h for _, h in snap.hourly_by_kind})
    fig, ax = plt.subplots(figsize=(8, 4))
    x = [(h - hours[0]) / 3600 for h in hours]
    ax.stackplot(x, *[[snap.hourly_by_kind.get((k, h), 0.0) for h in hours] for k in KINDS], labels=list(KINDS))
    ax.set_xlabel("hour")
    ax.set_ylabel("$ per hour")
    ax.set_title("GPU cost by waste kind")
    ax.legend(loc="upper left")
    fig.tight_layout()
    paths = [out / "waste_by_kind.png"]
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)
    if report["budgets"]:
        fig, ax = plt.subplots(figsize=(6, 4))
        rows = report["budgets"]
        xs = range(len(rows))
        ax.bar([i - 0.25 for i in xs], [r["spent_usd"] for r in rows], 0.25, label="spent")
        ax.bar(list(xs), [r["forecast_usd"] for r in rows], 0.25, label="month-end forecast")
        ax.bar([i + 0.25 for i in xs], [r["budget_usd"] for r in rows], 0.25, label="budget")
        ax.set_xticks(list(xs), [r["team"] for r in rows])
        ax.set_ylabel("$")
        ax.set_title("Spend vs budget")
        ax.legend()
        fig.tight_layout()
        paths.append(out / "budget.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def _teams(path: str) -> dict[str, str]:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    return {r[0].strip(): r[1].strip() for r in rows[1:] if len(r) >= 2 and r[0].strip()}
