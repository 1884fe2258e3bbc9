"""Real-GPU check of the agent: what it reads through the real NVML, idle and under load.

Run by ``bench/gpu_check/run.sh`` on a machine with an NVIDIA GPU (needs no network). Steps:

1. time a sampling pass through the real NVML calls (NvmlReader.read_all), and each NVML call alone;
2. start ``gpufleet agent`` (the DaemonSet's entry point) against the real driver (no kubelet), on ephemeral ports;
3. stream samples over gRPC while the GPU idles, then while a PyTorch matmul load runs (skipped,
   and said so, when torch or CUDA is missing), then after it;
4. scrape /metrics during the load and parse it with prometheus_client's parser;
5. write everything to ``--out`` (JSON), including the agent process's CPU time and RSS.

Every step records its error instead of stopping the script, so a partial run still reports.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
import urllib.request
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[2]
#: The entry point the DaemonSet runs (run.sh puts it on PATH).
GPUFLEET = shutil.which("gpufleet") or str(Path(sys.executable).with_name("gpufleet"))
sys.path.insert(0, str(ROOT))

LOAD_SCRIPT = r"""
import sys, time, torch
seconds = float(sys.argv[1])
dev = torch.device("cuda")
hold = torch.empty(int(8 * 2**30) // 2, dtype=torch.bfloat16, device=dev)  # hold 8 GiB
a = torch.randn(8192, 8192, dtype=torch.bfloat16, device=dev)
b = torch.randn(8192, 8192, dtype=torch.bfloat16, device=dev)
torch.cuda.synchronize()
print("LOAD_STARTED", time.time(), flush=True)
n, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < seconds:
    for _ in range(20):
        c = a @ b
    torch.cuda.synchronize()
    n += 20
dt = time.perf_counter() - t0
print("LOAD_DONE", time.time(), n, dt, 2 * 8192**3 * n / dt / 1e12, flush=True)
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


def summary_ms(samples_s: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples_s]
    return {"n": len(ms), "mean_ms": statistics.fmean(ms), "median_ms": statistics.median(ms),
            "p95_ms": percentile(ms, 0.95), "max_ms": max(ms), "min_ms": min(ms)}


def environment() -> dict[str, Any]:
    from importlib import metadata

    env: dict[str, Any] = {"python": sys.version, "platform": platform.platform()}
    for dist in ("nvidia-ml-py", "grpcio", "protobuf", "prometheus-client", "PyYAML", "torch"):
        try:
            env[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            env[dist] = None
    try:
        env["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,name,uuid,driver_version,memory.total,power.limit",
             "--format=csv,noheader"], capture_output=True, text=True, timeout=30, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError) as err:
        env["nvidia_smi"] = f"failed: {err}"
    return env


def nvml_direct(passes: int, simulate: bool) -> dict[str, Any]:
    """Time NvmlReader.read_all and each NVML call it makes, against the real driver."""
    import pynvml

    from gpufleet.autoscaler.gpu.nvml import NvmlReader

    if simulate:  # dry run of this script on a machine without a GPU
        from gpufleet.autoscaler.gpu.script import builtin_scenario
        from gpufleet.autoscaler.gpu.simulated import SimulatedNvml

        api: Any = SimulatedNvml(builtin_scenario())
    else:
        api = pynvml
    reader = NvmlReader(api)
    t = time.perf_counter()
    info = reader.open()
    open_s = time.perf_counter() - t
    devices = reader.devices()
    for _ in range(3):
        reader.read_all()
    times = []
    for _ in range(passes):
        t = time.perf_counter()
        readings = reader.read_all()
        times.append(time.perf_counter() - t)
    # the same passes with every slow read made each time (slow_interval_s=0): the worst case
    full = NvmlReader(api, slow_interval_s=0.0)
    full.open()
    full_times = []
    for _ in range(max(10, passes // 4)):
        t = time.perf_counter()
        full.read_all()
        full_times.append(time.perf_counter() - t)
    full.close()
    result: dict[str, Any] = {
        "read_all_every_read": summary_ms(full_times),
        "driver": info.driver_version, "nvml_version": info.nvml_version, "open_seconds": open_s,
        "devices": [{"index": d.index, "uuid": d.uuid, "model": d.model_name, "memory_total_bytes": d.memory_total_bytes,
                     "pci_bus_id": d.pci_bus_id, "minor": d.minor_number, "power_limit_mw": d.power_limit_milliwatts,
                     "mig_enabled": d.mig_enabled, "mig_devices": len(d.mig_devices)} for d in devices],
        "read_all": summary_ms(times),
        "read_all_per_gpu_mean_ms": statistics.fmean(times) * 1000 / max(1, len(devices)),
        "last_readings": [reading_dict(r) for r in readings],
    }
    # each call alone, on device 0
    h = api.nvmlDeviceGetHandleByIndex(0)
    now_us = int((time.time() - 1) * 1e6)
    calls = {
        "nvmlDeviceGetUtilizationRates": lambda: api.nvmlDeviceGetUtilizationRates(h),
        "nvmlDeviceGetMemoryInfo": lambda: api.nvmlDeviceGetMemoryInfo(h),
        "nvmlDeviceGetPowerUsage": lambda: api.nvmlDeviceGetPowerUsage(h),
        "nvmlDeviceGetTotalEnergyConsumption": lambda: api.nvmlDeviceGetTotalEnergyConsumption(h),
        "nvmlDeviceGetTemperatureV": lambda: api.nvmlDeviceGetTemperatureV(h, pynvml.NVML_TEMPERATURE_GPU),
        "nvmlDeviceGetComputeRunningProcesses": lambda: api.nvmlDeviceGetComputeRunningProcesses(h),
        "nvmlDeviceGetProcessUtilization": lambda: api.nvmlDeviceGetProcessUtilization(h, now_us),
        "nvmlDeviceGetMigMode": lambda: api.nvmlDeviceGetMigMode(h),
    }
    per_call: dict[str, Any] = {}
    for name, call in calls.items():
        outcome, durations = "ok", []
        for _ in range(50):
            t = time.perf_counter()
            try:
                call()
            except pynvml.NVMLError as err:
                outcome = type(err).__name__
            durations.append(time.perf_counter() - t)
        per_call[name] = {"outcome_last": outcome, **summary_ms(durations)}
    result["per_call_device0"] = per_call
    reader.close()
    return result


def reading_dict(r: Any) -> dict[str, Any]:
    return {"uuid": r.uuid, "index": r.index, "health": r.health.value, "util": r.gpu_util_percent,
            "mem_util": r.mem_util_percent, "memory_used_mib": None if r.memory_used_bytes is None
            else r.memory_used_bytes // 2**20, "power_w": r.power_watts, "energy_mj": r.energy_millijoules,
            "temp_c": r.temperature_celsius, "processes": [vars_of(p) for p in r.processes], "errors": list(r.errors)}


def vars_of(p: Any) -> dict[str, Any]:
    return {"pid": p.pid, "used_memory_mib": None if p.used_memory_bytes is None else p.used_memory_bytes // 2**20,
            "sm_util": p.sm_util_percent, "mem_util": p.mem_util_percent}


def proc_stats(pid: int) -> tuple[float, int]:
    """(cpu seconds, rss bytes) of a process (psutil)."""
    process = psutil.Process(pid)
    times = process.cpu_times()
    return times.user + times.system, process.memory_info().rss


class Stream(threading.Thread):
    """Collects every SampleBatch with the phase it arrived in."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        import grpc

        from gpufleet.proto.gpufleet.v1 import agent_pb2, agent_pb2_grpc

        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = agent_pb2_grpc.GpuAgentStub(self.channel)
        self.request = agent_pb2.StreamSamplesRequest(replay=0)
        self.phase = "idle"
        self.batches: list[tuple[str, float, Any]] = []
        self.error: str | None = None

    def run(self) -> None:
        import grpc

        try:
            for batch in self.stub.StreamSamples(self.request):
                self.batches.append((self.phase, time.time(), batch))
        except grpc.RpcError as err:  # cancelled at the end, or a real failure
            if err.code() != grpc.StatusCode.CANCELLED:
                self.error = f"{err.code()}: {err.details()}"


def batch_dict(phase: str, batch: Any) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    return {"phase": phase, **MessageToDict(batch, preserving_proto_field_name=True)}


def phase_summary(batches: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for phase in ("idle", "load", "after"):
        chosen = [b for b in batches if b["phase"] == phase]
        gpus: dict[str, dict[str, list[float]]] = {}
        for b in chosen:
            for g in b.get("gpus", []):
                acc = gpus.setdefault(g["uuid"], {"util": [], "mem_mib": [], "power_w": [], "procs": []})
                acc["util"].append(float(g.get("gpu_util_percent", 0)))
                acc["mem_mib"].append(int(g.get("memory_used_bytes", 0)) / 2**20)
                acc["power_w"].append(float(g.get("power_watts", 0)))
                acc["procs"].append(len(g.get("processes", [])))
        out[phase] = {
            "batches": len(chosen),
            "gpus": {u: {k: {"min": min(v), "mean": statistics.fmean(v), "max": max(v)} for k, v in acc.items() if v}
                     for u, acc in gpus.items()},
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--passes", type=int, default=200)
    parser.add_argument("--idle", type=float, default=8.0)
    parser.add_argument("--load", type=float, default=20.0)
    parser.add_argument("--after", type=float, default=5.0)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--simulate", action="store_true", help="dry run against the built-in simulated GPUs")
    args = parser.parse_args()
    report: dict[str, Any] = {"started": time.time(), "errors": []}

    def step(name: str, fn: Any) -> Any:
        print(f"== {name}", flush=True)
        try:
            value = fn()
            report[name] = value
            return value
        except Exception:  # noqa: BLE001 - every step's failure is recorded and the check goes on
            report["errors"].append({"step": name, "traceback": traceback.format_exc()})
            print(traceback.format_exc(), flush=True)
            return None

    def save() -> None:
        Path(args.out).write_text(json.dumps(report, indent=1, default=str))

    step("environment", environment)
    step("nvml_direct", lambda: nvml_direct(args.passes, args.simulate))
    save()

    ready = Path(args.out).with_name("agent-ready.json")
    ready.unlink(missing_ok=True)
    agent_log = open(Path(args.out).with_name("agent.log"), "w")  # noqa: SIM115 - closed in the finally below
    agent = subprocess.Popen(
        [GPUFLEET, "-v", "agent", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
         "--interval", str(args.interval), "--pod-resources-socket", "", "--ready-file", str(ready),
         *(["--simulate"] if args.simulate else [])],
        cwd=ROOT, stdout=agent_log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.time() + 60
        while not ready.exists() and time.time() < deadline and agent.poll() is None:
            time.sleep(0.1)
        if not ready.exists():
            report["errors"].append({"step": "agent_start", "exit": agent.poll()})
            save()
            return 1
        ports = json.loads(ready.read_text())
        report["agent_ports"] = ports
        cpu0, _ = proc_stats(agent.pid)
        t_cpu0 = time.monotonic()

        def inventory() -> Any:
            from google.protobuf.json_format import MessageToDict

            from gpufleet.proto.gpufleet.v1 import agent_pb2

            stream_probe = Stream(ports["grpc_port"])
            return MessageToDict(stream_probe.stub.GetInventory(agent_pb2.GetInventoryRequest(), timeout=10),
                                 preserving_proto_field_name=True)

        step("inventory", inventory)
        stream = Stream(ports["grpc_port"])
        stream.start()
        time.sleep(args.idle)

        load_info: dict[str, Any] = {}
        try:
            import torch  # noqa: F401

            has_torch = True
        except ImportError:
            has_torch = False
        if has_torch:
            stream.phase = "load-starting"
            load = subprocess.Popen([sys.executable, "-c", LOAD_SCRIPT, str(args.load)], stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
            assert load.stdout is not None
            scraped = False
            for line in load.stdout:
                if line.startswith("LOAD_STARTED"):
                    stream.phase = "load"
                    load_info["pid"] = load.pid
                    load_info["started"] = float(line.split()[1])
                    threading.Timer(args.load / 2, lambda: step("metrics_during_load", lambda: scrape(ports))).start()
                    scraped = True
                elif line.startswith("LOAD_DONE"):
                    _, _, n, dt, tflops = line.split()
                    load_info.update(matmuls=int(n), seconds=float(dt), tflops=float(tflops))
                    stream.phase = "after"
                else:
                    load_info.setdefault("output", []).append(line.rstrip())
            load.wait()
            load_info["exit"] = load.returncode
            load_info["scraped"] = scraped
            stream.phase = "after"
        else:
            load_info["skipped"] = "PyTorch is not installed here: no GPU load was run"
            stream.phase = "after"
        report["load"] = load_info
        time.sleep(args.after)
        step("healthz", lambda: json.loads(urllib.request.urlopen(
            f"http://127.0.0.1:{ports['metrics_port']}/healthz", timeout=5).read()))
        if "metrics_during_load" not in report:
            step("metrics_during_load", lambda: scrape(ports))
        cpu1, rss = proc_stats(agent.pid)
        wall = time.monotonic() - t_cpu0
        report["agent_process"] = {"cpu_seconds": cpu1 - cpu0, "wall_seconds": wall,
                                   "cpu_percent_of_core": 100 * (cpu1 - cpu0) / wall, "rss_mib": rss / 2**20,
                                   "interval_s": args.interval,
                                   "note": "includes serving one gRPC stream and the scrapes"}
        stream.channel.close()
        batches = [batch_dict(phase, b) for phase, _, b in stream.batches]
        report["stream_error"] = stream.error
        report["samples_summary"] = phase_summary(batches)
        report["samples"] = batches
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            report["agent_exit"] = agent.wait(timeout=15)
        except subprocess.TimeoutExpired:
            agent.kill()
            report["agent_exit"] = "killed after 15 s"
        agent_log.close()
        report["finished"] = time.time()
        save()
    print("agent process:", json.dumps(report.get("agent_process")))
    print("load:", json.dumps({k: v for k, v in report.get("load", {}).items() if k != "output"}))
    for phase, data in (report.get("samples_summary") or {}).items():
        for uuid, acc in data["gpus"].items():
            means = {k: round(v["mean"], 1) for k, v in acc.items()}
            maxes = {k: round(v["max"], 1) for k, v in acc.items()}
            print(f"{phase:6s} batches={data['batches']:3d} {uuid[:12]} mean={means} max={maxes}")
    print("nvml read_all (slow reads every 5 s):", json.dumps(report.get("nvml_direct", {}).get("read_all")))
    print("nvml read_all (every read, every pass):",
          json.dumps(report.get("nvml_direct", {}).get("read_all_every_read")))
    print("nvml per call:", json.dumps({k: (v["outcome_last"], round(v["median_ms"], 4))
                                        for k, v in report.get("nvml_direct", {}).get("per_call_device0", {}).items()}))
    print("agent exit:", report.get("agent_exit"), "stream error:", report.get("stream_error"))
    print("errors:", json.dumps(report["errors"])[:3000])
    return 0 if not report["errors"] else 1


def scrape(ports: dict[str, int]) -> dict[str, Any]:
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{ports['metrics_port']}/metrics", timeout=5).read().decode()
    keep: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        if family.name.startswith(("DCGM_", "gpufleet_agent_gpu_", "gpufleet_agent_process_",
                                   "gpufleet_agent_sampling_pass", "gpufleet_agent_nvml")):
            keep[family.name] = [{"labels": s.labels, "value": s.value, "name": s.name} for s in family.samples]
    return {"families": len(keep), "bytes": len(text), "series": keep}


if __name__ == "__main__":
    sys.exit(main())
