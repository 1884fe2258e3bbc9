"""Changing the node rows of a ``Cluster`` as nodes come, change and go, without a full rebuild.

``Cluster.from_nodes`` builds a fixed set of rows; a live cluster gains and loses nodes. Adding nodes
returns a *new* ``Cluster`` (arrays concatenated, GPU width and model table grown), so anything that
cached per-cluster results must key on the ``ClusterState.generation`` that changes with it. A removed
node's row is cleared in place (no capacity, out of ``index``) and reused by nobody; the owner rebuilds
when too many such rows pile up. Every change bumps the row's ``version``. No I/O here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gpufleet.scheduler.model import GPU_MILLI, Cluster, ModelError, Node

MAX_MODELS = 62  # Cluster.model_mask uses bits 0..61; bit 62 means "no model"


def append_nodes(cluster: Cluster | None, nodes: Sequence[Node]) -> Cluster:
    """A cluster with ``nodes`` (names not yet in ``cluster.index``) added after the existing rows."""
    extra = Cluster.from_nodes(nodes)
    if cluster is None:
        return extra
    clash = [n.name for n in nodes if n.name in cluster.index]
    if clash:
        raise ModelError(f"nodes already present: {', '.join(clash[:5])}")
    models = list(cluster.model_names) + [m for m in extra.model_names if m not in cluster.model_names]
    if len(models) > MAX_MODELS:
        raise ModelError(f"at most {MAX_MODELS} distinct GPU models are supported")
    remap = np.array([models.index(m) for m in extra.model_names] or [0], dtype=np.int32)
    extra_model = np.where(extra.gpu_model >= 0, remap[np.maximum(extra.gpu_model, 0)], -1).astype(np.int32)
    width = max(cluster.gpu_free.shape[1], extra.gpu_free.shape[1])
    base = len(cluster.names)
    index = dict(cluster.index)
    index.update({n.name: base + i for i, n in enumerate(nodes)})
    return Cluster(
        names=list(cluster.names) + [n.name for n in nodes],
        model_names=models,
        cpu_capacity=np.concatenate([cluster.cpu_capacity, extra.cpu_capacity]),
        memory_capacity=np.concatenate([cluster.memory_capacity, extra.memory_capacity]),
        gpu_count=np.concatenate([cluster.gpu_count, extra.gpu_count]),
        gpu_model=np.concatenate([cluster.gpu_model, extra_model]),
        price_per_hour=np.concatenate([cluster.price_per_hour, extra.price_per_hour]),
        spot=np.concatenate([cluster.spot, extra.spot]),
        cpu_free=np.concatenate([cluster.cpu_free, extra.cpu_free]),
        memory_free=np.concatenate([cluster.memory_free, extra.memory_free]),
        gpu_free=np.concatenate([_pad(cluster.gpu_free, width), _pad(extra.gpu_free, width)]),
        pod_classes=np.concatenate([cluster.pod_classes, extra.pod_classes]),
        version=np.concatenate([cluster.version, extra.version]),
        index=index,
    )


def _pad(gpu_free: np.ndarray, width: int) -> np.ndarray:
    if gpu_free.shape[1] == width:
        return gpu_free
    out = np.zeros((gpu_free.shape[0], width), dtype=np.int32)
    out[:, : gpu_free.shape[1]] = gpu_free
    return out


def clear_row(cluster: Cluster, row: int) -> None:
    """Take a removed node out: no capacity, no GPUs, not in ``index`` (its name stays in ``names``)."""
    name = cluster.names[row]
    if cluster.index.get(name) == row:
        del cluster.index[name]
    for array in (cluster.cpu_capacity, cluster.memory_capacity, cluster.cpu_free, cluster.memory_free,
                  cluster.gpu_count, cluster.price_per_hour, cluster.spot):
        array[row] = 0
    cluster.gpu_model[row] = -1
    cluster.gpu_free[row] = 0
    cluster.pod_classes[row] = 0
    cluster.version[row] += 1


def same_gpus(cluster: Cluster, row: int, node: Node) -> bool:
    """Whether ``node`` has the row's GPU count and model (else the row needs a rebuild)."""
    model = cluster.gpu_model[row]
    current = cluster.model_names[model] if model >= 0 else ""
    return int(cluster.gpu_count[row]) == node.gpus and current == (node.gpu_model if node.gpus else "")


def update_row(cluster: Cluster, row: int, node: Node) -> None:
    """New CPU/memory capacity (free moves by the same amount), price and spot for an existing row."""
    cpu_delta = node.cpu_milli - int(cluster.cpu_capacity[row])
    mem_delta = node.memory_mib - int(cluster.memory_capacity[row])
    if cpu_delta or mem_delta:
        cluster.cpu_capacity[row] = node.cpu_milli
        cluster.memory_capacity[row] = node.memory_mib
        cluster.cpu_free[row] += cpu_delta
        cluster.memory_free[row] += mem_delta
        cluster.version[row] += 1
    cluster.price_per_hour[row] = node.price_per_hour
    cluster.spot[row] = node.spot


def free_gpu_milli(cluster: Cluster) -> int:
    return int(np.clip(cluster.gpu_free, 0, GPU_MILLI).sum())
