"""Idle-GPU reclaim on GenTD26: gpufleet's forecast policy vs gpu-pruner's rule, side by side in one run.

Prints (1) the issue-9 setting (30-min window, 1% threshold) on design pods, held-out pods (split by a hash
of the pod key) and all pods, and on the second half of the day only (the policy has learnt from the
first), and with the held-out pods alone as the fleet (their own pooled history only); (2) a sweep over the window (the baseline's window and the policy's horizon, 10..120 min); and
writes a PNG of reclaimed GPU-hours and premature actions vs the window.

    .venv/bin/python bench/reclaim_backtest.py [--memory] [--png bench/out/reclaim_backtest.png]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from gpufleet.autoscaler.reclaim import backtest as bt
from gpufleet.autoscaler.reclaim.cli import configs
from gpufleet.autoscaler.reclaim.tracefile import read_trace

DATA = Path(__file__).parent / "data" / "alibaba-gentd26"
UTILISATION = DATA / "pod_gpu_duty_cycle_anon.csv.gz"
MEMORY = DATA / "pod_gpu_memory_used_bytes_anon.csv.gz"
WINDOWS_MIN = (10, 20, 30, 45, 60, 90, 120)
TARGET_RATIO = 1.3  # useful GPU-hours, policy / baseline (issue 9)
TARGET_PREMATURE = 0.10  # share of the policy's actions


def _cells(s: bt.Score) -> list[str]:
    return [str(s.actions), f"{100 * s.premature_share:.1f}%", f"{s.useful_gpu_hours:.1f}",
            f"{s.reclaimed_gpu_hours:.1f}"]


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory", action="store_true", help="also read GPU memory (memory moves = activity)")
    parser.add_argument("--png", type=Path, default=Path(__file__).parent / "out" / "reclaim_backtest.png")
    parser.add_argument("--windows", type=int, nargs="*", default=list(WINDOWS_MIN), metavar="MIN")
    args = parser.parse_args(argv)

    trace = read_trace(UTILISATION, MEMORY if args.memory else None)
    t0 = min(float(s.timestamps[0]) for s in trace.values())
    t1 = max(float(s.timestamps[-1]) for s in trace.values())
    middle = (t0 + t1) / 2
    halves = {k: bt.holdout_half(k) for k in trace}
    print(f"GenTD26: {len(trace)} pods ({sum(h == 'design' for h in halves.values())} design, "
          f"{sum(h == 'holdout' for h in halves.values())} held out), {(t1 - t0) / 3600:.1f} h, "
          f"{bt.idle_gpu_hours(trace, 1.0, 300.0):.0f} idle GPU-hours; memory {'on' if args.memory else 'off'}")

    policy_cfg, baseline_cfg = configs(1.0, 1800.0, 1800.0)
    started = time.perf_counter()
    policy = bt.run(trace, policy_cfg)
    policy_s = time.perf_counter() - started
    baseline = bt.run(trace, baseline_cfg)
    subsets = {
        "design pods": lambda a: halves[a.key] == "design",
        "held-out pods": lambda a: halves[a.key] == "holdout",
        "all pods": lambda a: True,
        "all pods, 2nd half of day": lambda a: a.at >= middle,
    }
    rows = [["window 30m, threshold 1%", "actions", "premature", "useful GPU-h", "reclaimed GPU-h",
             "| baseline: actions", "premature", "useful GPU-h", "reclaimed GPU-h", "| useful ratio"]]
    for name, keep in subsets.items():
        p = bt.score(a for a in policy if keep(a))
        b = bt.score(a for a in baseline if keep(a))
        ratio = p.useful_gpu_hours / b.useful_gpu_hours if b.useful_gpu_hours else float("nan")
        rows.append([name, *_cells(p), *_cells(b), f"{ratio:.2f}x"])
    held_out = {k: s for k, s in trace.items() if halves[k] == "holdout"}  # a fleet of held-out pods only
    p = bt.score(bt.run(held_out, policy_cfg))
    b = bt.score(bt.run(held_out, baseline_cfg))
    rows.append(["held-out pods as the whole fleet", *_cells(p), *_cells(b),
                 f"{p.useful_gpu_hours / b.useful_gpu_hours:.2f}x" if b.useful_gpu_hours else "-"])
    print("\n" + _table(rows))
    p_all, b_all = bt.score(policy), bt.score(baseline)
    ratio = p_all.useful_gpu_hours / b_all.useful_gpu_hours
    print(f"target: useful >= {TARGET_RATIO}x baseline and premature <= {TARGET_PREMATURE:.0%}: "
          f"{ratio:.2f}x, {p_all.premature_share:.1%} -> "
          f"{'met' if ratio >= TARGET_RATIO and p_all.premature_share <= TARGET_PREMATURE else 'NOT met'}"
          f"  (policy pass over the trace {policy_s:.1f} s)")

    sweep = []
    for minutes in args.windows:
        p_cfg, b_cfg = configs(1.0, minutes * 60.0, minutes * 60.0)
        sweep.append((minutes, bt.score(bt.run(trace, p_cfg)), bt.score(bt.run(trace, b_cfg))))
    rows = [["window / horizon (min)", "policy: actions", "premature", "useful GPU-h", "reclaimed GPU-h",
             "| baseline: actions", "premature", "useful GPU-h", "reclaimed GPU-h"]]
    rows += [[str(m), *_cells(p), *_cells(b)] for m, p, b in sweep]
    print("\n" + _table(rows))
    _plot(sweep, args.png)
    print(f"\nplot: {args.png}")
    return 0


def _plot(sweep: list[tuple[int, bt.Score, bt.Score]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [m for m, _, _ in sweep]
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.4))
    for label, index, style, colour in (("gpufleet forecast (horizon)", 1, "o-", "tab:blue"),
                                        ("gpu-pruner (window)", 2, "s--", "tab:orange")):
        scores = [row[index] for row in sweep]
        left.plot(minutes, [s.reclaimed_gpu_hours for s in scores], style, color=colour, label=f"{label}: reclaimed")
        left.plot(minutes, [s.useful_gpu_hours for s in scores], style, color=colour, alpha=0.4,
                  label=f"{label}: useful")
        middle.plot(minutes, [100 * s.premature_share for s in scores], style, color=colour, label=label)
        right.plot([100 * s.premature_share for s in scores], [s.useful_gpu_hours for s in scores], style,
                   color=colour, label=label)
        for m, s in zip(minutes, scores):
            right.annotate(f"{m}", (100 * s.premature_share, s.useful_gpu_hours), fontsize=7,
                           textcoords="offset points", xytext=(3, 3))
    for ax in (middle, right):
        (ax.axhline if ax is middle else ax.axvline)(100 * TARGET_PREMATURE, color="grey", lw=0.8, ls=":",
                                                     label="10% target")
    left.set(xlabel="window / horizon (min)", ylabel="GPU-hours", title="Reclaimed and useful GPU-hours")
    middle.set(xlabel="window / horizon (min)", ylabel="% of actions", ylim=(0, 100),
               title="Premature actions (busy again < 30 min)")
    right.set(xlabel="premature, % of actions", ylabel="useful GPU-hours", xlim=(0, 100),
              title="Useful vs premature (labels: minutes)")
    for ax in (left, middle, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("GenTD26 (Alibaba, 22.8 h of real per-pod GPU utilisation), threshold 1%")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
