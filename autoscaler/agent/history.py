"""The agent's recent past: a ring buffer of sampling passes, with waiting for new ones.

Each pass (:class:`Batch`) holds one reading per device, so the ring is also a ring per GPU
(:meth:`SampleHistory.gpu_series`). Streams wait on it for passes newer than the last they sent.
No I/O here.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

from gpufleet.autoscaler.agent.podmap import PodAssignments
from gpufleet.autoscaler.gpu.model import GpuReading


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    node_name: str
    agent_version: str
    backend: str
    driver_version: str
    nvml_version: str
    instance_id: str
    started_unix: float
    interval_s: float


@dataclass(frozen=True, slots=True)
class Batch:
    """One sampling pass over every device of the node."""

    seq: int
    unix_time: float
    pass_seconds: float  # time the GPU reads took
    readings: tuple[GpuReading, ...]
    assignments: PodAssignments  # shared between passes until the next pod refresh


class SampleHistory:
    """Thread-safe ring of the last ``capacity`` batches."""

    def __init__(self, capacity: int = 300) -> None:
        if capacity < 1:
            raise ValueError(f"creating a sample history of {capacity} batches: need at least 1")
        self._ring: deque[Batch] = deque(maxlen=capacity)
        self._cond = threading.Condition()
        self._closed = False

    @property
    def capacity(self) -> int:
        return self._ring.maxlen or 0

    def append(self, batch: Batch) -> None:
        with self._cond:
            if self._ring and batch.seq <= self._ring[-1].seq:
                raise ValueError(f"appending batch {batch.seq}: history already holds {self._ring[-1].seq}")
            self._ring.append(batch)
            self._cond.notify_all()

    def latest(self) -> Batch | None:
        with self._cond:
            return self._ring[-1] if self._ring else None

    def latest_seq(self) -> int:
        with self._cond:
            return self._ring[-1].seq if self._ring else 0

    def recent(self, count: int) -> list[Batch]:
        """Up to ``count`` newest batches, oldest first."""
        with self._cond:
            return list(self._ring)[-count:] if count > 0 else []

    def after(self, seq: int) -> list[Batch]:
        with self._cond:
            return [b for b in self._ring if b.seq > seq]

    def wait_after(self, seq: int, timeout: float) -> list[Batch]:
        """Batches newer than ``seq``, waiting up to ``timeout`` s for one; [] on timeout or close."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or (self._ring and self._ring[-1].seq > seq), timeout)
            if self._closed:
                return []
            return [b for b in self._ring if b.seq > seq]

    def gpu_series(self, uuid: str) -> list[tuple[int, float, GpuReading]]:
        """(seq, unix time, reading) of one device, oldest first."""
        with self._cond:
            return [(b.seq, b.unix_time, r) for b in self._ring for r in b.readings if r.uuid == uuid]

    def close(self) -> None:
        """Wake every waiter for good (agent shutdown)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed
