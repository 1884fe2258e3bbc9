"""A synthetic GPU cluster for the extender benchmarks: real-shaped Node and Pod objects and an
extender over them with no API server (the binder records Bindings in memory).

Nodes cycle through common 8-GPU instance types of the price catalog (A100, H100, A10G, L4), one in
four on spot; pods fill a share of the GPUs with the openb trace's request shapes (whole GPUs and
GPU shares) and carry ``gpufleet.io/gpu-ids``, as pods bound by the extender do.
"""

from __future__ import annotations

import random
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from prometheus_client import CollectorRegistry

from gpufleet.core.clock import SystemClock
from gpufleet.core.pricing import PriceCatalog
from gpufleet.scheduler.extender.metrics import ExtenderMetrics
from gpufleet.scheduler.extender.nodes import parse_node
from gpufleet.scheduler.extender.pods import parse_pod
from gpufleet.scheduler.extender.scoring import Scorer
from gpufleet.scheduler.extender.service import Extender
from gpufleet.scheduler.extender.state import RESOURCES, ClusterState

#: (instance type, nvidia.com/gpu.product, vCPU, memory GiB)
SHAPES = [
    ("p4de.24xlarge", "NVIDIA-A100-SXM4-80GB", 96, 1152),
    ("p5.48xlarge", "NVIDIA-H100-80GB-HBM3", 192, 2048),
    ("g5.48xlarge", "NVIDIA-A10G", 192, 768),
    ("g6.48xlarge", "NVIDIA-L4", 192, 768),
]
#: Request shapes (GPUs, milli per GPU, CPU) and weights, after the openb default trace.
REQUESTS = [((1, 1000, "8"), 40), ((1, 500, "4"), 15), ((1, 250, "2"), 10), ((2, 1000, "16"), 15),
            ((4, 1000, "32"), 12), ((8, 1000, "64"), 8)]
POLICIES = ("fgd", "fgd-strand", "binpack", "spread", "cost")


def node(i: int) -> dict[str, Any]:
    itype, product, cpu, mem = SHAPES[i % len(SHAPES)]
    name = f"gpu-{i:05d}"
    resources = {"cpu": str(cpu), "memory": f"{mem}Gi", "nvidia.com/gpu": "8", "pods": "250"}
    return {
        "metadata": {"name": name, "uid": str(uuid.uuid5(uuid.NAMESPACE_DNS, name)), "resourceVersion": "1",
                     "labels": {"kubernetes.io/hostname": name, "node.kubernetes.io/instance-type": itype,
                                "topology.kubernetes.io/zone": f"us-east-1{'abc'[i % 3]}",
                                "karpenter.sh/capacity-type": "spot" if i % 4 == 3 else "on-demand",
                                "nvidia.com/gpu.product": product, "nvidia.com/gpu.count": "8"},
                     "annotations": {}},
        "spec": {},
        "status": {"capacity": resources, "allocatable": resources},
    }


def pod(name: str, shape: tuple[int, int, str], *, policy: str | None = None, node_name: str = "",
        gpu_ids: str | None = None, namespace: str = "bench") -> dict[str, Any]:
    gpus, milli, cpu = shape
    annotations = {}
    if policy:
        annotations["gpufleet.io/placement"] = policy
    if milli < 1000:
        annotations["gpufleet.io/gpu-milli"] = str(milli)
    if gpu_ids is not None:
        annotations["gpufleet.io/gpu-ids"] = gpu_ids
    spec: dict[str, Any] = {
        "containers": [{"name": "main", "image": "nvcr.io/nvidia/pytorch:25.08-py3",
                        "resources": {"requests": {"cpu": cpu, "memory": "16Gi"},
                                      "limits": {"memory": "16Gi", "nvidia.com/gpu": str(gpus)}}}],
        "schedulerName": "gpufleet-scheduler", "restartPolicy": "Never",
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    }
    if node_name:
        spec["nodeName"] = node_name
    return {"metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid5(uuid.NAMESPACE_DNS, name)),
                         "annotations": annotations, "labels": {"app": "bench"}},
            "spec": spec, "status": {"phase": "Running" if node_name else "Pending"}}


def random_shape(rng: random.Random) -> tuple[int, int, str]:
    shapes, weights = zip(*REQUESTS)
    return rng.choices(shapes, weights)[0]


def running_pods(node_count: int, fill: float, seed: int = 0) -> list[dict[str, Any]]:
    """Pods filling about ``fill`` of the GPUs, each on free GPUs of its node (gpu-ids set)."""
    rng = random.Random(seed)
    free = [[1000] * 8 for _ in range(node_count)]
    target = fill * node_count * 8000
    used = 0
    pods = []
    attempts = 0
    while used < target and attempts < 20 * node_count:
        attempts += 1
        n = rng.randrange(node_count)
        gpus, milli, cpu = random_shape(rng)
        fits = [g for g in range(8) if free[n][g] >= milli]
        if len(fits) < gpus:
            continue
        chosen = rng.sample(fits, gpus) if milli == 1000 else [max(fits, key=lambda g: free[n][g] < 1000)]
        for g in chosen:
            free[n][g] -= milli
        used += gpus * milli
        pods.append(pod(f"run-{len(pods)}", (gpus, milli, cpu), node_name=f"gpu-{n:05d}",
                        gpu_ids=",".join(map(str, sorted(chosen)))))
    return pods


class RecordingBinder:
    """Stands in for the API server: a Binding always succeeds and is counted."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0

    def bind(self, namespace: str, name: str, uid: str, node: str, annotations: dict[str, str]) -> None:
        with self.lock:
            self.count += 1

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return pod(name, (1, 1000, "1"), namespace=namespace)


def cached_extender(node_count: int, fill: float = 0.6, seed: int = 0,
                    registry: CollectorRegistry | None = None) -> tuple[Extender, ExtenderMetrics, list[str]]:
    """An extender whose cache holds ``node_count`` nodes and the pods filling them, synced."""
    catalog = PriceCatalog.default()
    state = ClusterState(clock=SystemClock())
    nodes = [node(i) for i in range(node_count)]
    state.replace_nodes([parse_node(n, catalog) for n in nodes])
    state.replace_pods([parse_pod(p) for p in running_pods(node_count, fill, seed)])
    for resource in RESOURCES:
        state.mark_synced(resource)
    metrics = ExtenderMetrics(registry or CollectorRegistry())
    scorer = Scorer()
    metrics.watch_state(state, lambda: scorer.fragmentation(state))
    extender = Extender(state, scorer, metrics, catalog=catalog, binder=RecordingBinder())
    return extender, metrics, [n["metadata"]["name"] for n in nodes]
