"""Which GPUs of its node each bound pod holds, and whether any GPU is double-booked.

The extender's bind writes ``gpufleet.io/gpu-ids`` (comma-separated GPU indices of the node). A pod
bound without it (kube-scheduler's DefaultBinder: no extender, or the extender down) holds
``nvidia.com/gpu`` devices that no annotation names. ``assignment_problems`` checks a node's pods:
every index within the node's GPUs, a whole-GPU pod's GPUs shared with no other pod, GPU shares
summing to at most 1000 milli per GPU, and the devices of pods without ids fitting in what is left.
No I/O here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gpufleet.core import names
from gpufleet.scheduler.model import GPU_MILLI

GPU_IDS_ANNOTATION = names.GPU_IDS


@dataclass(frozen=True)
class HeldGpus:
    """One bound pod on one node: its GPUs by index (empty when it has no ``gpu-ids``), how many
    GPUs it asked for and the share of each (milli, 1000 for whole GPUs)."""

    pod: str
    node: str
    ids: tuple[int, ...]
    gpus: int
    milli: int


def parse_ids(value: str | None) -> tuple[int, ...] | None:
    """``"0,3"`` -> ``(0, 3)``; None for a missing, empty or malformed value."""
    if not value or not value.strip():
        return None
    try:
        return tuple(int(part) for part in value.split(","))
    except ValueError:
        return None


def assignment_problems(held: Iterable[HeldGpus], capacity: dict[str, int]) -> list[str]:
    """Every double booking or out-of-range index among ``held`` (``capacity``: GPUs per node)."""
    problems: list[str] = []
    by_node: dict[str, list[HeldGpus]] = {}
    for h in held:
        by_node.setdefault(h.node, []).append(h)
    for node, pods in sorted(by_node.items()):
        count = capacity.get(node)
        if count is None:
            problems.append(f"{node}: not a known node ({len(pods)} pods bound to it)")
            continue
        used = [0] * count
        owners: list[list[str]] = [[] for _ in range(count)]
        whole: set[int] = set()
        without_ids = 0
        for h in pods:
            if not h.ids:
                without_ids += h.gpus
                continue
            if len(h.ids) != h.gpus or len(set(h.ids)) != len(h.ids):
                problems.append(f"{node}: {h.pod} holds GPUs {list(h.ids)} for a request of {h.gpus}")
            for gpu in h.ids:
                if not 0 <= gpu < count:
                    problems.append(f"{node}: {h.pod} holds GPU {gpu}, but the node has GPUs 0..{count - 1}")
                    continue
                used[gpu] += h.milli
                owners[gpu].append(h.pod)
                if h.milli >= GPU_MILLI:
                    whole.add(gpu)
        for gpu in range(count):
            if used[gpu] > GPU_MILLI or (gpu in whole and len(owners[gpu]) > 1):
                problems.append(f"{node}: GPU {gpu} is double-booked ({used[gpu]} milli): {', '.join(owners[gpu])}")
        free_devices = sum(1 for gpu in range(count) if not owners[gpu])
        if without_ids > free_devices:
            problems.append(f"{node}: {without_ids} GPUs held without gpu-ids, but only {free_devices} GPUs "
                            "are held by no annotated pod")
    return problems
