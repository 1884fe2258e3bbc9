"""The reclaim controller on the local control plane: action delay after the notice, and cost at fleet size.

Needs a running local cluster (``gpufleet cluster up --nodes 4 --no-extender``). Two parts, one table each:

- ``latency``: W one-GPU Deployments on idle GPUs (kwok nodes, fake kubelets mirroring the API server,
  one simulated agent process for all nodes), namespace opted in to scale-to-zero, the controller as a
  subprocess with its default pass interval and sample buckets (window and notice shortened). Delay = the
  time of the successful scale write - (notice-at + notice), as the controller logs it (``delay_s``).
  Target: p99 <= 60 s.
- ``fleet``: N simulated nodes x 8 GPUs at 1 Hz on one agent port, N x 8 Pending pods (never scheduled)
  opted in to ``report``; the controller's CPU and RSS over ``--seconds`` after a warm-up, its batches/s
  against what the agents sent, and its pass duration. Target: 1,000 x 8 at 1 Hz, <= 1 core, <= 300 MiB.

    .venv/bin/python bench/controller_reclaim.py --kubeconfig /tmp/c/kubeconfig latency --workloads 32
    .venv/bin/python bench/controller_reclaim.py --kubeconfig /tmp/c/kubeconfig fleet --nodes 100 --seconds 60
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import yaml

from gpufleet.autoscaler.agent.fleet import FleetAgent
from gpufleet.core import names
from gpufleet.core.clock import SystemClock
from gpufleet.core.kube.client import KubernetesAPI
from gpufleet.core.kube.errors import KubeAPIError

NOTICE_S = 20.0


def controller(kubeconfig: str, tmp: Path, config: dict[str, Any], port: int, lease_ns: str) -> subprocess.Popen:
    path = tmp / "controller.yaml"
    path.write_text(yaml.safe_dump(config))
    with open(tmp / "controller.log", "w") as log:
        return subprocess.Popen([sys.executable, "-m", "gpufleet.cli", "-v", "controller", "--kubeconfig", kubeconfig,
                                 "--config", str(path), "--agents", f"127.0.0.1:{port}", "--identity", "bench",
                                 "--lease-namespace", lease_ns, "--metrics-listen", "127.0.0.1:0",
                                 "--ready-file", str(tmp / "ready.json")], stdout=log, stderr=subprocess.STDOUT)


def ensure_namespace(api: KubernetesAPI, name: str, mode: str | None) -> None:
    try:
        api.post("/api/v1/namespaces", {"metadata": {"name": name,
                                                     "annotations": {names.RECLAIM: mode} if mode else {}}})
    except KubeAPIError as err:
        if err.status != 409:
            raise


def delete_namespace(api: KubernetesAPI, name: str) -> None:
    api.delete(f"/api/v1/namespaces/{name}")
    end = time.monotonic() + 120
    while time.monotonic() < end and api.get(f"/api/v1/namespaces/{name}") is not None:
        time.sleep(1)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q / 100 * len(ordered) + 0.5)) - 1))]


def latency(api: KubernetesAPI, args: argparse.Namespace, tmp: Path) -> None:
    from kubernetes import client
    from kubernetes import config as kconfig

    from gpufleet.autoscaler.kubelet.mirror import Mirror

    nodes = sorted(n["metadata"]["name"] for n in api.list("nodes")[0])[: (args.workloads + 7) // 8]
    sockets = {node: str(tmp / f"{node}.sock") for node in nodes}
    mirror = Mirror(client.CoreV1Api(kconfig.new_client_from_config(config_file=args.kubeconfig)), sockets, 8)
    mirror.start()
    stop = threading.Event()
    threading.Thread(target=mirror.refresh_until, args=(stop, 1.0), daemon=True).start()
    script = tmp / "idle.yaml"
    script.write_text(yaml.safe_dump({"version": 1, "gpus": [{"preset": "held-idle"}] * 8}))
    fleet = FleetAgent(str(script), nodes, SystemClock(), 1.0, str(tmp / "{node}.sock"), 2.0, 120)
    port = fleet.start("127.0.0.1:0")
    ns, lease_ns = "bench-reclaim", "bench-reclaim-system"
    delete_namespace(api, ns)  # a previous run's, still terminating
    ensure_namespace(api, ns, "scale-to-zero")
    ensure_namespace(api, lease_ns, None)
    for i in range(args.workloads):
        labels = {"app": f"w{i}"}
        api.post(f"/apis/apps/v1/namespaces/{ns}/deployments", {
            "metadata": {"name": f"w{i}"},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels, "annotations": {names.GPU_IDS: str(i % 8)}},
                "spec": {"nodeName": nodes[i // 8], "tolerations": [{"operator": "Exists"}],
                         "terminationGracePeriodSeconds": 0,
                         "containers": [{"name": "m", "image": "x", "resources": {"limits": {names.GPU_RESOURCE: "1"}}}]}}}})
    config = {"reclaim": {"policy": "window", "graceSeconds": 0, "noticeSeconds": NOTICE_S,
                          "window": {"windowSeconds": 10}, "detection": {"minIdleSeconds": 0}},
              "budget": {"maxActions": 10000, "maxPercent": 100}}
    proc = controller(args.kubeconfig, tmp, config, port, lease_ns)
    ps = psutil.Process(proc.pid)
    started = time.monotonic()
    peak = 0.0
    cpu = ps.cpu_times()
    try:
        while time.monotonic() - started < args.timeout:
            zero = [d for d in api.list(f"/apis/apps/v1/namespaces/{ns}/deployments")[0] if d["spec"].get("replicas") == 0]
            cpu = ps.cpu_times()
            peak = max(peak, ps.memory_info().rss / 2**20)
            if len(zero) == args.workloads:
                break
            time.sleep(1)
    finally:
        proc.terminate()
        proc.wait(10)
        fleet.stop()
        stop.set()
        mirror.stop()
        delete_namespace(api, ns)
        delete_namespace(api, lease_ns)
    # the controller logs each action's delay after the notice, measured on its own clock
    delays = [float(m) for m in re.findall(r"result=done .*? delay_s=([0-9.]+)", (tmp / "controller.log").read_text())]
    print(f"latency: {len(zero)}/{args.workloads} Deployments scaled to 0, {len(delays)} actions logged; "
          f"pass interval 5 s, bucket 60 s (defaults), notice {NOTICE_S:g} s, window 10 s")
    print("| workloads | p50 delay s | p99 delay s | max delay s | controller CPU s | controller peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    if delays:
        print(f"| {args.workloads} | {statistics.median(delays):.1f} | {percentile(delays, 99):.1f} | "
              f"{max(delays):.1f} | {cpu.user + cpu.system:.1f} | {peak:.0f} |")


def fleet_cost(api: KubernetesAPI, args: argparse.Namespace, tmp: Path) -> None:
    ns, lease_ns = "bench-fleet", "bench-fleet-system"
    presets = ["held-idle", "busy", "bursty", "idle", "held-idle", "busy", "held-idle", "bursty"]
    script = tmp / "fleet.yaml"
    script.write_text(yaml.safe_dump({"version": 1, "gpus": [{"preset": p} for p in presets], "pods": [
        {"namespace": ns, "pod": "{node}-g%d" % i, "container": "m", "gpus": [i]} for i in range(8)]}))
    nodes = [f"sim-{i:05d}" for i in range(args.nodes)]
    fleet = FleetAgent(str(script), nodes, SystemClock(), 1.0, None, 5.0, 60)
    port = fleet.start("127.0.0.1:0")
    ensure_namespace(api, ns, "report")
    ensure_namespace(api, lease_ns, None)
    made = time.monotonic()
    for node in nodes:
        for i in range(8):
            try:
                api.post(f"/api/v1/namespaces/{ns}/pods", {"metadata": {"name": f"{node}-g{i}"}, "spec": {
                    "schedulerName": "none", "containers": [{"name": "m", "image": "x"}]}})
            except KubeAPIError as err:
                if err.status != 409:
                    raise
    print(f"fleet: {args.nodes * 8} pods created in {time.monotonic() - made:.0f} s", file=sys.stderr)
    config = {"reclaim": {"graceSeconds": 0}, "agents": {"replay": 0}}
    proc = controller(args.kubeconfig, tmp, config, port, lease_ns)
    ps = psutil.Process(proc.pid)
    try:
        while not (tmp / "ready.json").exists():
            time.sleep(0.5)
        metrics_port = json.loads((tmp / "ready.json").read_text())["metrics_port"]
        time.sleep(args.warmup)

        def scrape() -> dict[str, float]:
            text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
            out = {}
            for line in text.splitlines():
                if line.startswith(("gpufleet_controller_agent_batches_total ", "gpufleet_controller_pass_duration_"
                                    "seconds_sum", "gpufleet_controller_pass_duration_seconds_count",
                                    "gpufleet_reclaim_opted_in_gpus ")):
                    key, value = line.rsplit(" ", 1)
                    out[key.split("{")[0]] = float(value)
            return out

        before, cpu0, t0 = scrape(), ps.cpu_times(), time.monotonic()
        peak = 0.0
        while time.monotonic() - t0 < args.seconds:
            peak = max(peak, ps.memory_info().rss / 2**20)
            time.sleep(1)
        after, cpu1, t1 = scrape(), ps.cpu_times(), time.monotonic()
    finally:
        proc.terminate()
        proc.wait(10)
        fleet.stop()
        delete_namespace(api, ns)
        delete_namespace(api, lease_ns)
    wall = t1 - t0
    cores = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / wall
    batches = (after["gpufleet_controller_agent_batches_total"] - before["gpufleet_controller_agent_batches_total"]) / wall
    passes = after["gpufleet_controller_pass_duration_seconds_count"] - before["gpufleet_controller_pass_duration_seconds_count"]
    pass_s = (after["gpufleet_controller_pass_duration_seconds_sum"] - before["gpufleet_controller_pass_duration_seconds_sum"]) / max(passes, 1)
    print("| nodes x GPUs | opted-in GPUs | agent batches/s sent | controller batches/s | agent lag s | controller cores "
          "| peak RSS MiB | mean pass s |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {args.nodes} x 8 | {after.get('gpufleet_reclaim_opted_in_gpus', 0):.0f} | {args.nodes:.0f} (1 Hz) | "
          f"{batches:.0f} | {fleet.lag_s:.1f} | {cores:.2f} | {peak:.0f} | {pass_s:.2f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    sub = parser.add_subparsers(dest="part", required=True)
    lat = sub.add_parser("latency")
    lat.add_argument("--workloads", type=int, default=32)
    lat.add_argument("--timeout", type=float, default=240)
    fl = sub.add_parser("fleet")
    fl.add_argument("--nodes", type=int, default=100)
    fl.add_argument("--seconds", type=float, default=60)
    fl.add_argument("--warmup", type=float, default=30)
    args = parser.parse_args()
    api = KubernetesAPI.connect(args.kubeconfig)
    tmp = Path(tempfile.mkdtemp(prefix="gpufleet-bench-ctl-"))
    try:
        (latency if args.part == "latency" else fleet_cost)(api, args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
