"""An openb trace slice on the real control plane vs the simulator, on the same nodes and pod order.

    python bench/trace_replay.py [--nodes 200] [--trace multigpu50] [--seed 42] [--tune 1.3]
                                 [--whole-gpus] [--with-cpu-pods] [--out bench/out/replay]

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
fidelity. The simulator shares GPUs freely; kube-scheduler counts a GPU-share pod (``nvidia.com/gpu:
1`` + ``gpufleet.io/gpu-milli``) as one whole device, which caps the real runs where shares abound
(``--whole-gpus`` turns shares into whole GPUs everywhere, to compare without that effect).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gpufleet.scheduler.localcluster.cluster import OPENB_NODE_LIST, ClusterOptions, LocalCluster, find_repo_root
from gpufleet.scheduler.localcluster.nodes import openb_nodes
from gpufleet.scheduler.localcluster.tracepods import DEFAULT_TRACE
from gpufleet.scheduler.localcluster.tracereplay import (
    Plan,
    ReplayResult,
    plan,
    replay,
    simulate_same_order,
    with_placement,
    write_pod_list,
)

POINTS = ("50", "80", "100")


def last_point(curve: dict[str, float]) -> float:
    return curve[max(curve, key=int)] if curve else float("nan")


def run_cluster(name: str, the_plan: Plan, specs, nodes: int, extender_args, state: Path, say) -> ReplayResult:
    options = ClusterOptions(state_dir=state / name, profile="openb", nodes=nodes, timeout_s=300,
                             start_extender=extender_args is not None, extender_args=extender_args or ())
    cluster = LocalCluster(options, progress=lambda line: None)
    say(f"[{name}] cluster up: {nodes} openb nodes")
    info = cluster.up()
    try:
        return replay(cluster, info, specs, the_plan, name, emit=lambda line: say(f"[{name}] {line}"),
                      timeout_s=1800)
    finally:
        cluster.down()


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
    parser.add_argument("--out", type=Path, default=Path("bench/out/replay"))
    args = parser.parse_args(argv)
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
        print(f"[{time.monotonic() - started:6.0f}s] {line}", flush=True)

    specs = openb_nodes(root / OPENB_NODE_LIST, args.nodes)
    the_plan = plan(specs, trace_path, seed=args.seed, tune=args.tune, policy="fgd",
                    gpu_only=not args.with_cpu_pods, whole_gpus=args.whole_gpus)
    say(f"{len(specs)} nodes, {sum(s.gpus for s in specs)} GPUs; {len(the_plan.pods)} pods of {trace_path.name} "
        f"in the simulator's order (seed {args.seed}, tune {args.tune})")
    simulated = simulate_same_order(specs, the_plan)
    say(f"simulator: {simulated.scheduled}/{simulated.pods} pods placed in {simulated.seconds:.1f} s")
    mix = write_pod_list(args.out / "workload-mix.csv", the_plan.trace)
    ours = run_cluster("gpufleet", the_plan, specs, args.nodes, ("--workload-mix", str(mix.resolve())),
                       args.out / "state", say)
    plain = Plan(with_placement(the_plan.pods, None), the_plan.mix, the_plan.trace, the_plan.seed, the_plan.tune)
    theirs = run_cluster("default", plain, specs, args.nodes, None, args.out / "state", say)

    rows = [("simulator, FGD", simulated.alloc_at, None), ("kube-scheduler + gpufleet extender (FGD)",
                                                           ours.allocation.alloc_at, ours),
            ("kube-scheduler alone", theirs.allocation.alloc_at, theirs)]
    print(f"\n== {trace_path.name}, {len(specs)} openb nodes ({sum(s.gpus for s in specs)} GPUs), "
          f"{len(the_plan.pods)} pods, seed {args.seed} ==")
    header = ["placement"] + [f"alloc@{p}%" for p in POINTS] + ["alloc@end", "GPUs free", "frag GPUs",
                                                                  "devices", "pods bound", "double-booked",
                                                                  "fidelity"]
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
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
        print(" | ".join(cells))
    gap = last_point(simulated.alloc_at) - last_point(ours.allocation.alloc_at)
    print(f"\nsimulator - real (gpufleet) at the end: {gap:+.2f} pp; gpufleet - default: "
          f"{last_point(ours.allocation.alloc_at) - last_point(theirs.allocation.alloc_at):+.2f} pp")
    report = {"trace": trace_path.name, "nodes": len(specs), "pods": len(the_plan.pods), "seed": args.seed,
              "tune": args.tune, "whole_gpus": args.whole_gpus, "with_cpu_pods": args.with_cpu_pods,
              "simulator": simulated.alloc_at,
              "gpufleet": {"alloc_at": ours.allocation.alloc_at, "free_gpus": ours.allocation.free_gpus,
                           "fragmented_gpus": ours.allocation.fragmented_gpus, "problems": ours.problems,
                           "fidelity": None if ours.fidelity is None else vars(ours.fidelity)},
              "default": {"alloc_at": theirs.allocation.alloc_at, "free_gpus": theirs.allocation.free_gpus,
                          "fragmented_gpus": theirs.allocation.fragmented_gpus, "problems": theirs.problems}}
    (args.out / "trace_replay.json").write_text(json.dumps(report, indent=1, default=str))
    plot(rows, args.out / "trace_replay.png", f"{trace_path.name}, {len(specs)} openb nodes")
    print(f"wrote {args.out / 'trace_replay.json'} and {args.out / 'trace_replay.png'} "
          f"({time.monotonic() - started:.0f} s in all)")
    return 0


def plot(rows, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, curve, _ in rows:
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
