"""Replay an openb trace with the FGD paper's protocol and report GPU allocation vs arrived demand.

Example: gpufleet simulate --pods bench/data/alibaba-gpu-v2023/openb_pod_list_default.csv \\
  --nodes bench/data/alibaba-gpu-v2023/openb_node_list_gpu_node.csv --policy fgd --seeds 42-51 --json
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from gpufleet.scheduler.policies import POLICIES


def parse_seeds(text: str) -> list[int]:
    """'42', '42-51' or '42,45,50-51' -> a list of seeds."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            seeds.extend(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must look like 42, 42-51 or 42,45; got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("no seeds given")
    return seeds


def count(text: str) -> int:
    """A whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def priced(nodes: list) -> list:
    """The nodes with the hourly price and capacity type the local cluster gives the same node list."""
    from dataclasses import replace

    from gpufleet.scheduler.localcluster.allocation import node_prices
    from gpufleet.scheduler.localcluster.nodes import openb_spec

    specs = [openb_spec(node, index) for index, node in enumerate(nodes)]
    prices, _ = node_prices(specs)
    return [replace(node, price_per_hour=float(price), spot=spec.capacity_type == "spot")
            for node, spec, price in zip(nodes, specs, prices)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pods", required=True, help="openb pod list CSV")
    parser.add_argument("--nodes", required=True, help="openb node list CSV")
    parser.add_argument("--policy", required=True, choices=list(POLICIES))
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, default=42)
    seeds.add_argument("--seeds", type=parse_seeds, help="several seeds, e.g. 42-51")
    parser.add_argument("--tune", type=float, default=1.3, help="inflate GPU demand to this x capacity")
    parser.add_argument("--exact", action="store_true", help="FGD without integer score quantisation")
    parser.add_argument("--index-tie-break", action="store_true",
                        help="break score ties by node order in the file, not a seeded order")
    parser.add_argument("--priced", action="store_true",
                        help="price the nodes as `gpufleet cluster up --profile openb` does (catalog instance "
                             "types, one node in four spot); the cost policy needs prices")
    parser.add_argument("--interruptible", action="store_true",
                        help="cost policy: the pods may run on spot nodes without the interruption penalty")
    parser.add_argument("--learn-mix", type=count, default=0, metavar="N",
                        help="re-learn the policy's workload mix from the pods placed so far every N arrivals, as "
                             "the extender learns it from the running pods (default 0: the trace's mix, the "
                             "paper's protocol)")
    parser.add_argument("--json", action="store_true", help="one JSON object per run on stdout")


def run(args: argparse.Namespace) -> int:
    from gpufleet.scheduler.simulator import SimulationConfig, simulate
    from gpufleet.scheduler.trace import TraceError, read_nodes, read_pods

    try:
        nodes, pods = read_nodes(args.nodes), read_pods(args.pods)
    except TraceError as err:
        print(f"gpufleet simulate: {err}", file=sys.stderr)
        return 2
    if args.priced:
        nodes = priced(nodes)
    for seed in args.seeds or [args.seed]:
        config = SimulationConfig(policy=args.policy, seed=seed, tune=args.tune, quantise=not args.exact,
                                  seeded_tie_break=not args.index_tie_break, interruptible=args.interruptible,
                                  learn_mix_every=args.learn_mix)
        started = time.perf_counter()

        def progress(done: int, total: int, seed: int = seed, started: float = started) -> None:
            rate = done / max(time.perf_counter() - started, 1e-9)
            print(f"\r  {args.policy} seed {seed}: {done}/{total} pods, {rate:,.0f} pods/s, "
                  f"{(total - done) / rate:4.1f} s left", end="", file=sys.stderr, flush=True)

        try:
            result = simulate(nodes, pods, config, progress=progress if sys.stderr.isatty() else None)
        except ValueError as err:
            print(f"gpufleet simulate: {err}", file=sys.stderr)
            return 2
        if sys.stderr.isatty():
            print(file=sys.stderr)
        if args.json:
            print(json.dumps(result.as_dict()), flush=True)
        else:
            print(f"{result.policy} seed {result.seed}: {result.scheduled}/{result.pods} pods placed in "
                  f"{result.seconds:.1f} s; GPU allocation {result.alloc_at.get('100', float('nan')):.2f}% "
                  f"at 100% arrived, {result.alloc_at.get('130', float('nan')):.2f}% at 130%")
    return 0
