"""Server-side latency of the extender's prioritize: 500 candidate names out of N cached nodes.

    python bench/extender_latency.py [--nodes 500,5000] [--requests 2000] [--fill 0.6]

For each cluster size and policy it times the work the server does per request, in-process: decoding
the JSON body, parsing the ExtenderArgs (a real-shaped Pod and 500 names), scoring the candidate rows,
recording the decision and encoding the reply (each pod's decision is dropped again after timing, so
the cluster does not fill up). The baseline in the same run is scoring the same pod against *every*
cached node with ``FGDPolicy.score`` (what a whole-cluster policy call costs), to show what scoring
only the candidate rows saves. Prints p50, p90, p99 and max in microseconds, and the targets
(p50 <= 1 ms, p99 <= 5 ms at 5,000 nodes).
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.extender_cluster import POLICIES, cached_extender, pod, random_shape
from scheduler.extender.app import warm_up
from scheduler.extender.pods import parse_pod
from scheduler.extender.wire import parse_scheduling_args
from scheduler.policies.fgd import FGDPolicy


def percentiles(samples: list[float]) -> tuple[float, float, float, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6

    return at(0.5), at(0.9), at(0.99), ordered[-1] * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="500,5000", help="cluster sizes (comma-separated)")
    parser.add_argument("--candidates", type=int, default=500, help="names per request (default 500)")
    parser.add_argument("--requests", type=int, default=2000, help="timed requests per policy")
    parser.add_argument("--fill", type=float, default=0.6, help="share of GPUs already taken")
    args = parser.parse_args(argv)
    warm_up()
    print(f"{'nodes':>6} {'policy':>10} {'p50 us':>8} {'p90 us':>8} {'p99 us':>8} {'max us':>8}   "
          f"whole-cluster FGDPolicy.score p50 us (ratio)")
    ok = True
    for count in (int(x) for x in args.nodes.split(",")):
        extender, _, names = cached_extender(count, args.fill)
        rng = random.Random(count)
        state = extender.state
        for policy in POLICIES:
            bodies = []
            for i in range(args.requests):
                p = pod(f"bench-{policy}-{i}", random_shape(rng), policy=policy)
                start = rng.randrange(count)
                chosen = [names[(start + k) % count] for k in range(min(args.candidates, count))]
                bodies.append(json.dumps({"Pod": p, "Nodes": None, "NodeNames": chosen}).encode())
            samples = []
            gc.collect()
            for body in bodies:
                t = time.perf_counter()
                request = parse_scheduling_args(json.loads(body))
                extender.prioritize(request)
                samples.append(time.perf_counter() - t)
                state.forget(request.pod.uid)
            p50, p90, p99, worst = percentiles(samples)
            whole = ""
            if policy == "fgd":
                fgd = FGDPolicy(extender.scorer.mix)
                reqs = [parse_pod(json.loads(b)["Pod"]).request for b in bodies[:200]]
                fgd.score(state.cluster, reqs[0])
                base = []
                for r in reqs:
                    t = time.perf_counter()
                    fgd.score(state.cluster, r)
                    base.append(time.perf_counter() - t)
                base_p50 = statistics.median(base) * 1e6
                whole = f"{base_p50:8.0f} ({base_p50 / p50:.1f}x the candidate-only p50)"
            print(f"{count:>6} {policy:>10} {p50:8.0f} {p90:8.0f} {p99:8.0f} {worst:8.0f}   {whole}")
            if count >= 5000:
                ok = ok and p50 <= 1000 and p99 <= 5000
    print(f"target at 5,000 nodes (p50 <= 1000 us, p99 <= 5000 us): {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
