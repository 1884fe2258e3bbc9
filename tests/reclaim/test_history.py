"""Idle spans and the history: what is known at ``now`` uses only samples up to ``now``."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gpufleet.autoscaler.reclaim import DetectionConfig, GpuKey, SpanLog
from gpufleet.autoscaler.reclaim.idle import ENDED_BY_ACTIVITY, ENDED_BY_GAP, current_run, spans

from .conftest import STEP, busy, idle, make_series

DETECTION = DetectionConfig()


def test_spans_end_at_the_first_busy_sample_or_are_censored_by_a_gap_or_the_end() -> None:
    times = [i * STEP for i in range(15)] + [14 * STEP + 400 + i * STEP for i in range(5)]
    values = idle(5) + busy(2) + idle(8) + idle(5)
    found = spans(make_series(values, times=times), DETECTION)
    assert [(s.start, s.length_s, s.ended_by) for s in found] == [
        (0.0, 5 * STEP, ENDED_BY_ACTIVITY),
        (7 * STEP, 7 * STEP, ENDED_BY_GAP),  # last idle sample before the gap is 7 steps later
        (14 * STEP + 400, 4 * STEP, ENDED_BY_GAP),  # still idle at the end of the series
    ]


def test_current_run_starts_after_the_last_busy_sample_or_gap() -> None:
    run = current_run(make_series(busy(3) + idle(10)), DETECTION)
    assert run is not None and run.start == 3 * STEP and run.elapsed_s == 9 * STEP and run.samples == 10
    assert current_run(make_series(idle(3) + busy(1)), DETECTION) is None


@settings(max_examples=60, deadline=None)
@given(pattern=st.lists(st.sampled_from(["idle", "busy", "gap"]), min_size=1, max_size=60),
       cut=st.integers(min_value=1, max_value=60))
def test_history_as_of_now_equals_the_history_of_the_samples_seen_by_now(pattern: list[str], cut: int) -> None:
    times, values, t = [], [], 0.0
    for kind in pattern:
        t += 1000.0 if kind == "gap" else STEP
        times.append(t)
        values.append(50.0 if kind == "busy" else 0.0)
    series = make_series(values, times=times)
    cut = min(cut, len(series))
    now = float(series.timestamps[cut - 1])
    full = SpanLog.from_series({GpuKey("p"): series}, DETECTION).as_of(now)
    seen = SpanLog.from_series({GpuKey("p"): series.upto(cut)}, DETECTION).as_of(now)
    known = full.completed  # finished spans must agree exactly
    assert np.array_equal(full.start[known], seen.start[seen.completed])
    assert np.array_equal(full.length_s[known], seen.length_s[seen.completed])
    # everything else was at least as long as seen by now, never longer than now allows
    assert np.all(full.length_s <= now - full.start)
    assert len(full) == len(seen)


def test_a_log_built_from_kept_spans_equals_one_built_from_the_samples() -> None:
    series = make_series(idle(5) + busy(2) + idle(40) + busy(1) + idle(3))
    key = GpuKey("p", workload="w")
    from_samples = SpanLog.from_series({key: series}, DETECTION).as_of(float(series.timestamps[-1]))
    kept = SpanLog.from_spans({key: spans(series, DETECTION)}).as_of(float(series.timestamps[-1]))
    for name in ("start", "length_s", "completed", "evidence_at", "workload"):
        assert np.array_equal(getattr(from_samples, name), getattr(kept, name)), name
