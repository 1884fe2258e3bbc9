"""What the decision function sees of one GPU held by one pod: its samples, in time order. No I/O here.

A ``Series`` keeps the samples as numpy columns (the controller appends agent samples; the backtest slices
a trace), so a pass over thousands of GPUs stays cheap. Optional measurements are NaN (power) or -1
(process count) where the agent did not report them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_FLOAT = np.float64


@dataclass(frozen=True, slots=True)
class Sample:
    """One measurement of one GPU as seen by one pod."""

    timestamp: float  # unix seconds
    utilisation_percent: float  # SM / duty cycle, 0..100
    memory_used_bytes: float | None = None
    power_watts: float | None = None
    processes: int | None = None  # compute processes on the GPU


@dataclass(frozen=True, slots=True)
class GpuKey:
    """Which GPU of which pod, and the workload whose history it shares (e.g. ``ns/Deployment/name``)."""

    pod: str  # "namespace/name" (the controller may use the UID)
    gpu: str = ""  # GPU UUID; "" when a pod has one GPU or the trace does not say
    workload: str = ""  # "" means the pod is its own workload

    @property
    def workload_key(self) -> str:
        return self.workload or self.pod


@dataclass(frozen=True, slots=True)
class Series:
    """Samples of one pod's GPU in time order; all columns have the same length."""

    timestamps: np.ndarray  # float64, unix seconds, non-decreasing
    utilisation_percent: np.ndarray  # float64
    memory_used_bytes: np.ndarray  # float64, NaN where unknown
    power_watts: np.ndarray  # float64, NaN where unknown
    processes: np.ndarray  # int64, -1 where unknown

    def __post_init__(self) -> None:
        n = len(self.timestamps)
        for name in ("utilisation_percent", "memory_used_bytes", "power_watts", "processes"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"series column {name} has {len(getattr(self, name))} values, timestamps {n}")

    def __len__(self) -> int:
        return len(self.timestamps)

    @classmethod
    def from_arrays(cls, timestamps: Sequence[float] | np.ndarray, utilisation_percent: Sequence[float] | np.ndarray,
                    memory_used_bytes: Sequence[float] | np.ndarray | None = None,
                    power_watts: Sequence[float] | np.ndarray | None = None,
                    processes: Sequence[int] | np.ndarray | None = None) -> Series:
        t = np.asarray(timestamps, dtype=_FLOAT)
        n = len(t)
        return cls(
            timestamps=t,
            utilisation_percent=np.asarray(utilisation_percent, dtype=_FLOAT),
            memory_used_bytes=np.full(n, np.nan) if memory_used_bytes is None
            else np.asarray(memory_used_bytes, dtype=_FLOAT),
            power_watts=np.full(n, np.nan) if power_watts is None else np.asarray(power_watts, dtype=_FLOAT),
            processes=np.full(n, -1, dtype=np.int64) if processes is None
            else np.asarray(processes, dtype=np.int64),
        )

    @classmethod
    def from_samples(cls, samples: Sequence[Sample]) -> Series:
        return cls.from_arrays(
            [s.timestamp for s in samples],
            [s.utilisation_percent for s in samples],
            [np.nan if s.memory_used_bytes is None else s.memory_used_bytes for s in samples],
            [np.nan if s.power_watts is None else s.power_watts for s in samples],
            [-1 if s.processes is None else s.processes for s in samples],
        )

    def upto(self, end: int) -> Series:
        """The first ``end`` samples (views, no copy)."""
        return Series(self.timestamps[:end], self.utilisation_percent[:end], self.memory_used_bytes[:end],
                      self.power_watts[:end], self.processes[:end])


@dataclass(frozen=True, slots=True)
class Observation:
    """One pod's GPU now: its recent samples (at least back to the start of the current idle run)."""

    key: GpuKey
    series: Series
    started_at: float | None = None  # pod start, unix seconds (for the grace period); None: unknown
