"""kube-scheduler throughput with and without the gpufleet extender, side by side in one run, on the
real control plane (`gpufleet cluster up`): N kwok nodes x 8 GPUs, P one-GPU pods annotated
`gpufleet.io/placement: fgd` (profile gpufleet-scheduler in both runs).

    python bench/cluster_throughput.py [--nodes 1000] [--pods 5000] [--repeat 1] [--cores shared,pinned]
                                       [--null-extender zero,pack,decide] [--no-decide-in-filter] [--out DIR]

Each run brings up its own cluster (without the extender: `--no-extender`, since an extender in the
config turns off kube-scheduler's pod-signature batching), queues the pods while kube-scheduler is
stopped (the Python client creates pods slower than kube-scheduler binds them), starts it and times
the binds through a pod watch. Reported per run: pods/s from the first bind to the last; latency
percentiles from the scheduler's own histograms (scheduling attempt = algorithm + binding, the
algorithm alone (which includes the extender's filter and prioritize), the pod SLI from first queueing
to bind); the extender's own per-verb latency; placement fidelity (share of opted-in pods bound to
the node the extender logged as its top choice); CPU seconds per component (where the time goes: the
2 cores are shared by every component). `--nodes 250,1000` runs a ladder. Targets: with/without >= 80%,
fidelity >= 99%. Writes a JSON of every number and a PNG (binds over time, CPU by component).

``--cores`` tells two problems apart. ``shared``: every component on every core, as before (the
extender's CPU and its latency both count). ``pinned``: the control plane (etcd, API server,
controller manager, kube-scheduler, kwok) and this process on all cores but the last, in both runs,
and the extender alone on the last core, as a sidecar with its own CPU request would be: what is
left of the gap is the latency the extender adds to kube-scheduler's serial cycle, not its CPU.

``--null-extender zero[,pack,decide]`` adds runs with ``bench/null_extender.py`` in the extender's place:
every node passes, every score is 0 (``pack``: the first name in sorted order gets 10, which packs nodes as
FGD does one-GPU pods; ``decide``: filter leaves only that name, as gpufleet's extender does), with the
same Binding and annotation and the same pod and node watches. Beside the run without an extender it
measures what *any* extender with this contract costs kube-scheduler and the API server, the floor under
gpufleet's. Each run first measures its idle cluster's load (``idle load``,
cores): a slower run pays more of that background, which is not per-pod work.

``--no-decide-in-filter`` adds a run of gpufleet's extender with that flag: filter passes every node that
fits and kube-scheduler scores them and calls prioritize (the default lets filter leave only the
policy's top node, so kube-scheduler skips both).

``--kubeconfig PATH`` runs against a cluster already running instead (kind with kwok, the local
cluster started separately, a real one), with the scheduler as it is configured there: it creates
only its own namespace and fake kwok nodes and removes them afterwards (``bench/existing_cluster.py``),
and reports pods/s and the latency from the nodes' opening to each bind (no with/without pair: the
scheduler's configuration is not ours to change there).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gpufleet.scheduler.localcluster import components, readiness, usage
from gpufleet.scheduler.localcluster.cluster import ClusterOptions, LocalCluster
from gpufleet.scheduler.localcluster.decisions import fidelity, read_decisions
from gpufleet.scheduler.localcluster.podloader import PodLoader
from gpufleet.scheduler.localcluster.processes import ProcessSpec
from gpufleet.scheduler.localcluster.replay import (
    ALGORITHM,
    ATTEMPT,
    SLI,
    SchedulingRun,
    extender_metrics_url,
    latency_percentiles,
    queue_and_schedule,
)
from gpufleet.scheduler.localcluster.scrape import scrape

TARGET_RATIO = 0.80
TARGET_FIDELITY = 0.99
TARGET_EXTENDER_CPU_MS = 1.5  # filter + prioritize + bind (and the extender's watches) per pod
BIND_TIMEOUT_S = 1.0  # kube-scheduler's httpTimeout towards the extender
#: The idle cluster's load is measured over IDLE_WINDOW_S before the pods come, after IDLE_SETTLE_S (just
#: after it is ready, kwok and the controller manager are still busy with the new nodes: ~1 core).
IDLE_SETTLE_S = 20.0
IDLE_WINDOW_S = 15.0
NAMESPACE = "bench"
QUANTILES = (0.5, 0.9, 0.99)


LAYOUTS = ("shared", "pinned")
NULL_EXTENDER = "null-extender"
#: Runs with bench/null_extender.py, by its --scores: "null" scores 0 everywhere, "null-pack" packs nodes,
#: "null-decide" leaves one node from filter.
NULL_MODES = {"null": "zero", "null-pack": "pack", "null-decide": "decide"}
#: Runs of gpufleet's extender beside "with", by their extra arguments.
EXTENDER_MODES = {"with": (), "prioritize": ("--no-decide-in-filter",)}


def core_sets() -> tuple[set[int], set[int]]:
    """(control plane cores, extender core) for ``pinned``: all but the last core, and the last."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        raise SystemExit("--cores pinned needs at least 2 CPUs")
    return set(cores[:-1]), {cores[-1]}


def pin_process(pid: int, cores: set[int]) -> None:
    """Every thread of ``pid`` onto ``cores`` (threads it starts later inherit it)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), cores)
        except (ProcessLookupError, PermissionError):
            pass


@dataclass
class Result:
    mode: str  # "without", one of EXTENDER_MODES, or of NULL_MODES (bench/null_extender.py instead of gpufleet's)
    nodes: int
    pods: int
    bound: int
    pods_per_s: float
    pods_per_s_from_start: float
    seconds: float
    attempt_s: dict[float, float]
    algorithm_s: dict[float, float]
    sli_s: dict[float, float]
    algorithm_mean_s: float
    attempts: dict[str, float]
    cpu_s: dict[str, float]
    extender_s: dict[str, dict[float, float]] = field(default_factory=dict)
    extender_mean_s: dict[str, float] = field(default_factory=dict)
    fidelity: float = math.nan
    fidelity_detail: str = ""
    timeline: list[tuple[float, int]] = field(default_factory=list)
    layout: str = "shared"
    binds_over_timeout: int = 0  # extender binds that took longer than kube-scheduler's 1 s
    #: CPU cores each component used on the idle cluster just before the pods came: a slower run pays
    #: more of that background, which is not per-pod work (one 15-s window: a rough guide only).
    idle_cores: dict[str, float] = field(default_factory=dict)
    #: The extender's CPU seconds by part (``gpufleet_extender_cpu_seconds_total``: each verb, and the
    #: connections' own; ``other``: the rest of the process, its watches above all).
    extender_cpu_parts_s: dict[str, float] = field(default_factory=dict)

    @property
    def extender_cpu_ms_per_pod(self) -> float:
        cpu = self.cpu_s.get("gpufleet-extender")
        return 1000 * cpu / self.pods if cpu is not None and self.pods else math.nan

    def extender_cpu_parts(self) -> str:
        """Per pod, ms: ``filter 0.40, bind 0.90, ...`` (only parts that used CPU)."""
        parts = {k: v for k, v in self.extender_cpu_parts_s.items() if v > 0}
        return ", ".join(f"{k} {1000 * v / self.pods:.2f}" for k, v in parts.items()) if self.pods else "-"


def pod(i: int, scheduler_name: str = "gpufleet-scheduler") -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"b-{i:05d}", "annotations": {"gpufleet.io/placement": "fgd"}},
            "spec": {"schedulerName": scheduler_name, "terminationGracePeriodSeconds": 0,
                     "automountServiceAccountToken": False, "enableServiceLinks": False,
                     "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10", "resources": {
                         "requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"nvidia.com/gpu": "1"}}}]}}


def start_null_extender(cluster: LocalCluster, port: int, kubeconfig: Path, scores: str) -> None:
    """bench/null_extender.py at ``port``, as one of the cluster's processes (its CPU is counted)."""
    script = Path(__file__).resolve().parent / "null_extender.py"
    cluster.processes.start(ProcessSpec(NULL_EXTENDER, [sys.executable, str(script), "--listen", f"127.0.0.1:{port}",
                                                        "--kubeconfig", str(kubeconfig), "--scores", scores]))
    readiness.wait_until("the null extender", readiness.http_ok(f"http://127.0.0.1:{port}/readyz"), 60,
                         check_alive=lambda: cluster.processes.check(NULL_EXTENDER))


def idle_cores(cluster: LocalCluster, seconds: float = IDLE_WINDOW_S) -> dict[str, float]:
    """CPU cores each component uses while nothing is scheduled, over ``seconds`` after a settle."""
    time.sleep(IDLE_SETTLE_S)
    before = usage.cpu_seconds(cluster.state_dir)
    time.sleep(seconds)
    return {k: v / seconds for k, v in usage.difference(usage.cpu_seconds(cluster.state_dir), before).items()}


def extender_cpu_parts(info, samples=None) -> dict[str, float]:
    """``gpufleet_extender_cpu_seconds_total`` by part, from ``samples`` or a scrape now."""
    samples = samples if samples is not None else scrape(extender_metrics_url(info))
    return {s.labels["part"]: s.value for s in samples.select("gpufleet_extender_cpu_seconds_total")}


def mean(samples, name: str, **match: str) -> float:
    count = samples.total(f"{name}_count", **match)
    return samples.total(f"{name}_sum", **match) / count if count else math.nan


def run_one(mode: str, nodes: int, pods: int, state_root: Path, say, layout: str = "shared",
            feature_gates: str = "") -> Result:
    with_extender = mode in EXTENDER_MODES
    null_port = components.free_port() if mode in NULL_MODES else None
    options = ClusterOptions(state_dir=state_root / f"{layout}-{mode}", profile="uniform", nodes=nodes,
                             gpus_per_node=8, start_extender=with_extender, timeout_s=600,
                             extender_args=EXTENDER_MODES.get(mode, ()),
                             scheduler_feature_gates=feature_gates,
                             extender_url=f"http://127.0.0.1:{null_port}/v1" if null_port else None)
    cluster = LocalCluster(options, progress=lambda line: None)
    say(f"[{layout}, {mode} extender] cluster up: {nodes} nodes x 8 GPUs")
    everywhere = os.sched_getaffinity(0)
    if layout == "pinned":
        control, own = core_sets()
        os.sched_setaffinity(0, control)  # components started from here (kube-scheduler restarts too) inherit it
    info = cluster.up()
    try:
        if null_port is not None:  # kube-scheduler calls it only once pods are queued, after this
            start_null_extender(cluster, null_port, info.kubeconfig, NULL_MODES[mode])
        if layout == "pinned" and mode != "without":
            pid = cluster.processes.pid(NULL_EXTENDER if null_port else "gpufleet-extender")
            if pid is None:
                raise RuntimeError("the extender is not running; cannot pin it")
            pin_process(pid, own)
            say(f"[{layout}, {mode} extender] control plane on cores {sorted(control)}, extender on {sorted(own)}")
        idle = idle_cores(cluster)
        say(f"[{mode} extender] ready in {info.seconds_to_ready:.1f} s; idle load {sum(idle.values()):.2f} cores; "
            f"queueing {pods:,} pods")
        parts_before = extender_cpu_parts(info) if with_extender else {}
        with PodLoader(info.kubeconfig) as loader:
            loader.ensure_namespace(NAMESPACE)
            run: SchedulingRun = queue_and_schedule(cluster, info, loader, NAMESPACE, [pod(i) for i in range(pods)],
                                                    emit=lambda line: say(f"[{mode} extender] {line}"),
                                                    timeout_s=1800)
        m = run.metrics
        result = Result(
            mode=mode, nodes=nodes, pods=pods, bound=run.bound, pods_per_s=run.pods_per_s,
            pods_per_s_from_start=run.pods_per_s_from_start, seconds=run.last_bind_s,
            attempt_s=latency_percentiles(m, ATTEMPT, QUANTILES),
            algorithm_s=latency_percentiles(m, ALGORITHM, QUANTILES),
            sli_s=latency_percentiles(m, SLI, QUANTILES), algorithm_mean_s=mean(m, ALGORITHM),
            attempts={s.labels.get("result", "?"): s.value for s in m.select("scheduler_schedule_attempts_total")},
            cpu_s={k: round(v, 1) for k, v in run.cpu_s.items()}, timeline=run.timeline, layout=layout,
            idle_cores=idle,
        )
        if with_extender:
            samples = scrape(extender_metrics_url(info))
            for verb in ("filter", "prioritize", "bind"):
                result.extender_s[verb] = latency_percentiles(samples, "gpufleet_extender_request_duration_seconds",
                                                              QUANTILES, verb=verb)
                result.extender_mean_s[verb] = mean(samples, "gpufleet_extender_request_duration_seconds", verb=verb)
            parts = {k: v - parts_before.get(k, 0.0) for k, v in extender_cpu_parts(info, samples).items()}
            process = run.cpu_s.get("gpufleet-extender", math.nan)
            result.extender_cpu_parts_s = {**parts, "other": max(0.0, process - sum(parts.values()))}
            name = "gpufleet_extender_request_duration_seconds"
            within = samples.total(f"{name}_bucket", verb="bind", le=str(BIND_TIMEOUT_S))
            result.binds_over_timeout = int(samples.total(f"{name}_count", verb="bind") - within)
            decisions = read_decisions(cluster.processes.log_path("gpufleet-extender"))
            measured = fidelity(decisions, {f"{NAMESPACE}/{o.name}": o.node for o in run.outcomes if o.node})
            result.fidelity = measured.share
            result.fidelity_detail = (f"{measured.on_top_node}/{measured.bound} on the top node "
                                      f"({measured.decided} decided); misses {list(measured.misses[:3])}")
        return result
    finally:
        cluster.down()
        os.sched_setaffinity(0, everywhere)


def ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{1000 * value:.1f}"


def table(without: Result, with_: Result) -> str:
    rows = [
        ("pods bound", f"{without.bound:,}/{without.pods:,}", f"{with_.bound:,}/{with_.pods:,}"),
        ("pods/s (first to last bind)", f"{without.pods_per_s:.1f}", f"{with_.pods_per_s:.1f}"),
        ("pods/s (from scheduler start)", f"{without.pods_per_s_from_start:.1f}", f"{with_.pods_per_s_from_start:.1f}"),
        ("seconds to the last bind", f"{without.seconds:.1f}", f"{with_.seconds:.1f}"),
    ]
    for label, attr in (("scheduling attempt", "attempt_s"), ("algorithm (incl. extender)", "algorithm_s"),
                        ("pod SLI (queued to bound)", "sli_s")):
        a, b = getattr(without, attr), getattr(with_, attr)
        rows.append((f"{label} p50/p90/p99 ms", "/".join(ms(a[q]) for q in QUANTILES),
                     "/".join(ms(b[q]) for q in QUANTILES)))
    rows.append(("algorithm mean ms", ms(without.algorithm_mean_s), ms(with_.algorithm_mean_s)))
    for verb, percentiles in with_.extender_s.items():
        rows.append((f"extender {verb} p50/p99 (mean) ms", "-",
                     f"{ms(percentiles[0.5])}/{ms(percentiles[0.99])} ({ms(with_.extender_mean_s[verb])})"))
    rows.append(("extender binds over 1 s", "-", str(with_.binds_over_timeout)))
    rows.append(("extender CPU ms per pod", "-", f"{with_.extender_cpu_ms_per_pod:.2f}"))
    rows.append(("  by part", "-", with_.extender_cpu_parts()))
    rows.append(("attempts by result", _fmt(without.attempts), _fmt(with_.attempts)))
    names = sorted(set(without.cpu_s) | set(with_.cpu_s))
    for name in names:
        rows.append((f"CPU s {name}", f"{without.cpu_s.get(name, 0):.1f}", f"{with_.cpu_s.get(name, 0):.1f}"))
    rows.append(("CPU ms per pod (all components)", f"{1000 * sum(without.cpu_s.values()) / without.pods:.1f}",
                 f"{1000 * sum(with_.cpu_s.values()) / with_.pods:.1f}"))
    rows.append(("idle cluster's load, cores", f"{sum(without.idle_cores.values()):.2f}",
                 f"{sum(with_.idle_cores.values()):.2f}"))
    width = max(len(r[0]) for r in rows)
    lines = [f"{'':{width}}  {'without extender':>20}  {'with extender':>26}"]
    lines += [f"{label:{width}}  {a:>20}  {b:>26}" for label, a, b in rows]
    return "\n".join(lines)


def extra_summary(mode: str, without: list[Result], runs: list[Result]) -> str:
    """A further mode's run beside the baseline (a null extender: the least any extender costs)."""
    ratio = statistics.median(r.pods_per_s for r in runs) / statistics.median(r.pods_per_s for r in without)
    base, floor = _median(without), _median(runs)
    what = (f"bench/null_extender.py --scores {NULL_MODES[mode]}" if mode in NULL_MODES
            else "gpufleet extender " + " ".join(EXTENDER_MODES[mode]))
    fidelity = "" if math.isnan(floor.fidelity) else f"; placement fidelity {floor.fidelity:.2%}"
    lines = [f"\n{mode} ({what}): {floor.pods_per_s:.1f} pods/s, {ratio:.0%} of without; "
             f"algorithm mean {ms(floor.algorithm_mean_s)} ms (without {ms(base.algorithm_mean_s)}){fidelity}",
             f"binds that failed (kube-scheduler's attempts with result error): {int(floor.attempts.get('error', 0))}",
             f"CPU ms per pod, without -> {mode}: " + ", ".join(
                 f"{name} {1000 * base.cpu_s.get(name, 0) / base.pods:.1f} -> "
                 f"{1000 * floor.cpu_s.get(name, 0) / floor.pods:.1f}"
                 for name in sorted(set(base.cpu_s) | set(floor.cpu_s)))]
    return "\n".join(lines)


def _fmt(counts: dict[str, float]) -> str:
    return " ".join(f"{k}={int(v)}" for k, v in sorted(counts.items()))


def plot(results: list[Result], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in results:
        xs = [t for t, _ in r.timeline]
        ys = [n for _, n in r.timeline]
        left.plot(xs, ys, label=f"{r.layout}: {r.mode} extender, {r.nodes} nodes ({r.pods_per_s:.0f} pods/s)")
    left.set_xlabel("seconds since kube-scheduler started")
    left.set_ylabel("pods bound")
    left.legend()
    left.set_title("binds over time")
    names = sorted({n for r in results for n in r.cpu_s})
    width = 0.8 / max(1, len(results))
    for i, r in enumerate(results):
        left_edges = [j + i * width for j in range(len(names))]
        right.bar(left_edges, [r.cpu_s.get(n, 0) for n in names], width, label=f"{r.mode} extender, {r.nodes} nodes")
    right.set_xticks([j + width * (len(results) - 1) / 2 for j in range(len(names))])
    right.set_xticklabels(names, rotation=20, ha="right")
    right.set_ylabel("CPU seconds during the run")
    right.set_title("where the time goes")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="1000", help="node counts, comma-separated (default 1000)")
    parser.add_argument("--pods", type=int, default=5000, help="one-GPU pods per run (default 5000)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per mode, alternating (default 1); medians")
    parser.add_argument("--cores", default="shared",
                        help="core layouts, comma-separated: shared (everything on every core), pinned (control "
                             "plane on all cores but the last, the extender alone on the last); default shared")
    parser.add_argument("--out", type=Path, default=Path("bench/out/cluster"), help="JSON, PNG and cluster state")
    parser.add_argument("--kubeconfig", type=Path,
                        help="run against this existing cluster (own namespace and fake nodes only)")
    parser.add_argument("--scheduler-name", default="gpufleet-scheduler",
                        help="schedulerName of the pods (default gpufleet-scheduler)")
    parser.add_argument("--scheduler-feature-gates", default="",
                        help="kube-scheduler's --feature-gates in both runs, e.g. OpportunisticBatching=false "
                             "(kube-scheduler turns that batching off whenever an extender is configured; off in "
                             "both runs, the two differ only by the extender)")
    parser.add_argument("--null-extender", default="", metavar="zero,pack,decide",
                        help="more runs per layout with bench/null_extender.py instead of gpufleet's (every node "
                             "passes, the same Binding and watches): `zero` scores 0 everywhere (what any extender "
                             "costs kube-scheduler and the API server), `pack` packs nodes as FGD does, `decide` "
                             "leaves one node from filter as gpufleet's extender does by default")
    parser.add_argument("--no-decide-in-filter", action="store_true",
                        help="one more run per layout: gpufleet's extender with --no-decide-in-filter (filter passes "
                             "every node that fits, kube-scheduler scores them and calls prioritize)")
    args = parser.parse_args(argv)
    scores = {v: k for k, v in NULL_MODES.items()}
    nulls = [c.strip() for c in args.null_extender.split(",") if c.strip()]
    if any(c not in scores for c in nulls):
        print(f"--null-extender: choose from {', '.join(scores)}", file=sys.stderr)
        return 2
    extras = [scores[c] for c in nulls] + (["prioritize"] if args.no_decide_in_filter else [])
    if args.kubeconfig is not None:
        return existing(args)
    layouts = [c.strip() for c in args.cores.split(",") if c.strip()]
    if not layouts or any(c not in LAYOUTS for c in layouts):
        print(f"--cores: choose from {', '.join(LAYOUTS)}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    def say(line: str) -> None:
        print(f"[{time.monotonic() - started:6.0f}s] {line}", flush=True)

    everything: list[Result] = []
    summary = []
    for nodes, layout in ((int(n), c) for n in args.nodes.split(",") for c in layouts):
        if nodes * 8 < args.pods:
            print(f"--pods {args.pods} does not fit on {nodes} nodes x 8 GPUs", file=sys.stderr)
            return 2
        modes = ("without", "with", *extras)
        runs: dict[str, list[Result]] = {mode: [] for mode in modes}
        for _ in range(args.repeat):
            for mode in modes:
                runs[mode].append(run_one(mode, nodes, args.pods, args.out / "state", say, layout,
                                          args.scheduler_feature_gates))
        everything += [r for mode in modes for r in runs[mode]]
        without = _median(runs["without"])
        with_ = _median(runs["with"])
        ratio = statistics.median(r.pods_per_s for r in runs["with"]) / statistics.median(
            r.pods_per_s for r in runs["without"])
        gates = f", kube-scheduler --feature-gates={args.scheduler_feature_gates}" if args.scheduler_feature_gates else ""
        print(f"\n== {layout} cores: {nodes} nodes x 8 GPUs, {args.pods:,} one-GPU pods (median of {args.repeat})"
              f"{gates} ==")
        print(table(without, with_))
        print("pods/s per run: without " + ", ".join(f"{r.pods_per_s:.1f}" for r in runs["without"])
              + "; with " + ", ".join(f"{r.pods_per_s:.1f}" for r in runs["with"]))
        print(f"\nwith/without pods/s (medians): {ratio:.0%} (target >= {TARGET_RATIO:.0%}: "
              f"{'met' if ratio >= TARGET_RATIO else 'NOT met'})")
        print(f"placement fidelity: {with_.fidelity:.2%} (target >= {TARGET_FIDELITY:.0%}: "
              f"{'met' if with_.fidelity >= TARGET_FIDELITY else 'NOT met'}); {with_.fidelity_detail}")
        cpu = statistics.median(r.extender_cpu_ms_per_pod for r in runs["with"])
        late = max(r.binds_over_timeout for r in runs["with"])
        print(f"extender CPU per pod (median): {cpu:.2f} ms (target <= {TARGET_EXTENDER_CPU_MS} ms: "
              f"{'met' if cpu <= TARGET_EXTENDER_CPU_MS else 'NOT met'}); binds over {BIND_TIMEOUT_S:g} s: {late} "
              f"(target 0: {'met' if late == 0 else 'NOT met'})")
        for mode in extras:
            print(extra_summary(mode, runs["without"], runs[mode]))
        summary.append({"layout": layout, "scheduler_feature_gates": args.scheduler_feature_gates, "nodes": nodes,
                        "pods": args.pods, "ratio": ratio, "fidelity": with_.fidelity,
                        "extender_cpu_ms_per_pod": cpu, "binds_over_timeout": late,
                        "without_pods_per_s": [r.pods_per_s for r in runs["without"]],
                        "with_pods_per_s": [r.pods_per_s for r in runs["with"]],
                        **{f"{mode}_pods_per_s": [r.pods_per_s for r in runs[mode]] for mode in extras}})
    (args.out / "cluster_throughput.json").write_text(json.dumps(
        {"summary": summary, "runs": [_jsonable(r) for r in everything]}, indent=1, default=str))
    plot(everything, args.out / "cluster_throughput.png")
    print(f"\nwrote {args.out / 'cluster_throughput.json'} and {args.out / 'cluster_throughput.png'} "
          f"({time.monotonic() - started:.0f} s in all)")
    return 0


def existing(args: argparse.Namespace) -> int:
    """``--kubeconfig``: the cluster as it is configured, once per node count and repeat."""
    from bench.existing_cluster import run_existing

    if not args.kubeconfig.is_file():
        print(f"--kubeconfig {args.kubeconfig}: no such file", file=sys.stderr)
        return 2
    started = time.monotonic()

    def say(line: str) -> None:
        print(f"[{time.monotonic() - started:6.0f}s] {line}", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    runs = []
    for nodes in (int(n) for n in args.nodes.split(",")):
        if nodes * 8 < args.pods:
            print(f"--pods {args.pods} does not fit on {nodes} nodes x 8 GPUs", file=sys.stderr)
            return 2
        for _ in range(args.repeat):
            runs.append(run_existing(args.kubeconfig, nodes, [pod(i, args.scheduler_name) for i in range(args.pods)],
                                     say))
    print(f"\n== existing cluster {args.kubeconfig}: schedulerName {args.scheduler_name} ==")
    print(f"{'nodes':>6} {'pods':>6} {'bound':>6} {'pods/s':>8} {'s to open nodes':>16} {'s to last bind':>15} "
          f"{'open->bind p50/p90/p99 ms':>30}")
    for r in runs:
        latency = "/".join(ms(r.latency_s[q]) for q in QUANTILES) if r.latency_s else "-"
        print(f"{r.nodes:>6} {r.pods:>6} {r.bound:>6} {r.pods_per_s:8.1f} {r.open_s:16.1f} {r.seconds:15.1f} "
              f"{latency:>30}")
    if any(r.open_s > 0.5 * r.seconds for r in runs):
        print("note: opening the nodes took over half the run, so pods/s may partly be the client's limit")
    (args.out / "cluster_throughput_existing.json").write_text(json.dumps([vars(r) for r in runs], indent=1,
                                                                          default=str))
    return 0


def _median(results: list[Result]) -> Result:
    """The run whose pods/s is closest to the median (shown in the table; the ratio uses the medians)."""
    middle = statistics.median(r.pods_per_s for r in results)
    return min(results, key=lambda r: abs(r.pods_per_s - middle))


def _jsonable(result: Result) -> dict:
    data = dict(vars(result))
    data["timeline"] = result.timeline[:: max(1, len(result.timeline) // 200)]
    return data


if __name__ == "__main__":
    sys.exit(main())
