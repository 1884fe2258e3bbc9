"""The extender's verbs behind different HTTP servers, side by side in one run: server CPU per pod
(filter + prioritize + bind), pods/s and client-side latency per verb.

    python bench/http_servers.py [--servers stdlib-json,stdlib,uvicorn,granian,aiohttp] [--nodes 1000]
                                 [--pods 1500]
                                 [--rounds 2] [--bind-latency-ms 5]

Each server runs in its own process over the same extender (``--nodes`` cached 8-GPU nodes, 30% of
GPUs taken; a binder that stands in for the API server and answers after ``--bind-latency-ms``) and
is driven as kube-scheduler drives it: one kept-alive connection sends filter then prioritize per pod
(its serial scheduling cycle, 42% of the nodes as candidates, as kube-scheduler's adaptive
percentage asks at 1,000 nodes), and binds go out 4 at once (its parallel binding cycles) over
connections kept as Go's HTTP client keeps them: at most ``--idle-conns`` idle ones are kept, others
are closed after their request, so a burst of binds opens new connections (and, with TLS, new
handshakes). Servers: ``stdlib`` (the extender's ``ThreadingHTTPServer``, one thread per
connection), ``stdlib-json`` (the same server as it was before: the stdlib's email-based header
parser and Date formatting, ``json`` for bodies and replies, each Pod parsed by every verb), ``uvicorn`` (uvloop + httptools, ASGI), ``granian`` (Rust HTTP, RSGI, embedded),
``aiohttp`` (its low-level server on uvloop). The async ones run filter and prioritize on the event
loop and bind in a thread pool, so the API round trip blocks no worker. ``--rounds`` alternates the
servers that many times (load on a shared machine drifts); the table shows medians.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SERVERS = ("stdlib-json", "stdlib", "uvicorn", "granian", "aiohttp")
TARGET_CPU_MS = 1.5
JSON_HEADERS = [(b"content-type", b"application/json")]


# -- server side -----------------------------------------------------------------------------------


class SlowBinder:
    """Stands in for the API server: a Binding succeeds after ``latency_s`` (the round trip)."""

    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s

    def bind(self, namespace: str, name: str, uid: str, node: str, annotations: dict[str, str]) -> None:
        time.sleep(self.latency_s)

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return None


def _verbs(args: argparse.Namespace):
    from bench.extender_cluster import cached_extender
    from gpufleet.scheduler.extender.app import warm_up
    from gpufleet.scheduler.extender.server import verbs_of

    warm_up()
    extender, metrics, _ = cached_extender(args.nodes, args.fill)
    extender.binder = SlowBinder(args.bind_latency_ms / 1000)
    return extender, metrics, verbs_of(extender, metrics)


def _timed(verb, body: bytes) -> tuple[int, bytes]:
    from gpufleet.scheduler.extender.server import answer

    started = time.perf_counter()
    code, out = answer(verb, body)
    verb.duration.observe(time.perf_counter() - started)
    verb.count(code)
    return code, out


def _as_before(server) -> None:
    """This process's extender server as it was before msgspec and the lean header reader."""
    from http.server import BaseHTTPRequestHandler

    from gpufleet.scheduler.extender import server as module
    from gpufleet.scheduler.extender import wire

    module._Handler.parse_request = BaseHTTPRequestHandler.parse_request
    module._Handler.date_time_string = BaseHTTPRequestHandler.date_time_string
    wire._dumps = lambda value: json.dumps(value, separators=(",", ":")).encode()
    for verb in server._server.verbs.values():
        verb.read = None


def serve(args: argparse.Namespace) -> None:
    """One server on 127.0.0.1:args.port until killed."""
    extender, metrics, verbs = _verbs(args)
    kind = args.serve
    if kind in ("stdlib", "stdlib-json"):
        from gpufleet.scheduler.extender.server import ExtenderServer

        server = ExtenderServer(extender, metrics, "127.0.0.1", args.port)
        if kind == "stdlib-json":
            _as_before(server)
        server.start()
        threading.Event().wait()
    pool = ThreadPoolExecutor(16, thread_name_prefix="bind")

    async def run_verb(name: str, body: bytes) -> tuple[int, bytes]:
        verb = verbs.get(name)
        if verb is None:
            return 404, b'{"Error":"no such verb"}'
        if name == "bind":  # the API round trip blocks a pool thread, not the event loop
            return await asyncio.get_running_loop().run_in_executor(pool, _timed, verb, body)
        return _timed(verb, body)

    import uvloop

    if kind == "uvicorn":
        import uvicorn

        async def asgi(scope: dict, receive, send) -> None:
            if scope["type"] != "http":
                return
            chunks = []
            while True:
                message = await receive()
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    break
            code, out = await run_verb(scope["path"].rsplit("/", 1)[-1], b"".join(chunks))
            await send({"type": "http.response.start", "status": code,
                        "headers": [*JSON_HEADERS, (b"content-length", str(len(out)).encode())]})
            await send({"type": "http.response.body", "body": out})

        uvicorn.Server(uvicorn.Config(asgi, host="127.0.0.1", port=args.port, loop="uvloop", http="httptools",
                                      lifespan="off", access_log=False, log_level="warning")).run()
    elif kind == "granian":
        from granian.constants import Interfaces
        from granian.server.embed import Server

        async def rsgi(scope, protocol) -> None:
            code, out = await run_verb(scope.path.rsplit("/", 1)[-1], await protocol())
            protocol.response_bytes(code, [("content-type", "application/json")], out)

        uvloop.run(Server(rsgi, address="127.0.0.1", port=args.port, interface=Interfaces.RSGI,
                          log_enabled=False).serve())
    elif kind == "aiohttp":
        from aiohttp import web

        async def handle(request: web.BaseRequest) -> web.Response:
            code, out = await run_verb(request.path.rsplit("/", 1)[-1], await request.read())
            return web.Response(status=code, body=out, content_type="application/json")

        async def main() -> None:
            runner = web.ServerRunner(web.Server(handle), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", args.port).start()
            await asyncio.Event().wait()

        uvloop.run(main())
    else:
        raise SystemExit(f"unknown server {kind}; choose from {', '.join(SERVERS)}")


# -- client side: kube-scheduler's pattern ---------------------------------------------------------


def _bodies(count: int, nodes: int, seed: int) -> list[tuple[dict, bytes]]:
    from bench.extender_cluster import pod

    rng = random.Random(seed)
    names = [f"gpu-{i:05d}" for i in range(nodes)]
    candidates = max(100, nodes * max(5, 50 - nodes // 125) // 100) if nodes >= 100 else nodes
    out = []
    for i in range(count):
        p = pod(f"h-{seed}-{i:05d}", (1, 1000, "1"), policy="fgd")
        start = rng.randrange(nodes)
        chosen = [names[(start + k) % nodes] for k in range(candidates)]
        out.append((p, json.dumps({"Pod": p, "Nodes": None, "NodeNames": chosen}).encode()))
    return out


def _post(conn: http.client.HTTPConnection, path: str, body: bytes) -> bytes:
    conn.request("POST", path, body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    if response.status != 200:
        raise RuntimeError(f"{path}: {response.status} {data[:200]!r}")
    return data


def drive(kind: str, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """Start one server, run the pods through it, return CPU per pod, pods/s and latencies."""
    from gpufleet.scheduler.localcluster.components import free_port

    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--port", str(port), "--nodes",
                               str(args.nodes), "--fill", str(args.fill), "--bind-latency-ms",
                               str(args.bind_latency_ms)], cwd=ROOT)
    try:
        conn = _connect(port, server)
        process = psutil.Process(server.pid)
        bodies = _bodies(args.warmup + args.pods, args.nodes, seed)
        latency: dict[str, list[float]] = {"filter": [], "prioritize": [], "bind": []}
        binds = ThreadPoolExecutor(4)
        idle: list[http.client.HTTPConnection] = []
        idle_lock = threading.Lock()

        def bind(p: dict, node: str) -> None:
            with idle_lock:
                bind_conn = idle.pop() if idle else http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            body = json.dumps({"PodName": p["metadata"]["name"], "PodNamespace": p["metadata"]["namespace"],
                               "PodUID": p["metadata"]["uid"], "Node": node}).encode()
            t = time.perf_counter()
            _post(bind_conn, "/v1/bind", body)
            latency["bind"].append(time.perf_counter() - t)
            with idle_lock:
                keep = len(idle) < args.idle_conns
                if keep:
                    idle.append(bind_conn)
            if not keep:
                bind_conn.close()

        def cycle(p: dict, body: bytes) -> Any:
            t = time.perf_counter()
            passed = json.loads(_post(conn, "/v1/filter", body))["NodeNames"]
            t2 = time.perf_counter()
            scores = json.loads(_post(conn, "/v1/prioritize", json.dumps(
                {"Pod": p, "Nodes": None, "NodeNames": passed}).encode()))
            t3 = time.perf_counter()
            latency["filter"].append(t2 - t)
            latency["prioritize"].append(t3 - t2)
            best = max(scores, key=lambda h: h["Score"])["Host"]
            return binds.submit(bind, p, best)

        for p, body in bodies[:args.warmup]:
            cycle(p, body)
        binds.shutdown(wait=True)
        binds = ThreadPoolExecutor(4)
        for values in latency.values():
            values.clear()
        cpu_before = _cpu(process)
        started = time.perf_counter()
        futures = [cycle(p, body) for p, body in bodies[args.warmup:]]
        for future in futures:
            future.result()
        seconds = time.perf_counter() - started
        cpu = _cpu(process) - cpu_before
        binds.shutdown(wait=True)
        return {"server": kind, "pods_per_s": args.pods / seconds, "cpu_ms_per_pod": 1000 * cpu / args.pods,
                **{f"{verb}_ms": _percentiles(values) for verb, values in latency.items()}}
    finally:
        server.kill()
        server.wait()


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system + sum(c.cpu_times().user + c.cpu_times().system
                                           for c in process.children(recursive=True))


def _percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return 1000 * ordered[len(ordered) // 2], 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def _connect(port: int, server: subprocess.Popen, timeout_s: float = 120.0) -> http.client.HTTPConnection:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"server exited with {server.returncode} before it listened")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.connect()
            return conn
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"no server on port {port} after {timeout_s} s")


def _available(kind: str) -> bool:
    modules = {"stdlib": [], "stdlib-json": [], "uvicorn": ["uvicorn", "uvloop", "httptools"], "granian": ["granian", "uvloop"],
               "aiohttp": ["aiohttp", "uvloop"]}[kind]
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in modules)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated, from " + ", ".join(SERVERS))
    parser.add_argument("--nodes", type=int, default=1000, help="cached nodes (default 1000)")
    parser.add_argument("--fill", type=float, default=0.3, help="share of GPUs taken at the start (default 0.3)")
    parser.add_argument("--pods", type=int, default=1500, help="timed pods per server and round (default 1500)")
    parser.add_argument("--warmup", type=int, default=200, help="untimed pods first (default 200)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds over all servers (default 2); medians")
    parser.add_argument("--bind-latency-ms", type=float, default=5.0, help="the API server's bind round trip")
    parser.add_argument("--idle-conns", type=int, default=2,
                        help="idle bind connections the client keeps, as Go's MaxIdleConnsPerHost (default 2)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args)
        return 0
    kinds = [k.strip() for k in args.servers.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in SERVERS]
    if unknown:
        print(f"--servers: unknown {unknown}; choose from {', '.join(SERVERS)}", file=sys.stderr)
        return 2
    missing = [k for k in kinds if not _available(k)]
    for kind in missing:
        print(f"{kind}: not installed, skipped (pip install {kind} uvloop httptools)", file=sys.stderr)
    kinds = [k for k in kinds if k not in missing]
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    load = os.getloadavg()
    for round_ in range(args.rounds):
        for kind in kinds:
            result = drive(kind, args, seed=round_)
            runs[kind].append(result)
            print(f"round {round_ + 1} {kind:8} {result['pods_per_s']:7.1f} pods/s "
                  f"{result['cpu_ms_per_pod']:6.3f} ms CPU/pod", flush=True)
    print(f"\n{args.nodes} nodes, {args.pods} pods x {args.rounds} rounds, bind round trip "
          f"{args.bind_latency_ms:g} ms, {args.idle_conns} idle bind connections kept; load average {load[0]:.1f} before, {os.getloadavg()[0]:.1f} after")
    base = statistics.median(r["cpu_ms_per_pod"] for r in runs[kinds[0]]) if kinds else 0
    print(f"{'server':10} {'pods/s':>8} {'CPU ms/pod':>11} {'vs ' + kinds[0]:>15} {'filter p50/p99 ms':>18} "
          f"{'prioritize p50/p99':>19} {'bind p50/p99':>14}")
    for kind in kinds:
        cpu = statistics.median(r["cpu_ms_per_pod"] for r in runs[kind])
        middle = min(runs[kind], key=lambda r: abs(r["cpu_ms_per_pod"] - cpu))
        row = " ".join(f"{'/'.join(f'{v:.2f}' for v in middle[f'{verb}_ms']):>{w}}"
                       for verb, w in (("filter", 18), ("prioritize", 19), ("bind", 14)))
        print(f"{kind:10} {statistics.median(r['pods_per_s'] for r in runs[kind]):8.1f} {cpu:11.3f} "
              f"{cpu / base:15.2f} {row}")
    best = min(kinds, key=lambda k: statistics.median(r["cpu_ms_per_pod"] for r in runs[k]))
    print(f"least CPU per pod: {best}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
