"""Load test of the extender under locust on loopback: req/s and latency percentiles per verb.

    python bench/extender_load.py [--mode names,nodes] [--scenario cycle] [--users 8] [--duration 20]

Two modes, each against a freshly started extender process on 127.0.0.1:

- ``names`` (nodeCacheCapable: true): an extender whose cache holds ``--nodes`` synthetic 8-GPU nodes
  (60% of GPUs taken by running pods; its binder stands in for the API server and the pods it binds
  finish after a few seconds, so the cluster neither fills up nor empties); requests carry a
  real-shaped pod and 500 node names;
- ``nodes`` (nodeCacheCapable: false): ``gpufleet extender --standalone``; requests carry
  ``--nodes-per-request`` full Node objects (no bind: standalone cannot).

Scenario ``cycle`` is one scheduling and binding cycle per simulated pod (filter, prioritize, bind);
``prioritize`` sends prioritize only. Locust runs headless for ``--duration`` seconds with
``--users`` users and no wait time; the report prints req/s and p50/p95/p99/max per verb (client side,
including locust's own scheduling delay on this machine) and the server-side p99 of prioritize from the
extender's histogram, with the target (>= 1,000 req/s at p99 <= 10 ms).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def serve(args: argparse.Namespace) -> int:
    """The ``names`` mode server: a cached extender over a synthetic cluster, plus pod churn."""
    from bench.extender_cluster import cached_extender
    from gpufleet.scheduler.extender.app import warm_up
    from gpufleet.scheduler.extender.server import ExtenderServer

    warm_up()
    extender, metrics, _ = cached_extender(args.nodes, args.fill)
    state = extender.state
    server = ExtenderServer(extender, metrics, "127.0.0.1", 0)
    server.start()

    def churn() -> None:  # pods bound by the benchmark finish after ~lifetime seconds
        while True:
            time.sleep(0.5)
            now = state.clock.monotonic()
            with state.lock:
                done = [p.uid for p in state.ledger.assumed()
                        if p.bound and p.expires_at - state.config.bound_ttl_s + args.lifetime <= now]
            for uid in done:
                state.delete_pod(uid)

    threading.Thread(target=churn, daemon=True).start()
    Path(args.ready_file).write_text(json.dumps({"port": server.port}))
    threading.Event().wait()
    return 0


def _requests_file(mode: str, nodes: int, per_request: int, path: Path, count: int = 500) -> None:
    from bench.extender_cluster import POLICIES, node, pod, random_shape

    rng = random.Random(1)
    all_nodes = [node(i) for i in range(nodes)] if mode == "nodes" else []
    with path.open("w") as f:
        for i in range(count):
            p = pod(f"load-{i}", random_shape(rng), policy=POLICIES[i % len(POLICIES)])
            start = rng.randrange(nodes)
            if mode == "names":
                line = {"pod": p, "names": [f"gpu-{(start + k) % nodes:05d}" for k in range(min(500, nodes))]}
            else:
                line = {"pod": p, "nodes": [all_nodes[(start + k) % nodes] for k in range(per_request)]}
            f.write(json.dumps(line) + "\n")


def _start_server(mode: str, args: argparse.Namespace, workdir: Path) -> tuple[subprocess.Popen, int]:
    ready = workdir / f"{mode}.ready"
    if mode == "names":
        argv = [sys.executable, __file__, "serve", "--nodes", str(args.nodes), "--ready-file", str(ready)]
    else:
        argv = [sys.executable, "-m", "gpufleet.cli", "extender", "--standalone", "--listen", "127.0.0.1:0",
                "--ready-file", str(ready)]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=(workdir / f"{mode}.log").open("w"))
    deadline = time.monotonic() + 120
    while not ready.exists() or not ready.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the {mode} extender did not start; see {workdir / f'{mode}.log'}")
        time.sleep(0.1)
    return proc, json.loads(ready.read_text())["port"]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (psutil), in seconds."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def _server_p99(port: int, verb: str) -> float | None:
    """p99 of the extender's own latency histogram (upper bucket bound), in ms."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    buckets = []
    for line in text.splitlines():
        if line.startswith("gpufleet_extender_request_duration_seconds_bucket") and f'verb="{verb}"' in line:
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(le), float(line.rsplit(" ", 1)[1])))
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    return next(le for le, count in buckets if count >= 0.99 * total) * 1000


def _locust(port: int, requests: Path, args: argparse.Namespace, workdir: Path, mode: str) -> list[dict]:
    prefix = workdir / f"locust-{mode}"
    env = dict(os.environ, GPUFLEET_BENCH_REQUESTS=str(requests), GPUFLEET_BENCH_SCENARIO=args.scenario)
    locust = Path(sys.executable).with_name("locust")
    argv = [str(locust), "-f", str(ROOT / "bench" / "locustfile.py"), "--headless", "--only-summary",
            "--host", f"http://127.0.0.1:{port}", "-u", str(args.users), "-r", str(args.users),
            "-t", f"{args.duration}s", "--csv", str(prefix), "--loglevel", "WARNING"]
    if args.processes > 1:
        argv += ["--processes", str(args.processes)]
    subprocess.run(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=(workdir / f"locust-{mode}.log").open("w"),
                   timeout=args.duration + 120, check=False)
    with (workdir / f"locust-{mode}_stats.csv").open() as f:
        return list(csv.DictReader(f))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    s = sub.add_parser("serve", help="(internal) run the names-mode extender")
    s.add_argument("--nodes", type=int, default=5000)
    s.add_argument("--fill", type=float, default=0.6)
    s.add_argument("--lifetime", type=float, default=3.0, help="seconds a bound benchmark pod runs")
    s.add_argument("--ready-file", required=True)
    parser.add_argument("--mode", default="names,nodes", help="names, nodes or both (comma-separated)")
    parser.add_argument("--scenario", choices=("cycle", "prioritize"), default="cycle")
    parser.add_argument("--nodes", type=int, default=5000, help="cached nodes in names mode (default 5000)")
    parser.add_argument("--nodes-per-request", type=int, default=100, help="full Node objects per request")
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--processes", type=int, default=1, help="locust worker processes")
    parser.add_argument("--duration", type=int, default=20, help="seconds of load per mode (default 20)")
    parser.add_argument("--keep", metavar="DIR", help="keep locust's CSVs and the logs in DIR")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args)
    print(f"{'mode':>6} {'verb':>11} {'req/s':>8} {'fails':>6} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
          f"{'max ms':>7} {'server p99 ms':>13}")
    with tempfile.TemporaryDirectory(prefix="gpufleet-load-") as tmp:
        workdir = Path(args.keep) if args.keep else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for mode in args.mode.split(","):
            requests = workdir / f"{mode}.jsonl"
            _requests_file(mode, args.nodes if mode == "names" else max(args.nodes_per_request, 500),
                           args.nodes_per_request, requests)
            proc, port = _start_server(mode, args, workdir)
            try:
                cpu_before = _cpu_seconds(proc.pid)
                rows = _locust(port, requests, args, workdir, mode)
                cpu = _cpu_seconds(proc.pid) - cpu_before
                server_p99 = {verb: _server_p99(port, verb) for verb in ("filter", "prioritize", "bind")}
            finally:
                proc.terminate()
                proc.wait(10)
            total = next((int(r["Request Count"]) for r in rows if r["Name"] == "Aggregated"), 0)
            if total:
                print(f"{mode:>6} server CPU: {cpu:.1f} s for {total} requests = {1000 * cpu / total:.2f} ms per "
                      f"request ({cpu / args.duration:.0%} of one core)")
            for row in rows:
                verb = row["Name"]
                sp99 = server_p99.get(verb) if verb != "Aggregated" else None
                print(f"{mode:>6} {verb:>11} {float(row['Requests/s']):8.0f} {row['Failure Count']:>6} "
                      f"{row['50%']:>7} {row['95%']:>7} {row['99%']:>7} {float(row['Max Response Time']):7.0f} "
                      f"{'' if sp99 is None else f'<= {sp99:g}':>13}")
    print("target: >= 1,000 req/s at p99 <= 10 ms (names mode, aggregated)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
