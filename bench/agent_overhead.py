"""CPU and memory of the GPU node agent sampling simulated GPUs (target: 8 GPUs at 1 Hz <= 1% of a
core and <= 60 MB RSS).

Starts ``gpufleet agent --simulate`` (the entry point the DaemonSet runs) as a subprocess for each row,
lets it warm up, then reads its CPU time and RSS (psutil) over ``--seconds``; "peak" is the largest RSS
seen while sampling once a second. Rows: each GPU count of ``--gpus``,
without clients and with one gRPC StreamSamples client plus a Prometheus scrape every 15 s; and a
floor row: an idle interpreter that only imported grpc and prometheus_client.

    .venv/bin/python bench/agent_overhead.py                 # 8 GPUs, 60 s per row
    .venv/bin/python bench/agent_overhead.py --seconds 10 --gpus 1,8,64
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
#: The console script installed next to this interpreter: what the DaemonSet runs.
GPUFLEET = str(Path(sys.executable).with_name("gpufleet"))
sys.path.insert(0, str(ROOT))

TARGET_CPU_PERCENT = 1.0
TARGET_RSS_MB = 60.0
SCRAPE_EVERY_S = 15.0


@dataclass(frozen=True)
class Row:
    label: str
    gpus: int
    clients: bool
    cpu_percent: float
    rss_mb: float
    anon_mb: float
    peak_rss_mb: float
    pass_ms: float | None
    batches_received: int


def proc_stats(pid: int) -> tuple[float, float, float]:
    """(cpu seconds, rss MB, anonymous rss MB) of a process (psutil); MB = 10^6 bytes."""
    process = psutil.Process(pid)
    times, memory = process.cpu_times(), process.memory_info()
    return times.user + times.system, memory.rss / 1e6, (memory.rss - memory.shared) / 1e6


def script_for(gpus: int, directory: Path) -> list[str]:
    """--simulate arguments: the built-in scenario for 8, else its GPUs repeated to ``gpus``."""
    if gpus == 8:
        return ["--simulate"]
    from gpufleet.autoscaler.gpu.script import BUILTIN_SCRIPT

    base = yaml.safe_load(BUILTIN_SCRIPT)
    data = {"name": f"bench-{gpus}", "gpus": [base["gpus"][i % 8] for i in range(gpus)],
            "pods": [p for p in base["pods"] if all(int(str(g).split("/")[0]) < gpus for g in p["gpus"])]}
    path = directory / f"bench-{gpus}.yaml"
    path.write_text(yaml.safe_dump(data))
    return ["--simulate", str(path)]


def start_agent(args: list[str], directory: Path, interval: float) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    ready = directory / f"ready-{time.monotonic_ns()}.json"
    proc = subprocess.Popen(
        [GPUFLEET, "agent", *args, "--listen", "127.0.0.1:0", "--metrics-listen",
         "127.0.0.1:0", "--interval", str(interval), "--ready-file", str(ready)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"starting the agent {args}: it exited with {proc.returncode} or never got ready")
        time.sleep(0.05)
    time.sleep(0.1)  # the file is written in one call, but give the writer a moment
    return proc, json.loads(ready.read_text())


class Clients(threading.Thread):
    """One StreamSamples client, and a /metrics scrape every SCRAPE_EVERY_S."""

    def __init__(self, ports: dict[str, int]) -> None:
        super().__init__(daemon=True)
        import grpc

        from gpufleet.proto.gpufleet.v1 import agent_pb2, agent_pb2_grpc

        self.ports = ports
        self.channel = grpc.insecure_channel(f"127.0.0.1:{ports['grpc_port']}")
        self.stream = agent_pb2_grpc.GpuAgentStub(self.channel).StreamSamples(agent_pb2.StreamSamplesRequest())
        self.received = 0
        self.stop = threading.Event()
        self.scraper = threading.Thread(target=self._scrape, daemon=True)

    def run(self) -> None:
        self.scraper.start()
        import grpc

        try:
            for _ in self.stream:
                self.received += 1
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.CANCELLED:  # cancelled by close() is the normal end
                print(f"  stream failed: {err.code()} {err.details()}", file=sys.stderr)

    def _scrape(self) -> None:
        while not self.stop.wait(SCRAPE_EVERY_S):
            urllib.request.urlopen(f"http://127.0.0.1:{self.ports['metrics_port']}/metrics", timeout=5).read()

    def close(self) -> None:
        self.stop.set()
        self.stream.cancel()
        self.channel.close()


def pass_ms(ports: dict[str, int]) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{ports['metrics_port']}/metrics", timeout=5).read().decode()
    values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    count = values.get("gpufleet_agent_sampling_pass_duration_seconds_count", 0)
    return 1000 * values["gpufleet_agent_sampling_pass_duration_seconds_sum"] / count if count else None


def measure(gpus: int, clients: bool, seconds: float, warmup: float, interval: float, directory: Path) -> Row:
    proc, ports = start_agent(script_for(gpus, directory), directory, interval)
    client = None
    try:
        if clients:
            client = Clients(ports)
            client.start()
        time.sleep(warmup)
        cpu0, peak, _ = proc_stats(proc.pid)
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            time.sleep(max(0.0, min(1.0, seconds - (time.monotonic() - t0))))
            peak = max(peak, proc_stats(proc.pid)[1])
        cpu1, rss, anon = proc_stats(proc.pid)
        peak = max(peak, rss)
        wall = time.monotonic() - t0
        mean_pass = pass_ms(ports)
    finally:
        if client is not None:
            client.close()
        proc.terminate()
        proc.wait(15)
    label = f"{gpus} GPUs @ {1 / interval:g} Hz" + (", 1 stream + scrape/15 s" if clients else ", no clients")
    return Row(label, gpus, clients, 100 * (cpu1 - cpu0) / wall, rss, anon, peak, mean_pass,
               client.received if client else 0)


def floor_row(seconds: float) -> Row:
    code = "import grpc, prometheus_client, time; print('ready', flush=True); time.sleep(3600)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        time.sleep(min(seconds, 3.0))
        _, rss, anon = proc_stats(proc.pid)
        peak = rss
    finally:
        proc.kill()
        proc.wait()
    return Row("floor: python + grpc + prometheus_client, idle", 0, False, 0.0, rss, anon, peak, None, 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measurement window per row (default 60)")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--gpus", default="8", help="comma-separated GPU counts (default 8)")
    parser.add_argument("--interval", type=float, default=1.0, help="sampling period, s (default 1)")
    parser.add_argument("--no-clients-only", action="store_true", help="skip the rows with a stream client")
    args = parser.parse_args()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="gpufleet-bench-") as tmp:
        rows.append(floor_row(args.seconds))
        for gpus in (int(g) for g in args.gpus.split(",")):
            for clients in ((False,) if args.no_clients_only else (False, True)):
                rows.append(measure(gpus, clients, args.seconds, args.warmup, args.interval, Path(tmp)))
                print(f"  measured {rows[-1].label}", file=sys.stderr, flush=True)
    print(f"\nagent overhead, {args.seconds:g} s per row, python {sys.version.split()[0]}, {os.cpu_count()} cores")
    header = (f"{'configuration':52s} {'CPU % core':>10s} {'RSS MB':>8s} {'anon MB':>8s} {'peak MB':>8s} "
              f"{'pass ms':>8s} {'batches':>8s}  target")
    print(header)
    print("-" * len(header))
    for r in rows:
        verdict = ""
        if r.gpus == 8 and abs(args.interval - 1.0) < 1e-9:
            ok = r.cpu_percent <= TARGET_CPU_PERCENT and r.peak_rss_mb <= TARGET_RSS_MB
            verdict = "PASS" if ok else "FAIL"
            verdict += f" (<= {TARGET_CPU_PERCENT:g}% core, <= {TARGET_RSS_MB:g} MB)"
        pass_text = "-" if r.pass_ms is None else f"{r.pass_ms:.3f}"
        print(f"{r.label:52s} {r.cpu_percent:10.3f} {r.rss_mb:8.1f} {r.anon_mb:8.1f} {r.peak_rss_mb:8.1f} "
              f"{pass_text:>8s} "
              f"{r.batches_received:8d}  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
