"""The extender's CPU per pod in process, this tree beside a baseline revision, back to back and paced.

    python bench/extender_cpu.py [--baseline REV] [--pods 1200] [--rounds 3] [--rate 170]

Per pod, in one thread, the work a cluster gives the extender in its default mode (filter decides):
filter (a real-shaped Pod and 420 of 1,000 cached nodes' names, what kube-scheduler sends at 1,000
nodes), bind (the binder only records the Binding: the API round trip is `kube_client_cost.py`'s), and
the pod's two watch events from the API server (bound, then running: `data/local-cluster/bound-pod.json`,
managed fields and all), decoded and applied to the pod sink. Thread CPU per part, per pod.

`hot` runs the pods back to back. `paced` leaves kube-scheduler's gaps between them (``--rate`` pods/s,
the bind and the watch events half a gap later): an extender alone on its core, as in
`cluster_throughput.py --cores pinned`, then meets each request with cold caches, and in this VM that
costs about twice the hot CPU. Paced is the regime the cluster benchmark measures; hot shows the work.

The baseline's packages come from `git worktree add` of ``--baseline`` and are imported in a child
process (the harness, this file and `extender_cluster.py`, is this tree's for both). Rounds alternate
baseline and tree, so both meet the same machine; the table shows medians. Ratios within one run compare;
absolute numbers move 10-25% with the load on this shared machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOUND_POD = ROOT / "bench" / "data" / "local-cluster" / "bound-pod.json"
#: The import package's folders (setup.py's ``package_dir``), to lay a checkout out as ``gpufleet``.
FOLDERS = {"scheduler": "scheduler", "autoscaler": "autoscaler", "proto": "proto"}
PARTS = ("filter", "bind", "watch")


def _package_root(tree: Path, into: Path) -> Path:
    """A folder whose ``gpufleet`` package is ``tree``'s (its gpufleet/ plus the mapped folders)."""
    package = into / "gpufleet"
    package.mkdir(parents=True)
    for item in (tree / "gpufleet").iterdir():
        (package / item.name).symlink_to(item)
    for name, folder in FOLDERS.items():
        (package / name).symlink_to(tree / folder)
    return into


def _watch_events(template: dict, pod: dict, node: str, gpu_ids: str) -> list[bytes]:
    """The pod's events as the API server sends them: bound (still Pending, with the Binding's
    ``gpufleet.io/gpu-ids``), then Running."""
    bound = copy.deepcopy(template)
    bound["metadata"].update(name=pod["metadata"]["name"], namespace=pod["metadata"]["namespace"],
                             uid=pod["metadata"]["uid"])
    bound["metadata"]["annotations"] = {**pod["metadata"]["annotations"], "gpufleet.io/gpu-ids": gpu_ids}
    bound["spec"]["containers"] = pod["spec"]["containers"]
    bound["spec"]["nodeName"] = node
    running = copy.deepcopy(bound)
    bound["status"] = {"phase": "Pending", "qosClass": "Burstable",
                       "conditions": [{"type": "PodScheduled", "status": "True"}]}
    return [json.dumps({"type": "MODIFIED", "object": obj}).encode() for obj in (bound, running)]


def one_pod(verbs: dict, sink, state, template: dict, pod: dict, body: bytes,
            gap: float) -> tuple[float, float, float]:
    """Filter, bind and the two watch events of one pod, ``gap`` seconds apart (half a gap before bind
    and before the events); thread CPU seconds of each part."""
    from gpufleet.core.kube.client import _decode
    from gpufleet.scheduler.extender.server import answer

    time.sleep(gap)
    started = time.thread_time()
    _, reply = answer(verbs["filter"], body)
    filtered = time.thread_time()
    node = json.loads(reply)["NodeNames"][0]
    binding = json.dumps({"PodName": pod["metadata"]["name"], "PodNamespace": pod["metadata"]["namespace"],
                          "PodUID": pod["metadata"]["uid"], "Node": node}).encode()
    time.sleep(gap / 2)
    bind_started = time.thread_time()
    answer(verbs["bind"], binding)
    bound = time.thread_time()
    gpus = state.ledger.get(pod["metadata"]["uid"]).gpus
    events = _watch_events(template, pod, node, ",".join(map(str, gpus)))
    time.sleep(gap / 2)
    watch_started = time.thread_time()
    for event in events:
        decoded = _decode(event)
        sink.apply(decoded["type"], decoded["object"])
    return filtered - started, bound - bind_started, time.thread_time() - watch_started


def child(args: argparse.Namespace) -> None:
    """One run: print {part: us per pod} as JSON."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, args.package_root)
    import gpufleet.scheduler  # noqa: F401  (the package from --package-root, before bench imports it)
    from bench.extender_cluster import cached_extender
    from bench.http_servers import _bodies
    from gpufleet.scheduler.extender.app import warm_up
    from gpufleet.scheduler.extender.informer import PodSink
    from gpufleet.scheduler.extender.server import verbs_of

    warm_up()
    extender, metrics, _ = cached_extender(1000, args.fill)
    verbs = verbs_of(extender, metrics)
    sink = PodSink(extender.state)
    template = json.loads(BOUND_POD.read_text())
    gap = 1.0 / args.rate if args.paced else 0.0
    spent = dict.fromkeys(PARTS, 0.0)
    for i, (pod, body) in enumerate(_bodies(args.warmup + args.pods, 1000, args.seed)):
        parts = one_pod(verbs, sink, extender.state, template, pod, body, gap)
        if i >= args.warmup:
            for part, seconds in zip(PARTS, parts):
                spent[part] += seconds
    print(json.dumps({part: 1e6 * s / args.pods for part, s in spent.items()}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="fc31106", help="git revision to compare with (default fc31106)")
    parser.add_argument("--pods", type=int, default=1200, help="timed pods per run (default 1200)")
    parser.add_argument("--warmup", type=int, default=300, help="untimed pods first (default 300)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per tree and regime, alternating (default 3)")
    parser.add_argument("--rate", type=float, default=170.0, help="paced pods/s (default 170, kube-scheduler's "
                                                                  "rate alone at 1,000 nodes here)")
    parser.add_argument("--fill", type=float, default=0.3, help="share of GPUs taken at the start (default 0.3)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--paced", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--package-root", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0
    with tempfile.TemporaryDirectory(prefix="gpufleet-extender-cpu-") as tmp:
        worktree = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), args.baseline],
                       check=True, capture_output=True)
        try:
            trees = {f"baseline {args.baseline}": _package_root(worktree, Path(tmp) / "baseline-root"),
                     "this tree": _package_root(ROOT, Path(tmp) / "tree-root")}
            results = _run(trees, args)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)],
                           capture_output=True)
    _print(results, args)
    return 0


def _run(trees: dict[str, Path], args: argparse.Namespace) -> dict[tuple[str, str], list[dict[str, float]]]:
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    runs = [(regime, name) for _ in range(args.rounds) for regime in ("hot", "paced") for name in trees]
    started = time.monotonic()
    for done, (regime, name) in enumerate(runs):
        command = [sys.executable, __file__, "--child", "--package-root", str(trees[name]), "--pods", str(args.pods),
                   "--warmup", str(args.warmup), "--rate", str(args.rate), "--fill", str(args.fill),
                   "--seed", str(args.seed)] + (["--paced"] if regime == "paced" else [])
        out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT).stdout
        result = json.loads(out.strip().splitlines()[-1])
        results.setdefault((regime, name), []).append(result)
        elapsed = time.monotonic() - started
        left = elapsed / (done + 1) * (len(runs) - done - 1)
        print(f"[{done + 1}/{len(runs)}] {regime:5} {name}: {sum(result.values()):6.0f} us per pod "
              f"({elapsed:.0f} s, about {left:.0f} s left)", flush=True)
    return results


def _print(results: dict[tuple[str, str], list[dict[str, float]]], args: argparse.Namespace) -> None:
    print(f"\n1,000 nodes, {args.pods} pods x {args.rounds} rounds; us of thread CPU per pod (medians); "
          f"paced at {args.rate:.0f} pods/s")
    print(f"{'regime':6} {'tree':18} " + " ".join(f"{p:>7}" for p in PARTS) + f" {'total':>7} {'vs baseline':>12}")
    for regime in ("hot", "paced"):
        base = None
        for (r, name), runs in results.items():
            if r != regime:
                continue
            parts = {p: statistics.median(run[p] for run in runs) for p in PARTS}
            total = statistics.median(sum(run.values()) for run in runs)
            base = base or total
            print(f"{regime:6} {name:18} " + " ".join(f"{parts[p]:7.0f}" for p in PARTS)
                  + f" {total:7.0f} {total / base:12.2f}")


if __name__ == "__main__":
    sys.exit(main())
