"""Where the agent's memory goes on a real GPU node, and its CPU at 1 Hz against the real NVML.

1. RSS of a fresh interpreter after each stage: bare, + grpc/protobuf/prometheus_client, + pynvml,
   + nvmlInit, + the agent's reader opened and 10 passes, + the whole agent module graph;
2. the agent itself (``python -m gpufleet.autoscaler.agent``, NVML, 1 Hz, no clients) for ``--seconds``:
   CPU % of a core, RSS, and the mean sampling pass from its own histogram; once with the default
   environment and once with MALLOC_ARENA_MAX=2 (fewer glibc arenas; it made no difference here).

Writes ``--out`` (JSON) and prints a table. With ``--simulate`` it runs against the simulated GPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[2]
#: The entry point the DaemonSet runs (run.sh puts it on PATH).
GPUFLEET = shutil.which("gpufleet") or str(Path(sys.executable).with_name("gpufleet"))


STAGES = r"""
import json, sys
import psutil
def rss():
    memory = psutil.Process().memory_info()
    return {"VmRSS": round(memory.rss / 2**20, 1), "RssAnon": round((memory.rss - memory.shared) / 2**20, 1)}
out = [("bare interpreter", rss())]
import grpc, google.protobuf, prometheus_client
out.append(("+ grpc, protobuf, prometheus_client", rss()))
import pynvml
out.append(("+ import pynvml", rss()))
simulate = sys.argv[1] == "1"
if not simulate:
    pynvml.nvmlInit()
    out.append(("+ nvmlInit", rss()))
    pynvml.nvmlShutdown()
from gpufleet.autoscaler.gpu.nvml import NvmlReader
if simulate:
    from gpufleet.autoscaler.gpu.script import builtin_scenario
    from gpufleet.autoscaler.gpu.simulated import SimulatedNvml
    reader = NvmlReader(SimulatedNvml(builtin_scenario()))
else:
    reader = NvmlReader()
reader.open()
for _ in range(10):
    reader.read_all()
out.append(("+ reader opened, 10 passes", rss()))
import gpufleet.autoscaler.agent.app, gpufleet.autoscaler.agent.cli, gpufleet.autoscaler.agent.pods
from gpufleet.proto.gpufleet.v1 import agent_pb2, agent_pb2_grpc
out.append(("+ agent modules and generated protos", rss()))
print(json.dumps(out))
"""


def proc_stats(pid: int) -> tuple[float, float, int, float]:
    """(cpu seconds, rss MiB, threads, anonymous rss MiB) of a process (psutil)."""
    process = psutil.Process(pid)
    times, memory = process.cpu_times(), process.memory_info()
    return (times.user + times.system, memory.rss / 2**20, process.num_threads(),
            (memory.rss - memory.shared) / 2**20)


def agent_run(seconds: float, extra_env: dict[str, str], simulate: bool, workdir: Path) -> dict[str, Any]:
    ready = workdir / f"ready-{time.monotonic_ns()}.json"
    proc = subprocess.Popen(
        [GPUFLEET, "agent", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
         "--interval", "1", "--pod-resources-socket", "", "--ready-file", str(ready),
         *(["--simulate"] if simulate else [])],
        cwd=ROOT, env={**os.environ, **extra_env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() or not ready.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                return {"error": f"agent exited {proc.returncode} or never got ready"}
            time.sleep(0.05)
        port = json.loads(ready.read_text())["metrics_port"]
        time.sleep(3)
        cpu0, peak, *_ = proc_stats(proc.pid)
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            time.sleep(1.0)
            peak = max(peak, proc_stats(proc.pid)[1])
        cpu1, rss, threads, anon = proc_stats(proc.pid)
        wall = time.monotonic() - t0
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        values = {}
        for line in text.splitlines():
            if line.startswith("gpufleet_agent_sampling_pass_duration_seconds_"):
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        count = values.get("gpufleet_agent_sampling_pass_duration_seconds_count", 0)
        mean_ms = 1000 * values.get("gpufleet_agent_sampling_pass_duration_seconds_sum", 0) / count if count else None
        return {"env": extra_env, "cpu_percent_of_core": 100 * (cpu1 - cpu0) / wall, "rss_mib": rss, "rss_anon_mib": anon,
                "peak_rss_mib": peak, "threads": threads, "mean_pass_ms": mean_ms, "passes": count,
                "seconds": wall}
    finally:
        proc.terminate()
        proc.wait(15)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--simulate", action="store_true")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    stages = subprocess.run([sys.executable, "-c", STAGES, "1" if args.simulate else "0"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    report: dict[str, Any] = {
        "stages_mib": json.loads(stages.stdout) if stages.returncode == 0 else stages.stderr[-3000:],
        "runs": [agent_run(args.seconds, e, args.simulate, Path(args.out).parent)
                 for e in ({}, {"MALLOC_ARENA_MAX": "2"})],
    }
    Path(args.out).write_text(json.dumps(report, indent=1))
    print("RSS after each stage (MiB):")
    for name, mib in report["stages_mib"] if isinstance(report["stages_mib"], list) else []:
        print(f"  {name:45s} rss {mib['VmRSS']:7.1f}  anon {mib['RssAnon']:7.1f}")
    print("agent, 1 Hz, no clients:")
    for run in report["runs"]:
        print("  " + json.dumps(run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
