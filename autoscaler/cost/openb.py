"""The Alibaba openb trace as cost inputs: pods with times and measured profiles, nodes as catalog types.

Pod lists are read with the scheduler's reader (``gpufleet.scheduler.trace.read_pods``) plus the
columns it skips: ``creation_time``, ``deletion_time`` (seconds) and ``qos``. Lists without times
(the ``multigpu*`` files) are taken as all pods running at once.

Documented mappings (no per-trace tuning):

- **openb GPU model -> catalog GPU model**: T4 -> t4, V100M16 and V100M32 -> v100, A10 -> a10g. P100,
  G2 and G3 have no catalog counterpart (G2/G3 are anonymised), so a ``gpu_spec`` that lists any of
  them places no model constraint; otherwise the spec allows the union of the mapped models.
- **GPU memory of the GPU a pod runs on now** (to turn a measured memory fraction into GiB): the
  smallest memory among its ``gpu_spec`` models (P100, T4, V100M16: 16 GiB; V100M32: 32; A10: 24;
  G2/G3 unknown, taken as 16), and 16 GiB without a spec, since such a pod may land on any node.
- **openb node -> closest catalog type** (for the current fleet's price): among the catalog types of
  the mapped GPU model (any model for P100/G2/G3), the type minimising
  ``2 |ln(gpus'/gpus)| + |ln(vcpu'/vcpu)| + |ln(mem'/mem)|``, priced on demand; ties go to the cheaper.
- **Interruptible**: ``qos`` BE (best effort) pods, used only when spot is enabled.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpufleet.autoscaler.cost.catalog import Catalog, InstanceType
from gpufleet.autoscaler.cost.profiles import Profile
from gpufleet.autoscaler.cost.sizing import Usage, Workload
from gpufleet.scheduler.model import Node, PodRequest
from gpufleet.scheduler.trace import TraceError, read_nodes, read_pods

MODEL_MAP = {"T4": "t4", "V100M16": "v100", "V100M32": "v100", "A10": "a10g"}
GPU_GIB = {"P100": 16.0, "T4": 16.0, "V100M16": 16.0, "V100M32": 32.0, "A10": 24.0, "G2": 16.0, "G3": 16.0}
DEFAULT_GPU_GIB = 16.0
INTERRUPTIBLE_QOS = "BE"


@dataclass(frozen=True)
class TracePods:
    """Pods of one list with arrival and departure times (seconds; departure inf = never)."""

    pods: tuple[PodRequest, ...]
    arrivals: np.ndarray
    departures: np.ndarray
    qos: tuple[str, ...]
    timed: bool


def read_trace_pods(path: str | Path) -> TracePods:
    """An openb pod list with its times; ``TraceError`` names the file and line of a bad row."""
    pods = read_pods(path)
    arrivals, departures, qos = [], [], []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        timed = {"creation_time", "deletion_time"} <= set(reader.fieldnames or [])
        for row in reader:
            qos.append((row.get("qos") or "").strip())
            if not timed:
                continue
            try:
                arrivals.append(float(row["creation_time"]))
                departures.append(float(row["deletion_time"]))
            except (TypeError, ValueError):
                raise TraceError(f"{path}:{reader.line_num}: creation_time and deletion_time must be "
                                 "numbers") from None
    n = len(pods)
    if not timed:
        arrivals, departures = [0.0] * n, [math.inf] * n
    return TracePods(tuple(pods), np.array(arrivals, dtype=float), np.array(departures, dtype=float),
                     tuple(qos), timed)


def allowed_models(spec: Sequence[str]) -> tuple[str, ...]:
    """Catalog GPU models a ``gpu_spec`` allows (empty = any; see the module docstring)."""
    if not spec or any(m not in MODEL_MAP for m in spec):
        return ()
    return tuple(sorted({MODEL_MAP[m] for m in spec}))


def source_gpu_gib(spec: Sequence[str]) -> float:
    return min((GPU_GIB.get(m, DEFAULT_GPU_GIB) for m in spec), default=DEFAULT_GPU_GIB)


def usage_from_profile(profile: Profile, share: float, gpu_gib: float) -> Usage:
    """A profile's fractions applied to a pod holding ``share`` of a ``gpu_gib`` GiB GPU, per GPU."""
    return Usage(memory_p99_gib=profile.memory_p99 * share * gpu_gib, compute_p99=profile.duty_p99 * share,
                 compute_mean=profile.duty_mean * share, window_s=profile.window_s, samples=profile.samples)


def workloads(trace: TracePods, profiles: Sequence[Profile] | None, spot: bool = False) -> list[Workload]:
    """One workload per pod; ``profiles[i]`` (if given) is pod i's measured profile."""
    out = []
    for i, pod in enumerate(trace.pods):
        gib = source_gpu_gib(pod.gpu_models)
        share = pod.gpu_milli / 1000 if pod.num_gpu == 1 else 1.0
        usage = usage_from_profile(profiles[i], share, gib) if profiles and pod.num_gpu else None
        out.append(Workload(name=pod.name, cpu_milli=pod.cpu_milli, memory_mib=pod.memory_mib,
                            num_gpu=pod.num_gpu, gpu_milli=pod.gpu_milli, gpu_models=allowed_models(pod.gpu_models),
                            interruptible=spot and trace.qos[i] == INTERRUPTIBLE_QOS, source_gpu_gib=gib,
                            usage=usage))
    return out


def closest_type(node: Node, catalog: Catalog) -> InstanceType:
    """The catalog type closest to an openb node (see the module docstring)."""
    model = MODEL_MAP.get(node.gpu_model)
    candidates = [t for t in catalog.types if t.gpu_count >= 1 and (model is None or t.gpu_model == model)]
    if not candidates:
        raise TraceError(f"node {node.name}: no catalog type with GPU model {model or 'any'}")

    def distance(t: InstanceType) -> tuple[float, float, str]:
        d = (2 * abs(math.log(t.gpu_count / max(node.gpus, 1))) + abs(math.log(t.vcpu * 1000 / node.cpu_milli))
             + abs(math.log(t.memory_mib / node.memory_mib)))
        return round(d, 9), t.on_demand, t.name

    return min(candidates, key=distance)


def current_fleet(path: str | Path, catalog: Catalog) -> tuple[float, dict[str, int], dict[str, str]]:
    """($/h on demand, count per mapped type, openb shape -> mapped type) of an openb node list."""
    total, counts, mapping = 0.0, {}, {}
    for node in read_nodes(path):
        if node.gpus == 0:
            continue
        t = closest_type(node, catalog)
        total += t.on_demand
        counts[t.name] = counts.get(t.name, 0) + 1
        mapping[f"{node.gpus}x{node.gpu_model} {node.cpu_milli // 1000}cpu {node.memory_mib // 1024}GiB"] = t.name
    return total, dict(sorted(counts.items())), mapping
