"""The history of idle spans the forecast learns from, per workload and pooled over the fleet. No I/O here.

``SpanLog`` holds every span of some series with the time each one became known; ``SpanLog.as_of(now)``
is what an observer knew at ``now`` (spans still running are cut at ``now`` and count as censored), so
the backtest never looks ahead. The controller builds one from its sample buffers each pass
(``SpanHistory.from_series``) or keeps a log and appends finished spans.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import DetectionConfig
from .idle import ENDED_BY_ACTIVITY, Span, busy_share_before, spans
from .samples import GpuKey, Series

BUSY_WINDOW_S = 3600.0  # the activity before a span that describes its workload's state


@dataclass(frozen=True, slots=True)
class SpanHistory:
    """Idle spans known at ``now``: parallel arrays, one entry per span."""

    now: float
    keys: tuple[GpuKey, ...]  # series index -> key
    series: np.ndarray  # int64, index into keys
    workload: np.ndarray  # int64, index into workloads
    workloads: tuple[str, ...]
    start: np.ndarray  # float64, unix seconds
    length_s: np.ndarray  # float64
    completed: np.ndarray  # bool: ended by activity (else censored: lasted at least length_s)
    evidence_at: np.ndarray  # float64: when the span's evidence ends (its end, or now if running)
    busy_before: np.ndarray  # float64: share of busy samples in the hour before the span (NaN: no data)
    key_index: Mapping[GpuKey, int]  # inverse of keys
    workload_of: Mapping[str, int]  # inverse of workloads
    cache: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)  # derived indexes

    def __len__(self) -> int:
        return len(self.start)

    @classmethod
    def empty(cls, now: float = 0.0) -> SpanHistory:
        return SpanLog.from_series({}, DetectionConfig()).as_of(now)

    @classmethod
    def from_series(cls, series: Mapping[GpuKey, Series], detection: DetectionConfig, now: float) -> SpanHistory:
        return SpanLog.from_series(series, detection).as_of(now)

    def workload_index(self, key: GpuKey) -> int:
        """Index of the key's workload, -1 when it has no spans here."""
        return self.workload_of.get(key.workload_key, -1)

    def series_index(self, key: GpuKey) -> int:
        return self.key_index.get(key, -1)

    def workload_spans(self, workload: int) -> np.ndarray:
        """Indexes of the spans of workload number ``workload`` (grouped once per history)."""
        groups = self.cache.get("groups")
        if groups is None:
            order = np.argsort(self.workload, kind="stable")
            bounds = np.searchsorted(self.workload[order], np.arange(len(self.workloads) + 1))
            groups = self.cache["groups"] = (order, bounds)
        order, bounds = groups
        if not 0 <= workload < len(bounds) - 1:
            return order[:0]
        return order[bounds[workload]:bounds[workload + 1]]


@dataclass(frozen=True, slots=True)
class SpanLog:
    """Every span of some series, finished or not, with when each became known."""

    keys: tuple[GpuKey, ...]
    workloads: tuple[str, ...]
    series: np.ndarray
    workload: np.ndarray
    start: np.ndarray
    last: np.ndarray  # last idle sample of a censored span; NaN for one ended by activity
    length_s: np.ndarray
    completed: np.ndarray
    known_at: np.ndarray
    busy_before: np.ndarray

    @classmethod
    def from_series(cls, series: Mapping[GpuKey, Series], detection: DetectionConfig) -> SpanLog:
        """The spans of every series (idle detection with ``detection``)."""
        found = {}
        for key, one in series.items():
            found[key] = [(sp, busy_share_before(one, detection, sp.start, BUSY_WINDOW_S))
                          for sp in spans(one, detection)]
        return cls.from_spans(found)

    @classmethod
    def from_spans(cls, spans_by_key: Mapping[GpuKey, Sequence[Span | tuple[Span, float]]]) -> SpanLog:
        """From spans kept elsewhere (a controller keeps finished spans, not months of samples);
        each item is a ``Span`` or ``(Span, busy share of the hour before it)``."""
        keys = tuple(spans_by_key)
        workloads = tuple(dict.fromkeys(k.workload_key for k in keys))
        windex = {w: i for i, w in enumerate(workloads)}
        rows = []
        for i, key in enumerate(keys):
            for item in spans_by_key[key]:
                sp, busy = item if isinstance(item, tuple) else (item, np.nan)
                last = sp.start + sp.length_s if sp.ended_by != ENDED_BY_ACTIVITY else np.nan
                rows.append((i, windex[key.workload_key], sp.start, last, sp.length_s,
                             sp.ended_by == ENDED_BY_ACTIVITY, sp.known_at, busy))
        cols = list(zip(*rows, strict=True)) if rows else [()] * 8
        f64 = np.float64
        return cls(keys, workloads, np.asarray(cols[0], dtype=np.int64), np.asarray(cols[1], dtype=np.int64),
                   np.asarray(cols[2], dtype=f64), np.asarray(cols[3], dtype=f64), np.asarray(cols[4], dtype=f64),
                   np.asarray(cols[5], dtype=bool), np.asarray(cols[6], dtype=f64), np.asarray(cols[7], dtype=f64))

    def as_of(self, now: float) -> SpanHistory:
        """What was known at ``now``: finished spans as they ended, running ones cut at ``now`` (censored)."""
        seen = self.start <= now
        known = seen & (self.known_at <= now)
        # a running span lasted at least until now (or its last idle sample, when data has stopped)
        cut = np.where(np.isnan(self.last), now, np.minimum(self.last, now)) - self.start
        length = np.where(known, self.length_s, cut)
        return SpanHistory(
            now=now, keys=self.keys, series=self.series[seen], workload=self.workload[seen],
            workloads=self.workloads, start=self.start[seen], length_s=length[seen],
            completed=self.completed[seen] & known[seen],
            evidence_at=np.where(known, self.known_at, now)[seen],
            busy_before=self.busy_before[seen],
            key_index={k: i for i, k in enumerate(self.keys)},
            workload_of={w: i for i, w in enumerate(self.workloads)},
        )
