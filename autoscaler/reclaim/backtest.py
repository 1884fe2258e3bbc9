"""The backtest: replay a trace through ``decide`` (the controller's own function) and score the actions.

Definitions (issue 9): a pod's samples in time order; idle = utilisation <= threshold; an action happens
at a sample time ``a`` and uses only samples up to ``a`` (the history is ``SpanLog.as_of(a)``); the pod is
back at its first later sample above the threshold (``b``; the end of its series plus one step if none);
reclaimed = b - a; premature = there is such a ``b`` and b - a < 30 min; useful = the reclaimed time of
actions that were not premature. After it is back a pod can be acted on again. No notice period and no
grace here: the trace does not say when pods started. No I/O here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from .config import POLICY_FORECAST, ReclaimConfig
from .decision import decide
from .history import SpanHistory, SpanLog
from .samples import GpuKey, Observation, Series

PREMATURE_WITHIN_S = 30 * 60.0
DEFAULT_STEP_S = 60.0  # "one step" for a trace whose pods all have a single sample


@dataclass(frozen=True, slots=True)
class Action:
    key: GpuKey
    at: float  # the sample time the decision was taken
    back: float  # first later sample above the threshold, or end of series + one step
    came_back: bool  # False when the series ended before the pod was busy again

    @property
    def reclaimed_s(self) -> float:
        return self.back - self.at

    def premature(self, within_s: float = PREMATURE_WITHIN_S) -> bool:
        return self.came_back and self.reclaimed_s < within_s


@dataclass(frozen=True, slots=True)
class Score:
    actions: int
    premature_actions: int
    useful_gpu_hours: float
    reclaimed_gpu_hours: float

    @property
    def premature_share(self) -> float:
        return self.premature_actions / self.actions if self.actions else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {"actions": self.actions, "premature_actions": self.premature_actions,
                "useful_gpu_hours": round(self.useful_gpu_hours, 3),
                "reclaimed_gpu_hours": round(self.reclaimed_gpu_hours, 3)}


def score(actions: Iterable[Action], within_s: float = PREMATURE_WITHIN_S) -> Score:
    acts = list(actions)
    premature = [a for a in acts if a.premature(within_s)]
    useful = sum(a.reclaimed_s for a in acts if not a.premature(within_s))
    return Score(len(acts), len(premature), useful / 3600.0, sum(a.reclaimed_s for a in acts) / 3600.0)


def step_of(series: Series, default: float = DEFAULT_STEP_S) -> float:
    """The series' sampling step: the median interval between samples."""
    return float(np.median(np.diff(series.timestamps))) if len(series) > 1 else default


def trace_step(trace: Mapping[GpuKey, Series]) -> float:
    """The most common interval over the trace's pods (for one-sample pods)."""
    diffs = [np.diff(s.timestamps) for s in trace.values() if len(s) > 1]
    return float(np.median(np.concatenate(diffs))) if diffs else DEFAULT_STEP_S


def idle_gpu_hours(trace: Mapping[GpuKey, Series], threshold_percent: float, max_gap_s: float) -> float:
    """Idle time in the trace: each idle sample counts until the next sample (one step across a gap or at the end)."""
    default = trace_step(trace)
    total = 0.0
    for series in trace.values():
        if len(series) == 0:
            continue
        step = step_of(series, default)
        dt = np.append(np.diff(series.timestamps), step)
        dt = np.where(dt > max_gap_s, step, dt)
        total += float(dt[series.utilisation_percent <= threshold_percent].sum())
    return total / 3600.0


def run(trace: Mapping[GpuKey, Series], config: ReclaimConfig,
        on_step: Callable[[float], None] | None = None) -> list[Action]:
    """Every action ``config``'s policy takes on the trace, through ``decide`` at every sample time."""
    keys = list(trace)
    threshold = config.detection.threshold_percent
    default_step = trace_step(trace)
    log = SpanLog.from_series(trace, config.detection) if config.policy == POLICY_FORECAST else None
    empty = SpanHistory.empty()
    times = np.unique(np.concatenate([trace[k].timestamps for k in keys])) if keys else np.array([])
    cursor = [0] * len(keys)
    acted_at: list[float | None] = [None] * len(keys)
    actions: list[Action] = []
    for now in times:
        candidates: list[tuple[int, Observation]] = []
        for i, key in enumerate(keys):
            series = trace[key]
            j = cursor[i]
            if j >= len(series) or series.timestamps[j] != now:
                continue
            cursor[i] = j + 1
            busy = series.utilisation_percent[j] > threshold
            if acted_at[i] is not None:
                if busy:
                    actions.append(Action(key, acted_at[i], float(now), True))
                    acted_at[i] = None
                continue
            if not busy:  # decide() answers BUSY for a busy sample; skipping it saves time, changes nothing
                candidates.append((i, Observation(key, series.upto(j + 1))))
        if candidates:
            history = log.as_of(float(now)) if log is not None else empty
            for (i, _), decision in zip(candidates, decide([o for _, o in candidates], history, config,
                                                            float(now)), strict=True):
                if decision.act:
                    acted_at[i] = float(now)
        if on_step is not None:
            on_step(float(now))
    for i, key in enumerate(keys):
        if acted_at[i] is not None:
            series = trace[key]
            end = float(series.timestamps[-1]) + step_of(series, default_step)
            actions.append(Action(key, acted_at[i], end, False))
    return actions


def holdout_half(key: GpuKey) -> str:
    """"design" or "holdout", by a hash of the pod key (stable across runs and machines)."""
    digest = hashlib.sha256(key.pod.encode()).digest()
    return "holdout" if digest[0] % 2 else "design"
