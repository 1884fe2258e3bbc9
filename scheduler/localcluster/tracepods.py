"""Trace pods as Kubernetes Pods: the simulator's pod order for a set of nodes, which pods opt in
to gpufleet, and the Pod manifest of each. No I/O here beyond reading the trace CSV.

A pod of the trace becomes one container (the pause image; kwok never runs it) requesting its CPU
and memory, with ``limits: nvidia.com/gpu: N`` when it asks for whole GPUs. A GPU share
(``gpu_milli`` < 1000) is written in one of two forms (``SHARE_FORMS``):

- ``resource`` (the sharing contract, docs/designs/014-gpu-sharing.md): ``limits:
  gpufleet.io/gpu-milli: M``; kube-scheduler counts M against the node's advertised shares, the
  extender's filter decides which GPU has room;
- ``device`` (a cluster without a sharing layer, and the pre-014 form): ``nvidia.com/gpu: 1`` plus
  the annotation ``gpufleet.io/gpu-milli``; kube-scheduler counts one whole device for it.

A pod restricted to GPU models gets a required node affinity on ``nvidia.com/gpu.product``.

Names are ``<prefix>-<index:05d>``: kube-scheduler's queue takes pods it finds at start in list
order (by name), so a replay queued while the scheduler is stopped is scheduled in trace order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpufleet.core import names
from gpufleet.scheduler.localcluster.nodes import OPENB_GPU_PRODUCTS, NodeSpec
from gpufleet.scheduler.model import GPU_MILLI, Cluster, Node, PodRequest
from gpufleet.scheduler.simulator import inflate

PLACEMENT_ANNOTATION = names.PLACEMENT
GPU_MILLI_ANNOTATION = names.GPU_MILLI
GPU_RESOURCE = names.GPU_RESOURCE
GPU_MILLI_RESOURCE = names.GPU_MILLI
#: How a GPU share is written: the extended resource, or one whole device plus the annotation.
SHARE_FORMS: tuple[str, ...] = ("resource", "device")
PRODUCT_LABEL = names.GPU_PRODUCT_LABEL
#: Label on every replayed pod; its value names the run.
REPLAY_LABEL = names.REPLAY_LABEL
GPUFLEET_PROFILE = "gpufleet-scheduler"
DEFAULT_PROFILE = "default-scheduler"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
DEFAULT_TRACE = Path("bench/data/alibaba-gpu-v2023/openb_pod_list_default.csv")


@dataclass(frozen=True)
class ReplayPod:
    """One pod of a replay: its position in the order, its request and its placement policy
    (``None``: a plain pod that did not opt in)."""

    index: int
    request: PodRequest
    placement: str | None

    def name(self, prefix: str) -> str:
        return f"{prefix}-{self.index:05d}"


def model_nodes(specs: Sequence[NodeSpec]) -> list[Node]:
    """The simulator's nodes for the cluster's node specs (same names, CPU, memory, GPUs, model)."""
    return [Node(name=s.name, cpu_milli=s.cpu_milli, memory_mib=s.memory_mib, gpus=s.gpus, gpu_model=s.gpu_model)
            for s in specs]


def simulator_order(nodes: Sequence[Node], trace: Sequence[PodRequest], seed: int = 42,
                    tune: float = 1.3) -> list[PodRequest]:
    """The pods in the order ``gpufleet.scheduler.simulator.simulate`` replays them for the same nodes, trace,
    seed and tune: shuffled by the seed and inflated to ``tune`` x the nodes' GPU capacity."""
    capacity = Cluster.from_nodes(list(nodes)).total_gpu_milli
    return inflate(trace, capacity, tune, np.random.default_rng(seed))


def choose_placements(requests: Sequence[PodRequest], policy: str | None, opt_in: float = 1.0,
                      seed: int = 0) -> list[ReplayPod]:
    """Number the pods; a seeded ``opt_in`` share of them (all at 1.0, none at 0.0) carries
    ``policy``, the rest are plain. GPU-less pods opt in too (the annotation does nothing for them:
    kube-scheduler asks the extender only about pods that request GPUs)."""
    if not 0.0 <= opt_in <= 1.0:
        raise ValueError(f"opt_in must be in [0, 1], got {opt_in}")
    chosen = np.random.default_rng(seed).random(len(requests)) < opt_in
    return [ReplayPod(i, r, policy if policy and chosen[i] else None) for i, r in enumerate(requests)]


def pod_manifest(pod: ReplayPod, prefix: str, run: str, *, gpufleet_profile: bool = True,
                 extra_annotations: dict[str, str] | None = None, share_form: str = "resource") -> dict:
    """The Pod for ``pod``. Opted-in pods use the ``gpufleet-scheduler`` profile when
    ``gpufleet_profile``, plain pods the default one; a GPU share is written in ``share_form``."""
    if share_form not in SHARE_FORMS:
        raise ValueError(f"share_form must be one of {', '.join(SHARE_FORMS)}, got {share_form!r}")
    request = pod.request
    annotations = dict(extra_annotations or {})
    if pod.placement:
        annotations[PLACEMENT_ANNOTATION] = pod.placement
    requests: dict[str, str] = {}
    if request.cpu_milli:
        requests["cpu"] = f"{request.cpu_milli}m"
    if request.memory_mib:
        requests["memory"] = f"{request.memory_mib}Mi"
    resources: dict[str, dict[str, str]] = {"requests": requests} if requests else {}
    if request.is_gpu_share and share_form == "resource":
        resources["limits"] = {GPU_MILLI_RESOURCE: str(request.gpu_milli)}
    elif request.num_gpu:
        resources["limits"] = {GPU_RESOURCE: str(request.num_gpu)}
        if request.is_gpu_share:
            annotations[GPU_MILLI_ANNOTATION] = str(request.gpu_milli)
    spec: dict = {
        "schedulerName": GPUFLEET_PROFILE if pod.placement and gpufleet_profile else DEFAULT_PROFILE,
        "containers": [{"name": "main", "image": PAUSE_IMAGE, "resources": resources}],
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 0,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
    }
    if request.gpu_models:
        products = sorted({OPENB_GPU_PRODUCTS.get(m, m) for m in request.gpu_models})
        spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": PRODUCT_LABEL, "operator": "In", "values": products}]}]}}}
    metadata: dict = {"name": pod.name(prefix), "labels": {REPLAY_LABEL: run}}
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def gpu_milli_of(pod: dict) -> tuple[int, int]:
    """``(GPUs, milli per GPU)`` a Pod manifest or object asks for, read back the way
    ``pod_manifest`` wrote it (the share resource, the share annotation, else whole GPUs)."""
    gpus = shared = 0
    for container in pod.get("spec", {}).get("containers") or []:
        resources = container.get("resources") or {}
        limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
        value = limits.get(GPU_RESOURCE) or requests.get(GPU_RESOURCE)
        if value:
            gpus += int(value)
        value = limits.get(GPU_MILLI_RESOURCE) or requests.get(GPU_MILLI_RESOURCE)
        if value:
            shared += int(value)
    if shared and not gpus:
        return 1, shared
    share = ((pod.get("metadata") or {}).get("annotations") or {}).get(GPU_MILLI_ANNOTATION)
    if gpus == 1 and share:
        return 1, int(share)
    return gpus, GPU_MILLI if gpus else 0
