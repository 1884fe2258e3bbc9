"""Idle detection: which samples are idle, the current idle run, and the finished idle spans. No I/O here.

A sample is idle when utilisation is at most the threshold and nothing else shows activity: memory used
moving by more than ``memory_activity_bytes`` since the previous sample, power above ``power_active_watts``,
or the process count changing. No data is never idle: samples further apart than ``max_gap_s`` end a run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import DetectionConfig
from .samples import Series

ENDED_BY_ACTIVITY = "activity"  # a busy sample followed: the span's length is known
ENDED_BY_GAP = "gap"  # data stopped (gap or end of series): the span lasted at least its length (censored)


@dataclass(frozen=True, slots=True)
class IdleRun:
    """The idle run a series ends in: consecutive idle samples up to the newest one."""

    start: float  # time of its first sample
    last: float  # time of its newest sample
    samples: int

    @property
    def elapsed_s(self) -> float:
        return self.last - self.start


@dataclass(frozen=True, slots=True)
class Span:
    """A finished or running idle run of one series, for the history of its workload."""

    start: float  # first idle sample
    length_s: float  # until the first busy sample (ENDED_BY_ACTIVITY) or the last idle sample (censored)
    ended_by: str  # ENDED_BY_ACTIVITY or ENDED_BY_GAP
    known_at: float  # when an observer learns how it ended (busy sample, or last sample + max gap)


def idle_mask(series: Series, detection: DetectionConfig) -> np.ndarray:
    """True where the sample is idle (bool array, one per sample)."""
    idle = series.utilisation_percent <= detection.threshold_percent
    if len(series) > 1:
        if detection.memory_activity_bytes is not None:
            moved = np.abs(np.diff(series.memory_used_bytes)) > detection.memory_activity_bytes  # NaN -> False
            idle[1:] &= ~moved
        if detection.process_change_is_activity:
            p = series.processes
            changed = (p[1:] != p[:-1]) & (p[1:] >= 0) & (p[:-1] >= 0)
            idle[1:] &= ~changed
    if detection.power_active_watts is not None:
        idle &= ~(series.power_watts > detection.power_active_watts)  # NaN -> not active
    return idle


def run_breaks(series: Series, idle: np.ndarray, detection: DetectionConfig) -> np.ndarray:
    """True where a new idle run would have to start: the sample follows a busy sample or a gap."""
    starts = np.ones(len(series), dtype=bool)
    if len(series) > 1:
        starts[1:] = ~idle[:-1] | (np.diff(series.timestamps) > detection.max_gap_s)
    return starts


def current_run(series: Series, detection: DetectionConfig, idle: np.ndarray | None = None) -> IdleRun | None:
    """The idle run the series ends in, or None when its newest sample is not idle (or there is none)."""
    n = len(series)
    if n == 0:
        return None
    idle = idle_mask(series, detection) if idle is None else idle
    if not idle[-1]:
        return None
    t = series.timestamps
    busy = np.flatnonzero(~idle)
    first = busy[-1] + 1 if len(busy) else 0
    gaps = np.flatnonzero(np.diff(t[first:]) > detection.max_gap_s)
    if len(gaps):
        first += gaps[-1] + 1
    return IdleRun(start=float(t[first]), last=float(t[-1]), samples=n - first)


def busy_share_before(series: Series, detection: DetectionConfig, at: float, window_s: float) -> float:
    """Share of samples in ``[at - window_s, at)`` that were not idle; NaN when there are none."""
    t = series.timestamps
    lo, hi = np.searchsorted(t, at - window_s), np.searchsorted(t, at)
    if hi <= lo:
        return float("nan")
    return float(np.mean(series.utilisation_percent[lo:hi] > detection.threshold_percent))


def spans(series: Series, detection: DetectionConfig) -> list[Span]:
    """Every idle run of the series with how it ended; a run still open at the end counts as censored."""
    n = len(series)
    if n == 0:
        return []
    t = series.timestamps
    idle = idle_mask(series, detection)
    gap_after = np.zeros(n, dtype=bool)
    gap_after[:-1] = np.diff(t) > detection.max_gap_s
    starts = np.flatnonzero(idle & run_breaks(series, idle, detection))
    out = []
    for r in starts:
        # the run goes on while the next sample is idle and within the gap limit
        stop = np.flatnonzero(gap_after[r:] | ~np.append(idle[r + 1:], False))
        j = r + int(stop[0])  # last idle sample of the run
        if j + 1 < n and not gap_after[j]:  # a busy sample follows in time
            out.append(Span(float(t[r]), float(t[j + 1] - t[r]), ENDED_BY_ACTIVITY, float(t[j + 1])))
        else:
            out.append(Span(float(t[r]), float(t[j] - t[r]), ENDED_BY_GAP, float(t[j] + detection.max_gap_s)))
    return out
