"""The gpufleet demo: a slice of the openb trace through the real kube-scheduler, with and without us.

Builds the local control plane if needed (deploy/local/build.sh, about 10 min the first time), starts it
with the gpufleet extender, replays a slice of the trace (a share of the pods opted in to FGD, the rest
plain), then replays the same pods in the same order on a fresh cluster with the default scheduler
alone, and reports GPUs allocated, fragmentation and $/hour of the occupied nodes, with a PNG plot.

``--reclaim`` instead shows the idle-GPU reclaim controller on a small local cluster (about 1.5 min): which
opted-in idle workloads it scales to zero, which it only notifies, which it leaves alone and why, then
``gpufleet reclaim undo`` (see gpufleet/scheduler/localcluster/reclaimdemo.py). Exit status 1 when the
outcome is not the expected one.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes", type=int, default=40, help="openb nodes, evenly spaced (default 40)")
    parser.add_argument("--trace", default="multigpu50",
                        help="openb pod list: default, multigpu50, gpushare40, ... (default multigpu50)")
    parser.add_argument("--opt-in", type=float, default=0.8, help="share of pods annotated fgd (default 0.8)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="where the report and PNG go")
    parser.add_argument("--keep", action="store_true", help="leave the gpufleet cluster running")
    parser.add_argument("--reclaim", action="store_true",
                        help="instead: the reclaim controller on the local cluster (idle GPUs scaled to zero, "
                             "notified or left alone, then undo; about 1.5 min)")


def _say(message: str) -> None:
    print(message, flush=True)


def _ensure_binaries(root: Path) -> None:
    """Build the binaries if missing: build.sh's output streamed with the elapsed time, a heartbeat
    with the time left while Go compiles, and Go found where its installers put it."""
    from gpufleet.scheduler.localcluster.builder import ensure_binaries

    ensure_binaries(root, _say)


def run(args: argparse.Namespace) -> int:
    from gpufleet.core.kube.errors import KubeAPIError
    from gpufleet.scheduler.localcluster.binaries import BinariesMissingError
    from gpufleet.scheduler.localcluster.builder import BuildError
    from gpufleet.scheduler.localcluster.cluster import ClusterError, find_repo_root
    from gpufleet.scheduler.localcluster.comparison import ComparisonConfig, Listener, compare, prepare
    from gpufleet.scheduler.localcluster.podloader import PodLoadError
    from gpufleet.scheduler.localcluster.processes import ProcessError
    from gpufleet.scheduler.localcluster.readiness import NotReadyError
    from gpufleet.scheduler.localcluster.replay import ReplayError
    from gpufleet.scheduler.localcluster.scrape import ScrapeError
    from gpufleet.scheduler.trace import TraceError

    started = time.perf_counter()
    try:
        root = find_repo_root()
        _ensure_binaries(root)
        if args.reclaim:
            return _reclaim(args)
        trace = root / f"bench/data/alibaba-gpu-v2023/openb_pod_list_{args.trace}.csv"
        if not trace.is_file():
            print(f"gpufleet demo: no trace {trace.name}; see bench/data/alibaba-gpu-v2023/", file=sys.stderr)
            return 2
        config = ComparisonConfig(trace=trace, nodes=args.nodes, seed=args.seed, tune=1.3, policy="fgd",
                                  opt_in=args.opt_in, simulate=False)
        setup = prepare(config, root)
        args.out.mkdir(parents=True, exist_ok=True)
        _say(f"Replaying {len(setup.plan.pods)} pods of openb_pod_list_{args.trace} ({setup.plan.opted_in} opted "
             f"in to fgd) on {len(setup.specs)} nodes / {setup.gpus} GPUs, twice.")
        listener = Listener(
            starting=lambda label, extender: _say(f"\n[{label}] bringing the local cluster up "
                                                  f"({'with' if extender else 'without'} the gpufleet extender)..."),
            cluster_progress=lambda label: _say,
            replay_progress=lambda label: _say,
            kept=lambda label, info, state_dir: _say(
                f"[{label}] left running: export KUBECONFIG={info.kubeconfig}; "
                f"`gpufleet cluster down --state-dir {state_dir}` stops it"),
        )
        comparison = compare(setup, args.out, listener, keep=args.keep)
    except (ClusterError, BinariesMissingError, BuildError, NotReadyError, ProcessError, PodLoadError, ReplayError,
            ScrapeError, TraceError, KubeAPIError, OSError, ValueError) as err:
        print(f"gpufleet demo: {err}", file=sys.stderr)
        return 1
    results = {"gpufleet": comparison.gpufleet, "default": comparison.default}
    report = _report(results, time.perf_counter() - started)
    (args.out / "report.txt").write_text(report)
    _say("\n" + report)
    png = _plot(results, args.out / "demo.png")
    _say(f"Report: {args.out / 'report.txt'}; plot: {png}")
    return 0


def _reclaim(args: argparse.Namespace) -> int:
    """The reclaim walkthrough; its report also goes to OUT/reclaim-report.txt."""
    from gpufleet.scheduler.localcluster import reclaimdemo

    result = reclaimdemo.run(_say, keep=args.keep)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "reclaim-report.txt").write_text(result.report)
    _say("\n" + result.report + f"Report: {args.out / 'reclaim-report.txt'}")
    return 1 if result.failures else 0


def _report(results: dict, seconds: float) -> str:
    ours, theirs = results["gpufleet"].allocation, results["default"].allocation
    lines = [
        f"{'':28}{'gpufleet (FGD)':>16}{'default only':>16}",
        f"{'pods bound':28}{ours.bound:>16}{theirs.bound:>16}",
        f"{'GPUs allocated (% of all)':28}{ours.alloc_pct:>15.1f}%{theirs.alloc_pct:>15.1f}%",
        f"{'GPUs left unallocated':28}{ours.free_gpus:>16.1f}{theirs.free_gpus:>16.1f}",
        f"{'  of which fragments':28}{ours.fragmented_gpus:>16.1f}{theirs.fragmented_gpus:>16.1f}",
        f"{'occupied nodes':28}{ours.occupied_nodes:>16}{theirs.occupied_nodes:>16}",
        f"{'$/hour of occupied nodes':28}{ours.cost_per_hour:>16,.2f}{theirs.cost_per_hour:>16,.2f}",
        (f"{'  ... at 50% demand arrived':28}{ours.cost_at.get('50', float('nan')):>16,.2f}"
         f"{theirs.cost_at.get('50', float('nan')):>16,.2f}"),
    ]
    if ours.estimated_price_nodes or theirs.estimated_price_nodes:
        lines.append(f"($/hour: node types the price catalog lacks are priced at the median $/GPU-hour of the "
                     f"catalogued ones: {ours.estimated_price_nodes} and {theirs.estimated_price_nodes} nodes)")
    gpufleet = results["gpufleet"]
    if gpufleet.fidelity is not None:
        lines.append(f"opted-in pods on the extender's top node: {gpufleet.fidelity.on_top_node} of "
                     f"{gpufleet.fidelity.decided}")
    problems = gpufleet.problems + results["default"].problems
    lines.append("GPU double bookings: " + ("none" if not problems else "; ".join(problems)))
    lines.append(f"(whole demo {seconds / 60:.1f} min)")
    return "\n".join(lines) + "\n"


def _plot(results: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, style in (("gpufleet", "-"), ("default", "--")):
        curve = results[label].allocation.alloc_at
        xs = sorted(curve, key=int)
        ax.plot([int(x) for x in xs], [curve[x] for x in xs], style, label=label)
    ax.plot([0, 130], [0, 130], color="grey", linewidth=0.5)
    ax.set(xlabel="arrived GPU demand (% of capacity)", ylabel="GPUs allocated (% of capacity)",
           title="openb slice on the local cluster: real kube-scheduler", xlim=(0, 130), ylim=(0, 100))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
