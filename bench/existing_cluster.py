"""A throughput run against a cluster someone else runs (``--kubeconfig``): a kind cluster with kwok,
the local cluster started separately (`gpufleet cluster up`), or a real one.

It creates and removes only its own objects: a namespace ``gpufleet-bench-<id>`` and ``nodes`` fake
kwok nodes ``gpufleet-bench-<id>-NNNNN`` (annotation ``kwok.x-k8s.io/node: fake``, so kwok plays their
kubelets; labelled ``gpufleet.io/bench=<id>`` and tainted ``gpufleet.io/bench=<id>:NoSchedule``, so no
other workload lands on them, and the bench pods select and tolerate exactly them). The scheduler
cannot be stopped there, so the nodes are created cordoned (``spec.unschedulable``), the pods are
queued against them (kube-scheduler finds no node and parks them), and the nodes are then opened by
concurrent patches, one per node rather than one per pod, so the client is not what is measured;
binds are timed through a pod watch. What kube-scheduler and the extender cost cannot be seen from
outside, so a run reports pods/s and the open-to-bind latency only.
"""

from __future__ import annotations

import copy
import dataclasses
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpufleet.scheduler.localcluster.bindwatch import BindWatch
from gpufleet.scheduler.localcluster.nodes import create_nodes, uniform_nodes
from gpufleet.scheduler.localcluster.podloader import PodLoader

LABEL = "gpufleet.io/bench"


@dataclass(frozen=True)
class ExistingRun:
    nodes: int
    pods: int
    bound: int
    pods_per_s: float  # first to last bind
    seconds: float  # opening the nodes to the last bind
    open_s: float  # opening every node took this long (binds start before it ends)
    latency_s: dict[float, float]  # first node opened -> bound
    namespace: str
    nodes_used: frozenset[str] = frozenset()  # where the pods were bound


def _node_specs(count: int, run_id: str) -> list[Any]:
    return [dataclasses.replace(s, name=f"gpufleet-bench-{run_id}-{i:05d}") for i, s in enumerate(uniform_nodes(count))]


def _mark(manifest: dict[str, Any], run_id: str) -> dict[str, Any]:
    manifest = copy.deepcopy(manifest)
    manifest["metadata"]["labels"][LABEL] = run_id
    manifest["spec"]["taints"] = [{"key": LABEL, "value": run_id, "effect": "NoSchedule"}]
    manifest["spec"]["unschedulable"] = True
    return manifest


def _ours(pod: dict[str, Any], run_id: str) -> dict[str, Any]:
    pod = copy.deepcopy(pod)
    spec = pod["spec"]
    spec["nodeSelector"] = {LABEL: run_id}
    spec["tolerations"] = [{"key": LABEL, "operator": "Equal", "value": run_id, "effect": "NoSchedule"}]
    return pod


class _MarkedCore:
    """The CoreV1Api with ``create_node`` adding this run's label and taint (``create_nodes`` makes
    the manifests from NodeSpecs)."""

    def __init__(self, core: Any, run_id: str) -> None:
        self._core = core
        self._run_id = run_id

    def create_node(self, body: dict[str, Any]) -> Any:
        return self._core.create_node(body=_mark(body, self._run_id), _preload_content=False).data


def run_existing(kubeconfig: Path, nodes: int, pods: list[dict[str, Any]], say: Callable[[str], None],
                 timeout_s: float = 1800.0, workers: int = 16) -> ExistingRun:
    """Cordoned fake nodes and pods in a namespace of their own, the nodes opened at once, binds
    timed; everything this run made is removed again, also on failure."""
    run_id = uuid.uuid4().hex[:6]
    namespace = f"gpufleet-bench-{run_id}"
    with PodLoader(kubeconfig, workers=workers) as loader:
        core = loader.core
        try:
            say(f"[existing cluster] creating {nodes} cordoned kwok nodes gpufleet-bench-{run_id}-* and "
                f"namespace {namespace}")
            specs = _node_specs(nodes, run_id)
            create_nodes(_MarkedCore(core, run_id), specs, workers=workers)
            loader.ensure_namespace(namespace)
            say(f"[existing cluster] queueing {len(pods):,} pods")
            loader.create(namespace, [_ours(p, run_id) for p in pods], progress=lambda line: None)
            watch = BindWatch(core, namespace).start()
            try:
                def open_node(name: str) -> None:
                    reply = core.patch_node(name, {"spec": {"unschedulable": False}}, _preload_content=False)
                    _ = reply.data  # drain it, so the connection goes back to the pool

                say(f"[existing cluster] opening the nodes ({workers} at a time)")
                started = time.monotonic()
                with ThreadPoolExecutor(workers) as pool:
                    list(pool.map(open_node, [s.name for s in specs]))
                open_s = time.monotonic() - started
                _wait(watch, len(pods), timeout_s, say)
                times = watch.times()
            finally:
                watch.stop()
            used = frozenset(p["spec"].get("nodeName") for p in loader.list_pods(namespace) if p["spec"].get("nodeName"))
            binds = sorted(times.values())
            span = binds[-1] - binds[0] if len(binds) > 1 else float("nan")
            waits = sorted(t - started for t in times.values())
            return ExistingRun(
                nodes=nodes, pods=len(pods), bound=len(times),
                pods_per_s=(len(binds) - 1) / span if span and span > 0 else float("nan"),
                seconds=(binds[-1] - started) if binds else float("nan"), open_s=open_s,
                latency_s={q: waits[min(len(waits) - 1, int(q * len(waits)))] for q in (0.5, 0.9, 0.99)} if waits
                else {}, namespace=namespace, nodes_used=used)
        finally:
            say(f"[existing cluster] removing namespace {namespace} and the {nodes} nodes")
            loader.delete_namespace(namespace, timeout_s=300)
            core.delete_collection_node(label_selector=f"{LABEL}={run_id}", _preload_content=False).data  # noqa: B018


def _wait(watch: BindWatch, count: int, timeout_s: float, say: Callable[[str], None], stall_s: float = 60.0) -> None:
    """Until every pod is bound, nothing was bound for ``stall_s``, or ``timeout_s`` passed."""
    deadline = time.monotonic() + timeout_s
    last, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        bound = watch.count
        if bound >= count:
            return
        if bound != last:
            last, last_change = bound, time.monotonic()
        elif time.monotonic() - last_change > stall_s:
            say(f"[existing cluster] {bound}/{count} bound, none for {stall_s:.0f} s; stopping")
            return
        time.sleep(0.2)
    say(f"[existing cluster] {watch.count}/{count} bound after {timeout_s:.0f} s; stopping")
