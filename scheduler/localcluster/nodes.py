"""The fake GPU nodes of the local cluster: who they are (profiles) and their Node objects.

Two profiles:

- ``openb`` mirrors the nodes of the Alibaba openb trace (1,213 GPU nodes, 6,212 GPUs) with their
  CPU, memory, GPU count and model; ``--nodes N`` takes N of them evenly spaced, keeping the mix.
- ``uniform`` is N identical nodes of ``--gpus-per-node`` A100-80GB GPUs (8: AWS p4de.24xlarge).

Every node carries the labels gpufleet reads (``nvidia.com/gpu.product``, instance type, zone,
capacity type), ``nvidia.com/gpu`` and ``gpufleet.io/gpu-milli`` (1000 per GPU, for GPU shares)
as capacity, ``type=kwok`` and the annotation ``kwok.x-k8s.io/node: fake`` that hands it to kwok.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from gpufleet.core import names
from gpufleet.scheduler.model import Node

log = logging.getLogger(__name__)

KWOK_ANNOTATION = "kwok.x-k8s.io/node"
#: The extended resource of GPU shares, 1000 per GPU.
GPU_MILLI_RESOURCE = names.GPU_MILLI
KWOK_ANNOTATION_VALUE = "fake"
PROFILES: tuple[str, ...] = ("openb", "uniform")
ZONES: tuple[str, ...] = ("us-east-1a", "us-east-1b", "us-east-1c")
#: One node in SPOT_EVERY is spot capacity, the others on-demand.
SPOT_EVERY = 4
#: Pods per node; above what the trace packs on one node, so it never binds before CPU or GPUs do.
MAX_PODS = 256

#: openb GPU model -> the `nvidia.com/gpu.product` value NVIDIA's feature discovery would write.
#: G2 and G3 are unnamed Alibaba models in the trace; they keep their trace names.
OPENB_GPU_PRODUCTS: dict[str, str] = {
    "P100": "Tesla-P100-PCIE-16GB",
    "T4": "Tesla-T4",
    "V100M16": "Tesla-V100-SXM2-16GB",
    "V100M32": "Tesla-V100-SXM2-32GB",
    "A10": "NVIDIA-A10",
    "G2": "Alibaba-G2",
    "G3": "Alibaba-G3",
}

#: (openb model, GPUs) -> an AWS instance type with that GPU and count, where one exists (the price
#: catalog knows them); other shapes get a made-up `openb.<model>.<n>gpu` type with no catalog price.
OPENB_INSTANCE_TYPES: dict[tuple[str, int], str] = {
    ("T4", 4): "g4dn.12xlarge",
    ("T4", 8): "g4dn.metal",
    ("V100M16", 1): "p3.2xlarge",
    ("V100M16", 4): "p3.8xlarge",
    ("V100M16", 8): "p3.16xlarge",
    ("V100M32", 8): "p3dn.24xlarge",
}

UNIFORM_GPU_PRODUCT = "NVIDIA-A100-SXM4-80GB"
UNIFORM_GPU_MODEL = "A100"
UNIFORM_CPU_MILLI_PER_GPU = 12_000
UNIFORM_MEMORY_MIB_PER_GPU = 144 * 1024


@dataclass(frozen=True)
class NodeSpec:
    """One fake node: name, resources (CPU in millicores, memory in MiB) and placement labels."""

    name: str
    gpus: int
    gpu_model: str
    gpu_product: str
    instance_type: str
    zone: str
    capacity_type: str
    cpu_milli: int
    memory_mib: int
    max_pods: int = MAX_PODS

    def labels(self) -> dict[str, str]:
        return {
            "type": "kwok",
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            names.INSTANCE_TYPE_LABEL: self.instance_type,
            "topology.kubernetes.io/region": self.zone[:-1],
            names.ZONE_LABEL: self.zone,
            names.CAPACITY_TYPE_LABEL: self.capacity_type,
            names.GPU_PRODUCT_LABEL: self.gpu_product,
            names.GPU_COUNT_LABEL: str(self.gpus),
            names.GPU_MODEL_LABEL: self.gpu_model,
        }

    def resources(self) -> dict[str, str]:
        return {
            "cpu": f"{self.cpu_milli}m",
            "memory": f"{self.memory_mib}Mi",
            "pods": str(self.max_pods),
            names.GPU_RESOURCE: str(self.gpus),
            # GPU shares (docs/designs/014-gpu-sharing.md): what `gpufleet device-plugin` advertises.
            GPU_MILLI_RESOURCE: str(self.gpus * 1000),
        }

    def manifest(self) -> dict:
        """The Node object; kwok fills conditions, addresses and nodeInfo and keeps capacity."""
        resources = self.resources()
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": self.labels(),
                "annotations": {KWOK_ANNOTATION: KWOK_ANNOTATION_VALUE, "node.alpha.kubernetes.io/ttl": "0"},
            },
            "spec": {},
            "status": {"capacity": dict(resources), "allocatable": dict(resources)},
        }


def _placement(index: int) -> tuple[str, str]:
    """Zone and capacity type of the index-th node: round-robin zones, one in SPOT_EVERY spot."""
    capacity_type = "spot" if index % SPOT_EVERY == SPOT_EVERY - 1 else "on-demand"
    return ZONES[index % len(ZONES)], capacity_type


def evenly_spaced(items: list, count: int) -> list:
    """``count`` items spread over the list (all of them when count >= len)."""
    if count >= len(items):
        return list(items)
    if count <= 0:
        return []
    return [items[(i * len(items)) // count] for i in range(count)]


def openb_nodes(node_list: Path, count: int | None = None) -> list[NodeSpec]:
    """Nodes mirroring an openb node list (``sn, cpu_milli, memory_mib, gpu, model``)."""
    from gpufleet.scheduler.trace import read_nodes

    trace_nodes = [n for n in read_nodes(node_list) if n.gpus > 0]
    if count is not None:
        trace_nodes = evenly_spaced(trace_nodes, count)
    return [openb_spec(node, index) for index, node in enumerate(trace_nodes)]


def openb_spec(node: Node, index: int) -> NodeSpec:
    """The fake node for one openb node, the index-th of its list (zone and capacity type by index)."""
    zone, capacity_type = _placement(index)
    instance_type = OPENB_INSTANCE_TYPES.get((node.gpu_model, node.gpus), f"openb.{node.gpu_model.lower()}.{node.gpus}gpu")
    return NodeSpec(
        name=node.name.lower(), gpus=node.gpus, gpu_model=node.gpu_model,
        gpu_product=OPENB_GPU_PRODUCTS.get(node.gpu_model, node.gpu_model),
        instance_type=instance_type, zone=zone, capacity_type=capacity_type,
        cpu_milli=node.cpu_milli, memory_mib=node.memory_mib,
    )


def uniform_nodes(count: int, gpus_per_node: int = 8) -> list[NodeSpec]:
    """``count`` identical A100-80GB nodes named ``gpu-node-00000``..."""
    if count < 0 or gpus_per_node < 1:
        raise ValueError(f"uniform nodes need count >= 0 and gpus_per_node >= 1, got {count}, {gpus_per_node}")
    instance_type = "p4de.24xlarge" if gpus_per_node == 8 else f"uniform.a100-80gb.{gpus_per_node}gpu"
    specs = []
    for index in range(count):
        zone, capacity_type = _placement(index)
        specs.append(NodeSpec(
            name=f"gpu-node-{index:05d}", gpus=gpus_per_node, gpu_model=UNIFORM_GPU_MODEL,
            gpu_product=UNIFORM_GPU_PRODUCT, instance_type=instance_type, zone=zone,
            capacity_type=capacity_type, cpu_milli=UNIFORM_CPU_MILLI_PER_GPU * gpus_per_node,
            memory_mib=UNIFORM_MEMORY_MIB_PER_GPU * gpus_per_node,
        ))
    return specs


def create_nodes(core_api, specs: Iterable[NodeSpec], workers: int = 8,
                 progress: Callable[[int, int], None] | None = None) -> int:
    """Create the Node objects (status included, which the API server accepts on create) with a
    small thread pool; a node that exists already is left alone. Returns how many were created."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from kubernetes.client.exceptions import ApiException

    specs = list(specs)

    def create(spec: NodeSpec) -> bool:
        try:
            core_api.create_node(body=spec.manifest())
        except ApiException as err:
            if err.status == 409:
                return False
            raise RuntimeError(f"creating node {spec.name}: {err.status} {err.reason}: {err.body}") from err
        return True

    created = done = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(create, spec) for spec in specs]
        for future in as_completed(futures):
            created += int(future.result())
            done += 1
            if progress is not None:
                progress(done, len(specs))
    log.info("nodes created=%d existing=%d", created, len(specs) - created)
    return created
