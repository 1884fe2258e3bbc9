"""An openb trace slice on the real control plane vs the simulator, on the same nodes and pod order.

    python bench/trace_replay.py [--nodes 200] [--trace multigpu50] [--seed 42] [--tune 1.3]
                                 [--whole-gpus] [--with-cpu-pods] [--no-baseline] [--json]
                                 [--out bench/out/replay]

The nodes are the openb profile's (``--nodes`` evenly spaced over the trace's 1,213); the pods are the
trace's GPU pods in the simulator's order for those nodes (seeded shuffle, inflated to ``--tune`` x
their GPU capacity), all opted in to FGD. Three placements of the same pods:

- the simulator (``gpufleet.scheduler.simulator``, FGD, the trace's workload mix);
- the real kube-scheduler with the gpufleet extender (`cluster up`, extender started with
  ``--workload-mix`` = the same pods, so FGD measures against the same typical pods);
- the real kube-scheduler alone (`cluster up --no-extender`), the same pods un-annotated.

Pods are created one after the other while the scheduler runs, so its queue takes them in order.
Reported: GPU allocation at 50/80/100% and at the end of the arrivals, GPUs left unallocated, FGD
fragmentation of the free capacity, devices kube-scheduler counted, GPU-id double bookings, placement
fidelity. With the extender, a GPU share asks for the extended resource ``gpufleet.io/gpu-milli``
(docs/designs/014-gpu-sharing.md) and the extender's filter keeps it on one GPU; kube-scheduler
alone cannot do that, so there a share asks for one whole device (``nvidia.com/gpu: 1``).
``--whole-gpus`` turns shares into whole GPUs everywhere.

``--json`` prints one JSON object on stdout (progress goes to stderr): ``simulator``,
``with_extender`` and ``kube_scheduler_alone`` in % of GPUs allocated at the end of the arrivals
(``kube_scheduler_alone`` is null with ``--no-baseline``), plus ``double_booked`` (GPU-id problems
per real run), ``on_top_node`` / ``decided`` (opted-in pods on the extender's top node) and ``gap_pp``
(simulator - with_extender).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gpufleet.scheduler.localcluster.cluster import find_repo_root
from gpufleet.scheduler.localcluster.comparison import ComparisonConfig, Listener, compare, prepare
from gpufleet.scheduler.localcluster.tracepods import DEFAULT_TRACE
from gpufleet.scheduler.localcluster.tracereplay import Plan, ReplayResult

POINTS = ("50", "80", "100")


def last_point(curve: dict[str, float]) -> float:
    return curve[max(curve, key=int)] if curve else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=200, help="openb nodes, evenly spaced (default 200)")
    parser.add_argument("--trace", default="multigpu50",
                        help="openb pod list: bench/data/alibaba-gpu-v2023/openb_pod_list_<TRACE>.csv "
                             "(default multigpu50; try default)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--tune", type=float, default=1.3, help="GPU demand / capacity (default 1.3)")
    parser.add_argument("--whole-gpus", action="store_true", help="turn GPU shares into whole GPUs")
    parser.add_argument("--with-cpu-pods", action="store_true", help="keep the trace's CPU-only pods too")
    parser.add_argument("--no-baseline", action="store_true", help="skip the kube-scheduler-alone run")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON summary on stdout (keys simulator, with_extender, kube_scheduler_alone)")
    parser.add_argument("--out", type=Path, default=Path("bench/out/replay"))
    args = parser.parse_args(argv)
    out = sys.stderr if args.json else sys.stdout
    args.out.mkdir(parents=True, exist_ok=True)
    root = find_repo_root()
    trace_path = root / DEFAULT_TRACE.with_name(f"openb_pod_list_{args.trace}.csv")
    if not trace_path.is_file():
        print(f"no trace {trace_path}; choose one of "
              f"{', '.join(sorted(p.stem.removeprefix('openb_pod_list_') for p in trace_path.parent.glob('openb_pod_list_*.csv')))}",
              file=sys.stderr)
        return 2
    started = time.monotonic()

    def say(line: str) -> None:
        print(f"[{time.monotonic() - started:6.0f}s] {line}", file=out, flush=True)

    config = ComparisonConfig(trace=trace_path, nodes=args.nodes, seed=args.seed, tune=args.tune, policy="fgd",
                              gpu_only=not args.with_cpu_pods, whole_gpus=args.whole_gpus,
                              baseline=not args.no_baseline, cluster_timeout_s=300, replay_timeout_s=1800)
    setup = prepare(config, root)
    specs, the_plan = setup.specs, setup.plan
    say(f"{len(specs)} nodes, {sum(s.gpus for s in specs)} GPUs; {len(the_plan.pods)} pods of {trace_path.name} "
        f"in the simulator's order (seed {args.seed}, tune {args.tune})")
    listener = Listener(
        simulated=lambda r: say(f"simulator: {r.scheduled}/{r.pods} pods placed in {r.seconds:.1f} s"),
        starting=lambda name, _: say(f"[{name}] cluster up: {args.nodes} openb nodes"),
        cluster_progress=lambda name: lambda line: None,
        replay_progress=lambda name: lambda line: say(f"[{name}] {line}"),
    )
    comparison = compare(setup, args.out, listener)
    simulated, ours, theirs = comparison.simulated, comparison.gpufleet, comparison.default
    summary = json_summary(trace_path.name, len(specs), len(the_plan.pods), args.seed, simulated.alloc_at, ours, theirs)
    if args.json:
        print(json.dumps(summary), flush=True)
    table(trace_path.name, specs, the_plan, args.seed, simulated, ours, theirs, out)
    report = {"trace": trace_path.name, "nodes": len(specs), "pods": len(the_plan.pods), "seed": args.seed,
              "tune": args.tune, "whole_gpus": args.whole_gpus, "with_cpu_pods": args.with_cpu_pods,
              "summary": summary, "simulator": simulated.alloc_at, "gpufleet": details(ours),
              "default": None if theirs is None else details(theirs)}
    (args.out / "trace_replay.json").write_text(json.dumps(report, indent=1, default=str))
    rows = [("simulator, FGD", simulated.alloc_at), ("kube-scheduler + gpufleet extender (FGD)",
                                                    ours.allocation.alloc_at)]
    if theirs is not None:
        rows.append(("kube-scheduler alone", theirs.allocation.alloc_at))
    plot(rows, args.out / "trace_replay.png", f"{trace_path.name}, {len(specs)} openb nodes")
    print(f"wrote {args.out / 'trace_replay.json'} and {args.out / 'trace_replay.png'} "
          f"({time.monotonic() - started:.0f} s in all)", file=out)
    return 0


def json_summary(trace: str, nodes: int, pods: int, seed: int, simulated: dict[str, float], ours: ReplayResult,
                 theirs: ReplayResult | None) -> dict:
    """The --json object: % of GPUs allocated at the end of the arrivals, and the correctness counts."""
    sim, mine = last_point(simulated), last_point(ours.allocation.alloc_at)
    fid = ours.fidelity
    return {
        "trace": trace, "nodes": nodes, "pods": pods, "seed": seed,
        "simulator": round(sim, 2), "with_extender": round(mine, 2),
        "kube_scheduler_alone": None if theirs is None else round(last_point(theirs.allocation.alloc_at), 2),
        "gap_pp": round(sim - mine, 2),
        "double_booked": {"with_extender": len(ours.problems),
                          "kube_scheduler_alone": None if theirs is None else len(theirs.problems)},
        "on_top_node": None if fid is None else fid.on_top_node,
        "decided": None if fid is None else fid.decided,
        "bound": {"with_extender": ours.allocation.bound,
                  "kube_scheduler_alone": None if theirs is None else theirs.allocation.bound},
    }


def details(result: ReplayResult) -> dict:
    a = result.allocation
    return {"alloc_at": a.alloc_at, "free_gpus": a.free_gpus, "fragmented_gpus": a.fragmented_gpus,
            "problems": result.problems, "fidelity": None if result.fidelity is None else vars(result.fidelity)}


def table(trace: str, specs, the_plan: Plan, seed: int, simulated, ours: ReplayResult,
          theirs: ReplayResult | None, out) -> None:
    rows = [("simulator, FGD", simulated.alloc_at, None), ("kube-scheduler + gpufleet extender (FGD)",
                                                           ours.allocation.alloc_at, ours)]
    if theirs is not None:
        rows.append(("kube-scheduler alone", theirs.allocation.alloc_at, theirs))
    print(f"\n== {trace}, {len(specs)} openb nodes ({sum(s.gpus for s in specs)} GPUs), "
          f"{len(the_plan.pods)} pods, seed {seed} ==", file=out)
    header = ["placement"] + [f"alloc@{p}%" for p in POINTS] + ["alloc@end", "GPUs free", "frag GPUs",
                                                                  "devices", "pods bound", "double-booked",
                                                                  "fidelity"]
    print(" | ".join(header), file=out)
    print(" | ".join("---" for _ in header), file=out)
    for label, curve, result in rows:
        cells = [label] + [f"{curve.get(p, float('nan')):.2f}" for p in POINTS] + [f"{last_point(curve):.2f}"]
        if result is None:
            cells += ["-"] * 6
        else:
            a = result.allocation
            fid = result.fidelity
            cells += [f"{a.free_gpus:.1f}", f"{a.fragmented_gpus:.1f}", f"{a.devices_allocated}/{a.gpus}",
                      f"{a.bound}/{a.pods}", str(len(result.problems)),
                      "-" if fid is None else f"{fid.on_top_node}/{fid.decided} decided ({fid.bound} bound)"]
        print(" | ".join(cells), file=out)
    gap = last_point(simulated.alloc_at) - last_point(ours.allocation.alloc_at)
    line = f"\nsimulator - real (gpufleet) at the end: {gap:+.2f} pp"
    if theirs is not None:
        line += (f"; gpufleet - default: "
                 f"{last_point(ours.allocation.alloc_at) - last_point(theirs.allocation.alloc_at):+.2f} pp")
    print(line, file=out)


def plot(rows, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, curve in rows:
        xs = sorted(int(k) for k in curve)
        ax.plot(xs, [curve[str(x)] for x in xs], label=label)
    ax.plot([0, 100], [0, 100], color="grey", linewidth=0.5, linestyle=":")
    ax.set_xlabel("arrived GPU demand, % of capacity")
    ax.set_ylabel("GPUs allocated, % of capacity")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
