"""Fleet cost: gpufleet's recommended instance mix vs the current openb fleet vs Karpenter's rule, in one run.

For each openb pod list and profile seed, runs what ``gpufleet recommend`` runs (right-size every pod
from a GenTD26 profile drawn by the seed, pack the peak concurrent demand onto the cheapest AWS mix,
replay Karpenter's launch rule on the requests) and prints the three $/h side by side with the ratios
the issue sets as targets (recommended <= 0.7 x current and <= 0.9 x baseline, shortfall <= 1% of
pods), plus the baseline's mean $/h over time and, for information, how many pods of the whole trace
would fit nowhere if the mix were a fixed fleet (it is sized for the peak and relies on
consolidation). Writes a PNG of the baseline and the recommendation per run.

    .venv/bin/python bench/fleet_cost.py [--traces default gpushare100 cpu250] [--seeds 0 1]
        [--spot] [--png bench/out/fleet_cost.png]

Lists without creation/deletion times (multigpu*) run every pod at once; they are large (minutes).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from gpufleet.autoscaler.cost.cli import compute, summary

ROOT = Path(__file__).resolve().parent
OPENB = ROOT / "data" / "alibaba-gpu-v2023"
GENTD = ROOT / "data" / "alibaba-gentd26"
PRICES = ROOT.parent / "gpufleet" / "core" / "data" / "gpu-instance-prices.csv"
TARGET_CURRENT, TARGET_BASELINE, TARGET_SHORTFALL = 0.7, 0.9, 0.01


def run_one(trace: str, seed: int, spot: bool) -> dict:
    args = argparse.Namespace(pods=str(OPENB / f"openb_pod_list_{trace}.csv"),
                              nodes=str(OPENB / "openb_node_list_gpu_node.csv"), prices=str(PRICES),
                              utilisation=str(GENTD / "pod_gpu_duty_cycle_anon.csv.gz"),
                              memory=str(GENTD / "pod_gpu_memory_used_bytes_anon.csv.gz"), seed=seed, cloud="aws",
                              spot=spot, headroom=0.15, json=True)
    start = time.perf_counter()
    result, current, _ = compute(args)
    out = summary(result, current)
    out.update(trace=trace, seed=seed, seconds=time.perf_counter() - start, peak_pods=result.peak_pods,
               baseline_mean=result.baseline_mean_usd_per_hour, trace_shortfall=len(result.trace_shortfall))
    return out


def table(rows: list[dict]) -> str:
    head = ["trace", "seed", "pods", "peak", "current $/h", "recommended", "baseline", "baseline mean",
            "rec/current", "rec/baseline", "shortfall", "met", "fixed-fleet fails", "s"]
    lines = [head]
    for r in rows:
        rc = r["recommended_usd_per_hour"] / r["current_usd_per_hour"]
        rb = r["recommended_usd_per_hour"] / r["baseline_usd_per_hour"]
        short = r["shortfall_pods"] / r["pods"]
        met = rc <= TARGET_CURRENT and rb <= TARGET_BASELINE and short <= TARGET_SHORTFALL
        lines.append([r["trace"], str(r["seed"]), str(r["pods"]), str(r["peak_pods"]),
                      f"{r['current_usd_per_hour']:.2f}", f"{r['recommended_usd_per_hour']:.2f}",
                      f"{r['baseline_usd_per_hour']:.2f}", f"{r['baseline_mean']:.2f}", f"{rc:.3f}", f"{rb:.3f}",
                      f"{100 * short:.2f}%", "yes" if met else "NO", str(r["trace_shortfall"]),
                      f"{r['seconds']:.0f}"])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
                     for line in lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['trace']}\nseed {r['seed']}" for r in rows]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(rows)), 4))
    width = 0.38
    xs = range(len(rows))
    ax.bar([x - width / 2 for x in xs], [r["baseline_usd_per_hour"] for r in rows], width, label="Karpenter rule (peak)")
    ax.bar([x + width / 2 for x in xs], [r["recommended_usd_per_hour"] for r in rows], width, label="gpufleet")
    for x, r in zip(xs, rows):
        ax.text(x + width / 2, r["recommended_usd_per_hour"],
                f"{r['recommended_usd_per_hour'] / r['baseline_usd_per_hour']:.2f}x", ha="center", va="bottom")
    ax.set_xticks(list(xs), labels)
    ax.set_ylabel("$ / hour at peak demand")
    ax.set_title("GPU fleet cost: gpufleet's mix vs Karpenter's launch rule (current fleet in the table)")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", nargs="+", default=["default", "gpushare100", "cpu250"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--spot", action="store_true", help="qos BE pods on spot (gpufleet.io/interruptible)")
    parser.add_argument("--png", type=Path, default=ROOT / "out" / "fleet_cost.png")
    args = parser.parse_args(argv)
    rows = []
    for trace in args.traces:
        for seed in args.seeds:
            rows.append(run_one(trace, seed, args.spot))
            print(f"done {trace} seed {seed} ({rows[-1]['seconds']:.0f} s)", file=sys.stderr)
    print(table(rows))
    plot(rows, args.png)
    print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
