"""What the extender's Kubernetes client path costs per pod in CPU, this tree against a baseline
revision, side by side in one run against a running API server (e.g. `gpufleet cluster up --nodes 0`):

    python bench/kube_client_cost.py --kubeconfig /tmp/x/kubeconfig [--pods 2000] [--baseline REV]

Per pod the extender posts one Binding and reads the pod's watch events into its pod sink. The run
makes a namespace and pods/8 Nodes without a kubelet (nothing runs; no kwok annotation), creates the
pods with a schedulerName nobody serves, binds each (with its ``gpufleet.io/gpu-ids``, alternately
through the baseline's ``KubernetesAPI`` and this tree's, so both meet the same server load) and
then writes each pod's status as a kubelet would (phase Running, conditions, IPs: a status-only
event). Two pod watches, one per client, feed their own revision's ``PodSink``. Reported: CPU of
the calling thread per Binding POST and per watch event (stream, decode, sink), medians and means.
The baseline's ``gpufleet/core/kube/client.py`` and ``scheduler/extender/informer.py`` are read with
``git show REV:PATH``. Removes the namespace and the Nodes afterwards.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import subprocess
import sys
import threading
import time
import types
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from gpufleet.core.kube import client as current_client
from gpufleet.core.pricing import PriceCatalog
from gpufleet.scheduler.extender import informer as current_informer
from gpufleet.scheduler.extender.state import ClusterState
from gpufleet.scheduler.localcluster.nodes import KWOK_ANNOTATION, uniform_nodes

EVENTS_PER_POD = 3  # ADDED, MODIFIED by the Binding, MODIFIED by the status write


def load_at(rev: str, path: str) -> types.ModuleType:
    """The module at ``path`` as it was at git revision ``rev`` (not registered in sys.modules)."""
    source = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout
    module = types.ModuleType(f"baseline_{Path(path).stem}")
    module.__file__ = f"{rev}:{path}"
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


@dataclasses.dataclass
class Side:
    name: str
    api: Any
    state: ClusterState
    sink: Any
    bind_cpu_s: list[float] = dataclasses.field(default_factory=list)
    watch_cpu_s: float = 0.0
    events: int = 0
    error: Exception | None = None

    def watch(self, path: str, version: str, expected: int, ready: threading.Event) -> None:
        started = time.thread_time()
        try:
            events = self.api.watch(path, version, 600)
            ready.set()
            for kind, obj in events:
                if kind != "BOOKMARK":
                    self.sink.apply(kind, obj)
                    self.events += 1
                if self.events >= expected:
                    break
        except Exception as err:  # noqa: BLE001 (reported by the main thread)
            self.error = err
        finally:
            ready.set()
            self.watch_cpu_s = time.thread_time() - started


def pod(name: str, scheduler: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "annotations": {"gpufleet.io/placement": "fgd"}},
            "spec": {"schedulerName": scheduler, "terminationGracePeriodSeconds": 0,
                     "automountServiceAccountToken": False, "enableServiceLinks": False,
                     "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10", "resources": {
                         "requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"nvidia.com/gpu": "1"}}}]}}


def running_status(index: int) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ip = f"10.{index // 65536 % 256}.{index // 256 % 256}.{index % 256}"
    return {"status": {
        "phase": "Running", "hostIP": "10.255.0.1", "podIP": ip, "podIPs": [{"ip": ip}], "startTime": now,
        "conditions": [{"type": t, "status": "True", "lastTransitionTime": now}
                       for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
        "containerStatuses": [{"name": "main", "ready": True, "restartCount": 0, "started": True,
                               "image": "registry.k8s.io/pause:3.10", "imageID": "", "containerID": "fake://main",
                               "state": {"running": {"startedAt": now}}}]}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--pods", type=int, default=2000)
    parser.add_argument("--baseline", default="b05fc02", help="git revision to compare with (default b05fc02)")
    args = parser.parse_args(argv)
    old_client = load_at(args.baseline, "gpufleet/core/kube/client.py")
    old_informer = load_at(args.baseline, "scheduler/extender/informer.py")
    setup = current_client.KubernetesAPI.connect(str(args.kubeconfig))
    run_id = uuid.uuid4().hex[:6]
    namespace = f"gpufleet-kc-{run_id}"
    node_names = [f"gpufleet-kc-{run_id}-{i:04d}" for i in range((args.pods + 7) // 8)]
    pods = [f"p-{i:05d}" for i in range(args.pods)]
    sides = []
    for name, client_module, informer_module in (("baseline " + args.baseline, old_client, old_informer),
                                                 ("this tree", current_client, current_informer)):
        api = client_module.KubernetesAPI.connect(str(args.kubeconfig))
        state = ClusterState()
        sides.append(Side(name, api, state, informer_module.PodSink(state)))
    try:
        setup.post("/api/v1/namespaces", {"metadata": {"name": namespace}})
        for node_name, spec in zip(node_names, uniform_nodes(len(node_names)), strict=True):
            manifest = dataclasses.replace(spec, name=node_name).manifest()
            del manifest["metadata"]["annotations"][KWOK_ANNOTATION]
            setup.post("/api/v1/nodes", manifest)
        nodes, _ = setup.list("nodes")
        ours = [n for n in nodes if n["metadata"]["name"].startswith(f"gpufleet-kc-{run_id}-")]
        for side in sides:
            current_informer.NodeSink(side.state, PriceCatalog.default()).replace(ours)
        pods_path = f"/api/v1/namespaces/{namespace}/pods"
        _, version = setup.list(pods_path)
        threads = []
        for side in sides:
            ready = threading.Event()
            thread = threading.Thread(target=side.watch, args=(pods_path, version, EVENTS_PER_POD * args.pods, ready),
                                      daemon=True)
            thread.start()
            ready.wait(30)
            threads.append(thread)
        started = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda name: setup.post(pods_path, pod(name, f"nobody-{run_id}")), pods))
        uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in setup.list(pods_path)[0]}
        for i, name in enumerate(pods):
            side = sides[i % 2]
            before = time.thread_time()
            side.api.bind(namespace, name, uids[name], node_names[i // 8], {"gpufleet.io/gpu-ids": str(i % 8)})
            side.bind_cpu_s.append(time.thread_time() - before)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda i: setup.patch(f"{pods_path}/{pods[i]}/status", running_status(i)), range(len(pods))))
        for thread in threads:
            thread.join(120)
        elapsed = time.monotonic() - started
    finally:
        for side in sides:
            side.api.close()
        setup.delete(f"/api/v1/namespaces/{namespace}")
        for node_name in node_names:
            setup.delete(f"/api/v1/nodes/{node_name}")
        setup.close()
    for side in sides:
        if side.error is not None or side.events < EVENTS_PER_POD * args.pods:
            raise SystemExit(f"{side.name}: watch saw {side.events} of {EVENTS_PER_POD * args.pods} events "
                             f"({side.error!r})")
    print(f"{args.pods} pods, {len(node_names)} nodes, {elapsed:.1f} s; CPU of the calling thread, microseconds")
    print(f"{'':24} {'bind p50':>9} {'bind mean':>10} {'watch event':>12} {'events':>7} {'per pod':>8}")
    per_pod = {}
    for side in sides:
        bind_mean = statistics.fmean(side.bind_cpu_s)
        event = side.watch_cpu_s / max(side.events, 1)
        per_pod[side.name] = bind_mean + event * side.events / args.pods
        print(f"{side.name:24} {1e6 * statistics.median(side.bind_cpu_s):9.0f} {1e6 * bind_mean:10.0f} "
              f"{1e6 * event:12.0f} {side.events:7d} {1e6 * per_pod[side.name]:8.0f}")
    old, new = per_pod.values()
    print(f"bind + {EVENTS_PER_POD} events per pod: {1e6 * old:.0f} -> {1e6 * new:.0f} us ({new / old:.0%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
