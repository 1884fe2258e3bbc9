"""What the agents said: per pod GPU sample buffers, who holds which GPU, and how fresh each node is.

Agents sample at 1 Hz; the store folds samples into ``bucket_s`` buckets (utilisation and power: the
maximum, so a short burst is never lost; memory and process count: the newest) in a ring per (pod, GPU)
that keeps ``history_s``, enough for the idle-span forecast. A reading without utilisation (lost GPU,
NVML error) is not stored: no data is never idle. Thread-safe: agent streams write, the pass reads.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from gpufleet.autoscaler.controller.config import SamplesConfig
from gpufleet.autoscaler.reclaim.samples import Series

PodName = tuple[str, str]  # (namespace, name)
_FIRST_SIZE = 64  # buckets a new ring starts with


@dataclass(frozen=True, slots=True)
class Reading:
    """One GPU in one agent batch, as the store needs it (from a gpufleet.v1 GpuSample)."""

    uuid: str
    utilisation_percent: float | None  # None: not measured this pass
    memory_used_bytes: float | None
    power_watts: float | None
    processes: int | None
    pods: tuple[PodName, ...]


@dataclass(frozen=True, slots=True)
class NodeState:
    received_at: float  # controller clock, last batch
    sample_time: float  # agent clock, last batch
    pod_resources_ok: bool
    endpoint: str


class _Ring:
    """Bucketed samples of one pod's GPU: grows by doubling up to ``capacity``, then wraps.

    Compact columns (8 + 1 + 4 + 4 + 2 bytes a bucket): a fleet of 8,000 GPUs with 6 h of 60-s buckets
    holds about 55 MB.
    """

    __slots__ = ("bucket", "capacity", "head", "last_seen", "m", "n", "p", "size", "t", "u")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        first = min(capacity, _FIRST_SIZE)
        self.t = np.zeros(first, dtype=np.float64)
        self.u = np.zeros(first, dtype=np.uint8)  # percent, rounded up: 0.4 % is not 0 %
        self.m = np.full(first, np.nan, dtype=np.float32)
        self.p = np.full(first, np.nan, dtype=np.float32)
        self.n = np.full(first, -1, dtype=np.int16)
        self.head = 0  # next write position
        self.size = 0
        self.bucket = -1
        self.last_seen = 0.0

    def _grow(self) -> None:
        new = min(self.capacity, 2 * len(self.t))
        extra = new - len(self.t)
        self.t = np.concatenate([self.t, np.zeros(extra, dtype=np.float64)])
        self.u = np.concatenate([self.u, np.zeros(extra, dtype=np.uint8)])
        self.m = np.concatenate([self.m, np.full(extra, np.nan, dtype=np.float32)])
        self.p = np.concatenate([self.p, np.full(extra, np.nan, dtype=np.float32)])
        self.n = np.concatenate([self.n, np.full(extra, -1, dtype=np.int16)])

    def add(self, t: float, bucket: int, r: Reading) -> None:
        mem = np.nan if r.memory_used_bytes is None else r.memory_used_bytes
        power = np.nan if r.power_watts is None else r.power_watts
        procs = -1 if r.processes is None else min(r.processes, 32767)
        util = min(100, math.ceil(r.utilisation_percent or 0.0))
        if bucket == self.bucket and self.size:
            i = (self.head - 1) % len(self.t)
            self.t[i] = max(self.t[i], t)
            self.u[i] = max(int(self.u[i]), util)
            self.m[i] = mem
            if not math.isnan(power):
                self.p[i] = power if math.isnan(self.p[i]) else max(float(self.p[i]), power)
            self.n[i] = procs
        else:
            if self.head == len(self.t) and len(self.t) < self.capacity:
                self._grow()
            i = self.head % len(self.t)
            self.t[i], self.u[i], self.m[i], self.p[i], self.n[i] = t, util, mem, power, procs
            self.head = (i + 1) % len(self.t) if len(self.t) == self.capacity else i + 1
            self.size = min(self.size + 1, len(self.t))
            self.bucket = bucket
        self.last_seen = t

    def series(self, since: float) -> Series:
        cap = len(self.t)  # head wraps only once the ring is at full capacity
        order = np.arange(self.head - self.size, self.head) % cap
        t = self.t[order]
        keep = t >= since
        order = order[keep]
        return Series.from_arrays(t[keep], self.u[order], self.m[order], self.p[order], self.n[order])


class SampleStore:
    def __init__(self, config: SamplesConfig) -> None:
        self._config = config
        self._capacity = max(2, int(math.ceil(config.history_s / config.bucket_s)) + 1)
        self._lock = threading.Lock()
        self._rings: dict[tuple[PodName, str], _Ring] = {}
        self._holders: dict[str, tuple[str, tuple[PodName, ...]]] = {}  # uuid -> (node, pods)
        self._nodes: dict[str, NodeState] = {}
        self.samples = 0

    def ingest(self, node: str, sample_time: float, received_at: float, readings: Iterable[Reading],
               endpoint: str = "", live: bool = True) -> None:
        """One agent batch. ``live`` False (a replayed batch) updates buffers but not freshness."""
        bucket = int(sample_time // self._config.bucket_s)
        with self._lock:
            for r in readings:
                if live:
                    self._holders[r.uuid] = (node, r.pods)
                if r.utilisation_percent is None:
                    continue
                for pod in r.pods:
                    ring = self._rings.get((pod, r.uuid))
                    if ring is None:
                        ring = self._rings[(pod, r.uuid)] = _Ring(self._capacity)
                    if sample_time > ring.last_seen:
                        ring.add(sample_time, bucket, r)
                        self.samples += 1
            if live:
                old = self._nodes.get(node)
                ok = old.pod_resources_ok if old is not None else True
                self._nodes[node] = NodeState(received_at, sample_time, ok, endpoint)

    def set_pod_resources_ok(self, node: str, ok: bool, received_at: float, endpoint: str = "") -> None:
        with self._lock:
            old = self._nodes.get(node)
            self._nodes[node] = NodeState(old.received_at if old else received_at,
                                          old.sample_time if old else 0.0, ok, endpoint or (old.endpoint if old
                                                                                           else ""))

    def node(self, name: str) -> NodeState | None:
        with self._lock:
            return self._nodes.get(name)

    def nodes(self) -> dict[str, NodeState]:
        with self._lock:
            return dict(self._nodes)

    def gpus_of(self, pod: PodName) -> list[tuple[str, str]]:
        """(node, GPU uuid) the agents last said ``pod`` holds."""
        with self._lock:
            return [(node, uuid) for uuid, (node, pods) in self._holders.items() if pod in pods]

    def holders(self) -> dict[PodName, list[tuple[str, str]]]:
        """Every pod the agents report, with its (node, GPU uuid) list."""
        out: dict[PodName, list[tuple[str, str]]] = {}
        with self._lock:
            for uuid, (node, pods) in self._holders.items():
                for pod in pods:
                    out.setdefault(pod, []).append((node, uuid))
        return out

    def series(self, pod: PodName, uuid: str, since: float = 0.0) -> Series:
        with self._lock:
            ring = self._rings.get((pod, uuid))
            if ring is None:
                return Series.from_arrays([], [])
            return ring.series(since)

    def forget_before(self, cutoff: float) -> int:
        """Drop buffers whose newest sample is older than ``cutoff``; returns how many went."""
        with self._lock:
            old = [k for k, ring in self._rings.items() if ring.last_seen < cutoff]
            for k in old:
                del self._rings[k]
            return len(old)

    def __len__(self) -> int:
        with self._lock:
            return len(self._rings)
