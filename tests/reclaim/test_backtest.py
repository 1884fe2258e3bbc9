"""The backtest's definitions (issue 9) on tiny hand-made series with known answers."""

from __future__ import annotations

import dataclasses

import pytest

from gpufleet.autoscaler.reclaim import GpuKey, ReclaimConfig, WindowConfig
from gpufleet.autoscaler.reclaim import backtest as bt

from .conftest import STEP, busy, idle, make_series


def baseline(window_min: float = 30) -> ReclaimConfig:
    return dataclasses.replace(ReclaimConfig(), window=WindowConfig(window_min * 60.0)).with_baseline()


def actions_of(values_or_series, config: ReclaimConfig | None = None) -> list[bt.Action]:
    series = values_or_series if not isinstance(values_or_series, list) else make_series(values_or_series)
    return bt.run({GpuKey("p"): series}, config or baseline())


def test_baseline_acts_at_the_first_sample_one_window_after_the_run_started() -> None:
    [action] = actions_of(busy(5) + idle(45) + busy(5))
    run_start = 5 * STEP
    assert action.at == run_start + 30 * 60  # the sample exactly one window later
    assert action.back == 50 * STEP  # first busy sample after it
    assert action.came_back


def test_baseline_does_not_act_on_a_run_one_sample_shorter_than_the_window() -> None:
    assert actions_of(busy(1) + idle(30) + busy(3)) == []  # 30 samples span 29 minutes
    assert len(actions_of(busy(1) + idle(31) + busy(3))) == 1


def test_with_an_uneven_step_the_baseline_waits_for_the_first_sample_at_least_a_window_in() -> None:
    times = [0.0, 100.0] + [100.0 + 170.0 * i for i in range(1, 12)] + [2100.0]
    values = [50.0] + [0.0] * 12 + [50.0]
    [action] = actions_of(make_series(values, times=times))
    assert action.at == 100.0 + 170.0 * 11  # 1970 s: first sample >= 100 + 1800


def test_a_gap_longer_than_five_minutes_restarts_the_idle_run() -> None:
    times = [i * STEP for i in range(20)] + [19 * STEP + 301 + i * STEP for i in range(40)]
    [action] = actions_of(make_series([0.0] * 60, times=times))
    assert action.at == 19 * STEP + 301 + 30 * 60
    assert not action.came_back


def test_a_gap_of_exactly_five_minutes_does_not_break_the_run() -> None:
    times = [i * STEP for i in range(20)] + [19 * STEP + 300 + i * STEP for i in range(40)]
    [action] = actions_of(make_series([0.0] * 60, times=times))
    assert action.at == 30 * 60  # counted from t=0, not from the sample after the gap (that would be 3240)


def test_after_the_pod_is_back_it_can_be_acted_on_again() -> None:
    acts = actions_of(idle(40) + busy(2) + idle(35) + busy(1))
    assert [a.at for a in acts] == [30 * 60, (42 + 30) * 60]
    assert [a.back for a in acts] == [40 * 60, 77 * 60]


def test_the_pod_is_back_only_at_a_busy_sample_so_gaps_after_an_action_count_as_reclaimed() -> None:
    times = [i * STEP for i in range(35)] + [5000.0, 5060.0, 5120.0]
    values = [0.0] * 35 + [0.0, 0.0, 80.0]
    [action] = actions_of(make_series(values, times=times))
    assert (action.at, action.back, action.came_back) == (1800.0, 5120.0, True)


def test_a_pod_never_busy_again_is_back_at_the_end_of_its_series_plus_one_step() -> None:
    [action] = actions_of(busy(2) + idle(33))
    assert action.at == 32 * 60
    assert action.back == 34 * 60 + STEP
    assert not action.came_back
    assert not action.premature()  # short, but the pod never came back


def test_premature_means_busy_again_within_thirty_minutes() -> None:
    quick = bt.Action(GpuKey("p"), at=0.0, back=1799.0, came_back=True)
    slow = bt.Action(GpuKey("p"), at=0.0, back=1800.0, came_back=True)
    assert quick.premature() and not slow.premature()


def test_score_counts_useful_time_only_for_actions_that_were_not_premature() -> None:
    acts = [bt.Action(GpuKey("a"), 0.0, 600.0, True), bt.Action(GpuKey("a"), 1000.0, 8200.0, True),
            bt.Action(GpuKey("b"), 0.0, 300.0, False)]
    s = bt.score(acts)
    assert (s.actions, s.premature_actions) == (3, 1)
    assert s.reclaimed_gpu_hours == pytest.approx((600 + 7200 + 300) / 3600)
    assert s.useful_gpu_hours == pytest.approx((7200 + 300) / 3600)


def test_the_threshold_is_inclusive() -> None:
    assert len(actions_of([1.0] * 40)) == 1
    assert actions_of([1.01] * 40) == []


def test_idle_gpu_hours_count_each_idle_sample_until_the_next_one() -> None:
    times = [0.0, 60.0, 120.0, 1000.0]  # the gap after 120 counts one step
    trace = {GpuKey("p"): make_series([0.0, 50.0, 0.0, 0.0], times=times)}
    assert bt.idle_gpu_hours(trace, 1.0, 300.0) == pytest.approx((60 + 60 + 60) / 3600)


def test_pods_are_independent_and_actions_use_only_their_own_samples() -> None:
    trace = {GpuKey("a"): make_series(idle(40) + busy(1)), GpuKey("b"): make_series(busy(41))}
    acts = bt.run(trace, baseline())
    assert [(a.key.pod, a.at) for a in acts] == [("a", 1800.0)]


def test_holdout_half_is_stable_and_splits_pods() -> None:
    halves = {bt.holdout_half(GpuKey(f"pod-{i}")) for i in range(20)}
    assert halves == {"design", "holdout"}
    assert bt.holdout_half(GpuKey("pod-1")) == bt.holdout_half(GpuKey("pod-1"))
