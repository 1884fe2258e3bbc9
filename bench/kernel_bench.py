"""Kernel microbenchmark: FGD scoring of one pod against the 1,213 openb nodes, numba vs plain Python.

    python bench/kernel_bench.py [--pods 200] [--fill 0.0,0.5,0.9]

For each cluster fill level (share of the trace already placed by FGD) it times, per pod drawn from
the default trace: the numba path (feasibility + FGD scores with cached node fragmentation, i.e. what
``FGDPolicy.score`` does per pod) and the plain-Python reference of the same two kernels, and prints
median and p99 per pod and the speed-up, measured side by side in one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
from gpufleet.scheduler import kernels, reference
from gpufleet.scheduler.model import Cluster
from gpufleet.scheduler.policies import choose_gpus, make_policy, select_node
from gpufleet.scheduler.trace import read_nodes, read_pods
from gpufleet.scheduler.workload import WorkloadMix

DATA = ROOT / "data" / "alibaba-gpu-v2023"


def filled_cluster(nodes, pods, mix, fill: float, rng) -> Cluster:
    cluster = Cluster.from_nodes(nodes)
    policy = make_policy("fgd", mix=mix)
    rank = np.arange(len(cluster))
    for i in rng.permutation(len(pods))[: int(fill * len(pods))]:
        scores = policy.score(cluster, pods[i])
        node = select_node(scores, rank)
        if node >= 0:
            cluster.place(node, pods[i], choose_gpus(cluster, node, pods[i], int(scores.share_gpu[node])))
    return cluster


def time_per_pod(fn, pods) -> list[float]:
    out = []
    for pod in pods:
        t = time.perf_counter()
        fn(pod)
        out.append(time.perf_counter() - t)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=200, help="pods timed per fill level (numba)")
    parser.add_argument("--reference-pods", type=int, default=10, help="pods timed for the reference")
    parser.add_argument("--fill", default="0.0,0.5,0.9")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    nodes = read_nodes(DATA / "openb_node_list_gpu_node.csv")
    trace = read_pods(DATA / "openb_pod_list_default.csv")
    mix = WorkloadMix.from_pods(trace)
    sample = [trace[i] for i in rng.choice(len(trace), args.pods, replace=False)]

    print(f"FGD scoring of one pod against {len(nodes)} nodes ({len(mix)} typical pods), per pod:")
    print(f"{'fill':>5} | {'numba median':>12} | {'numba p99':>9} | {'reference median':>16} | {'speed-up':>8}")
    print("-" * 64)
    for fill in (float(f) for f in args.fill.split(",")):
        cluster = filled_cluster(nodes, trace, mix, fill, rng)
        arrays = mix.arrays(cluster)
        policy = make_policy("fgd", mix=mix)
        policy.fragmentation(cluster)  # warm the per-node cache (and the JIT) as a running extender has

        def fast(pod, policy=policy, cluster=cluster):
            policy.score(cluster, pod)

        def slow(pod, policy=policy, cluster=cluster, arrays=arrays):
            args_ = (cluster.gpu_free, cluster.cpu_free, cluster.memory_free, cluster.gpu_model,
                     pod.cpu_milli, pod.memory_mib, pod.num_gpu, pod.gpu_milli,
                     cluster.model_mask(pod.gpu_models))
            ok = reference.feasible_nodes(*args_)
            before = policy.fragmentation(cluster)  # same cache for both: only scoring is compared
            reference.fgd_scores(cluster.gpu_free, cluster.cpu_free, cluster.gpu_model, ok, before,
                                 pod.cpu_milli, pod.num_gpu, pod.gpu_milli, arrays)

        fast(sample[0])
        numba_times = time_per_pod(fast, sample)
        ref_times = time_per_pod(slow, sample[: args.reference_pods])
        med, p99 = statistics.median(numba_times), float(np.percentile(numba_times, 99))
        ref_med = statistics.median(ref_times)
        # speed-up on the same pods, so the pod mix does not bias it
        same = statistics.median(numba_times[: args.reference_pods])
        print(f"{fill:>5.0%} | {med * 1e6:>9.0f} us | {p99 * 1e6:>6.0f} us | {ref_med * 1e3:>13.1f} ms | "
              f"{ref_med / same:>7.0f}x")
    print(f"\nnumba cache of the scoring kernel: {type(kernels._fgd_scores._cache).__name__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
