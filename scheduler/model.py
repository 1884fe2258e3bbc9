"""The GPU cluster model: nodes and GPUs as arrays, pod requests, and placing pods.

Everything is in integer units: CPU in millicores, memory in MiB, GPU capacity in milli-GPU (1000 = one
whole GPU). A node with fewer GPUs than the widest node has its missing GPU slots at 0 free, which every
kernel treats as "no capacity" without a special case. No I/O here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

GPU_MILLI = 1000
# Per-node class counters for the clustering policy: index 0 = GPU-sharing pods, k = pods of k whole GPUs.
POD_CLASSES = 9


class ModelError(ValueError):
    """A node or pod that the model cannot represent (negative sizes, too many GPUs, unknown node)."""


@dataclass(frozen=True)
class Node:
    """One node as configured: name, allocatable CPU/memory, GPU count and model, price per hour."""

    name: str
    cpu_milli: int
    memory_mib: int
    gpus: int
    gpu_model: str = ""
    price_per_hour: float = 0.0
    spot: bool = False


@dataclass(frozen=True)
class PodRequest:
    """What a pod asks for. ``gpu_milli`` is per GPU; it is 1000 whenever ``num_gpu > 1``.

    ``gpu_models`` is an allow-list of GPU models; empty means any model.
    """

    cpu_milli: int
    memory_mib: int = 0
    num_gpu: int = 0
    gpu_milli: int = 0
    gpu_models: tuple[str, ...] = ()
    name: str = ""

    def __post_init__(self) -> None:
        problems = []
        if self.cpu_milli < 0 or self.memory_mib < 0:
            problems.append("cpu_milli and memory_mib must be >= 0")
        if self.num_gpu < 0 or self.num_gpu > 64:
            problems.append(f"num_gpu must be in 0..64, got {self.num_gpu}")
        if self.num_gpu == 0 and self.gpu_milli != 0:
            problems.append("gpu_milli must be 0 when num_gpu is 0")
        if self.num_gpu > 0 and not 0 < self.gpu_milli <= GPU_MILLI:
            problems.append(f"gpu_milli must be in 1..{GPU_MILLI} when num_gpu > 0, got {self.gpu_milli}")
        if self.num_gpu > 1 and self.gpu_milli != GPU_MILLI:
            problems.append("a pod with num_gpu > 1 must ask for whole GPUs (gpu_milli 1000)")
        if problems:
            raise ModelError(f"pod {self.name or '?'}: " + "; ".join(problems))

    @property
    def is_gpu_share(self) -> bool:
        return self.num_gpu == 1 and self.gpu_milli < GPU_MILLI

    @property
    def total_gpu_milli(self) -> int:
        return self.num_gpu * self.gpu_milli

    @property
    def pod_class(self) -> int:
        """Index into the per-node class counters (-1 for CPU-only pods)."""
        if self.num_gpu == 0:
            return -1
        return 0 if self.is_gpu_share else min(self.num_gpu, POD_CLASSES - 1)


@dataclass
class Cluster:
    """Free capacity of every node and GPU, as arrays indexed by node position.

    ``version[n]`` grows whenever node n changes, so callers can cache per-node results.
    """

    names: list[str]
    model_names: list[str]
    cpu_capacity: np.ndarray  # int64[N]
    memory_capacity: np.ndarray  # int64[N]
    gpu_count: np.ndarray  # int32[N]
    gpu_model: np.ndarray  # int32[N], index into model_names (-1: no GPUs)
    price_per_hour: np.ndarray  # float64[N]
    spot: np.ndarray  # bool[N]
    cpu_free: np.ndarray  # int64[N]
    memory_free: np.ndarray  # int64[N]
    gpu_free: np.ndarray  # int32[N, G]
    pod_classes: np.ndarray  # int32[N, POD_CLASSES]
    version: np.ndarray  # int64[N]
    index: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_nodes(cls, nodes: Sequence[Node]) -> Cluster:
        """Build an empty cluster (every GPU fully free) from node specs."""
        if not nodes:
            raise ModelError("a cluster needs at least one node")
        names = [n.name for n in nodes]
        if len(set(names)) != len(names):
            raise ModelError("node names must be unique")
        model_names = sorted({n.gpu_model for n in nodes if n.gpus > 0 and n.gpu_model})
        if len(model_names) > 62:
            raise ModelError("at most 62 distinct GPU models are supported")
        width = max(1, max(n.gpus for n in nodes))
        count = len(nodes)
        gpu_count = np.array([n.gpus for n in nodes], dtype=np.int32)
        if (gpu_count < 0).any() or any(n.cpu_milli < 0 or n.memory_mib < 0 for n in nodes):
            raise ModelError("node capacities must be >= 0")
        gpu_free = np.zeros((count, width), dtype=np.int32)
        for i, n in enumerate(nodes):
            gpu_free[i, : n.gpus] = GPU_MILLI
        model_of = {m: i for i, m in enumerate(model_names)}
        cpu = np.array([n.cpu_milli for n in nodes], dtype=np.int64)
        mem = np.array([n.memory_mib for n in nodes], dtype=np.int64)
        return cls(
            names=names,
            model_names=model_names,
            cpu_capacity=cpu,
            memory_capacity=mem,
            gpu_count=gpu_count,
            gpu_model=np.array([model_of.get(n.gpu_model, -1) for n in nodes], dtype=np.int32),
            price_per_hour=np.array([n.price_per_hour for n in nodes], dtype=np.float64),
            spot=np.array([n.spot for n in nodes], dtype=np.bool_),
            cpu_free=cpu.copy(),
            memory_free=mem.copy(),
            gpu_free=gpu_free,
            pod_classes=np.zeros((count, POD_CLASSES), dtype=np.int32),
            version=np.zeros(count, dtype=np.int64),
            index={name: i for i, name in enumerate(names)},
        )

    def __len__(self) -> int:
        return len(self.names)

    @property
    def total_gpu_milli(self) -> int:
        return int(self.gpu_count.sum()) * GPU_MILLI

    @property
    def allocated_gpu_milli(self) -> int:
        return self.total_gpu_milli - int(self.gpu_free.sum())

    def node_index(self, name: str) -> int:
        try:
            return self.index[name]
        except KeyError:
            raise ModelError(f"unknown node {name!r}") from None

    def model_mask(self, models: Sequence[str]) -> int:
        """Bit mask over ``model_names`` for an allow-list; 0 means any model.

        A list naming only models this cluster lacks gets bit 63, which no node has, so nothing matches.
        """
        if not models:
            return 0
        mask = 0
        for m in models:
            if m in self.model_names:
                mask |= 1 << self.model_names.index(m)
        return mask or (1 << 62)

    def place(self, node: int, pod: PodRequest, gpus: Sequence[int]) -> None:
        """Charge ``pod`` to ``node`` on the given GPU indices; raises ModelError if it does not fit."""
        if len(gpus) != pod.num_gpu or len(set(gpus)) != len(gpus):
            raise ModelError(f"pod {pod.name}: needs {pod.num_gpu} distinct GPUs, got {list(gpus)}")
        if self.cpu_free[node] < pod.cpu_milli or self.memory_free[node] < pod.memory_mib:
            raise ModelError(f"pod {pod.name}: not enough CPU or memory on {self.names[node]}")
        for g in gpus:
            if not 0 <= g < self.gpu_count[node] or self.gpu_free[node, g] < pod.gpu_milli:
                raise ModelError(f"pod {pod.name}: GPU {g} of {self.names[node]} cannot take {pod.gpu_milli}m")
        self._charge(node, pod, gpus, +1)

    def release(self, node: int, pod: PodRequest, gpus: Sequence[int]) -> None:
        """Undo ``place``."""
        for g in gpus:
            if self.gpu_free[node, g] + pod.gpu_milli > GPU_MILLI:
                raise ModelError(f"pod {pod.name}: GPU {g} of {self.names[node]} would exceed a whole GPU")
        self._charge(node, pod, gpus, -1)

    def _charge(self, node: int, pod: PodRequest, gpus: Sequence[int], sign: int) -> None:
        self.cpu_free[node] -= sign * pod.cpu_milli
        self.memory_free[node] -= sign * pod.memory_mib
        for g in gpus:
            self.gpu_free[node, g] -= sign * pod.gpu_milli
        if pod.pod_class >= 0:
            self.pod_classes[node, pod.pod_class] += sign
        self.version[node] += 1

    def copy(self) -> Cluster:
        """A deep copy whose arrays can be changed independently."""
        arrays = {
            k: v.copy() if isinstance(v, np.ndarray) else v
            for k, v in self.__dict__.items()
            if k not in ("names", "model_names", "index")
        }
        return Cluster(names=self.names, model_names=self.model_names, index=self.index, **arrays)
