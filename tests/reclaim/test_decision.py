"""decide(): no data is never idle, the baseline rule, the forecast acts only on evidence, grace."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gpufleet.autoscaler.reclaim import (
    GpuKey,
    Observation,
    ReclaimConfig,
    Series,
    SpanHistory,
    SpanLog,
    Verdict,
    WindowConfig,
    decide,
)

from .conftest import STEP, busy, idle, make_series

POLICY = ReclaimConfig()
BASELINE = ReclaimConfig().with_baseline()


def history_of(spans_minutes: list[float], now: float, busy_after: bool = True) -> SpanHistory:
    """A fleet history: one other pod per span, each idle for the given minutes (then busy) before ``now``."""
    trace = {}
    for i, minutes in enumerate(spans_minutes):
        n = int(minutes)
        values = busy(1) + idle(n) + (busy(1) if busy_after else [])
        start = now - (len(values) + 1) * STEP
        trace[GpuKey(f"other-{i}")] = make_series(values, start=start)
    return SpanLog.from_series(trace, POLICY.detection).as_of(now)


def one(series: Series, config: ReclaimConfig, history: SpanHistory | None = None, now: float | None = None,
        started_at: float | None = None):
    now = float(series.timestamps[-1]) if now is None and len(series) else (now or 0.0)
    [d] = decide([Observation(GpuKey("ns/me"), series, started_at)], history or SpanHistory.empty(now),
                 config, now)
    return d


@pytest.mark.parametrize("config", [POLICY, BASELINE], ids=["forecast", "window"])
def test_no_samples_is_no_data(config: ReclaimConfig) -> None:
    d = one(Series.from_arrays([], []), config, now=1000.0)
    assert d.verdict is Verdict.NO_DATA and not d.act


@pytest.mark.parametrize("config", [POLICY, BASELINE], ids=["forecast", "window"])
def test_a_stale_series_is_no_data_however_long_it_was_idle(config: ReclaimConfig) -> None:
    series = make_series(idle(600))
    long_spans = history_of([600] * 50, now=series.timestamps[-1] + 301)
    d = one(series, config, long_spans, now=float(series.timestamps[-1]) + 301)
    assert d.verdict is Verdict.NO_DATA
    assert "old" in d.reason


def test_the_forecast_never_acts_on_sparse_samples_even_when_history_says_spans_are_long() -> None:
    times = [i * 301.0 for i in range(200)]  # every sample after a gap: never an idle run
    series = make_series([0.0] * 200, times=times)
    history = history_of([600] * 200, now=times[-1])
    for end in range(1, 200, 17):
        d = one(series.upto(end), POLICY, history, now=times[end - 1])
        assert d.verdict is Verdict.WAIT and not d.act


def test_a_busy_sample_is_busy() -> None:
    d = one(make_series(idle(100) + busy(1)), POLICY)
    assert d.verdict is Verdict.BUSY


def test_memory_moving_is_activity_for_the_policy_but_not_for_the_baseline() -> None:
    memory = [20e9] * 99 + [22e9]
    series = Series.from_arrays([i * STEP for i in range(100)], [0.0] * 100, memory_used_bytes=memory)
    assert one(series, POLICY).verdict is Verdict.BUSY
    assert one(series, BASELINE).verdict is Verdict.RECLAIM


def test_grace_holds_a_young_pod() -> None:
    series = make_series(idle(60))
    now = float(series.timestamps[-1])
    assert one(series, BASELINE, started_at=now - 300).verdict is Verdict.GRACE
    assert one(series, BASELINE, started_at=now - 601).verdict is Verdict.RECLAIM


@pytest.mark.parametrize("minutes, verdict", [(30, Verdict.WAIT), (31, Verdict.RECLAIM)])
def test_the_window_rule_acts_once_the_run_spans_the_window(minutes: int, verdict: Verdict) -> None:
    d = one(make_series(busy(1) + idle(minutes)), BASELINE)
    assert d.verdict is verdict
    assert d.idle_since == STEP


def test_the_window_is_configurable() -> None:
    config = dataclasses.replace(BASELINE, window=WindowConfig(600.0))
    assert one(make_series(busy(1) + idle(11)), config).act


def test_the_forecast_waits_without_evidence() -> None:
    series = make_series(busy(1) + idle(60))
    d = one(series, POLICY, SpanHistory.empty(float(series.timestamps[-1])))
    assert d.verdict is Verdict.WAIT
    assert d.probability is not None and d.probability < POLICY.forecast.confidence


def test_the_forecast_acts_when_the_fleet_s_spans_this_old_lasted() -> None:
    series = make_series(busy(1) + idle(20))
    now = float(series.timestamps[-1])
    d = one(series, POLICY, history_of([240] * 40, now))
    assert d.verdict is Verdict.RECLAIM
    assert d.probability >= POLICY.forecast.confidence
    assert "P(idle 30m more)" in d.reason


def test_the_forecast_waits_when_spans_this_old_usually_ended_soon() -> None:
    series = make_series(busy(1) + idle(20))
    now = float(series.timestamps[-1])
    d = one(series, POLICY, history_of([25] * 30 + [240] * 10, now))
    assert d.verdict is Verdict.WAIT


def test_the_workload_s_own_history_outweighs_the_fleet() -> None:
    now = 10 * 24 * 3600.0
    fleet = {GpuKey(f"other-{i}"): make_series(busy(1) + idle(25) + busy(1), start=now - 3 * 3600)
             for i in range(40)}
    mine = GpuKey("ns/me", workload="ns/Deployment/web")
    sibling = GpuKey("ns/sibling", workload="ns/Deployment/web")
    trace = dict(fleet)
    # the workload's other pod had many long spans
    values: list[float] = []
    for _ in range(12):
        values += busy(1) + idle(120)
    trace[sibling] = make_series(values, start=now - len(values) * STEP - STEP)
    series = make_series(busy(1) + idle(20), start=now - 21 * STEP)
    trace[mine] = series
    history = SpanLog.from_series(trace, POLICY.detection).as_of(float(series.timestamps[-1]))
    [with_own] = decide([Observation(mine, series)], history, POLICY, float(series.timestamps[-1]))
    [without] = decide([Observation(GpuKey("ns/stranger"), series)], history, POLICY, float(series.timestamps[-1]))
    assert with_own.probability > without.probability
    assert with_own.probability > 0.5 > without.probability
    assert not without.act


def test_decide_is_pure_same_inputs_same_decisions() -> None:
    series = make_series(busy(1) + idle(50))
    now = float(series.timestamps[-1])
    history = history_of([90] * 20 + [10] * 20, now)
    first = decide([Observation(GpuKey("a"), series)], history, POLICY, now)
    second = decide([Observation(GpuKey("a"), series)], history, POLICY, now)
    assert first == second
    assert np.isfinite(first[0].elapsed_s)
