"""Budgets: config validation, month-end forecast with daily seasonality, anomaly flags, alert levels."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from gpufleet.autoscaler.cost.budgets import (
    Budget,
    BudgetConfigError,
    alert_levels,
    anomaly,
    forecast,
    month_bounds,
    parse_budgets,
)

HOUR = 3600.0
JUNE = datetime(2026, 6, 1, tzinfo=UTC).timestamp()  # 30 days


def series(start: float, hours: int, rate) -> dict[float, float]:
    return {start + h * HOUR: rate(h) for h in range(hours)}


def test_constant_spend_forecasts_rate_times_hours_in_the_month():
    now = JUNE + 10 * 86400
    f = forecast(series(JUNE, 240, lambda h: 2.0), now)
    assert f.spent_usd == pytest.approx(480.0)
    assert f.month_end_usd == pytest.approx(2.0 * 30 * 24)


def test_daily_seasonality_is_learnt_and_projected():
    # 3 $/h from 08:00 to 20:00 UTC, 1 $/h otherwise: 48 $/day; 9.5 days in, so the known total is
    # the 30-day sum of the same pattern.
    def rate(h):
        return 3.0 if 8 <= h % 24 < 20 else 1.0
    now = JUNE + 9 * 86400 + 12 * HOUR
    f = forecast(series(JUNE, 9 * 24 + 12, rate), now)
    assert f.month_end_usd == pytest.approx(48.0 * 30, rel=1e-9)
    assert f.hour_factors[12] == pytest.approx(1.5)
    assert f.hour_factors[2] == pytest.approx(0.5)


def test_a_month_with_no_spend_forecasts_zero():
    f = forecast({}, JUNE + 5 * 86400)
    assert (f.spent_usd, f.month_end_usd) == (0.0, 0.0)


def test_month_bounds_cover_the_calendar_month():
    start, end = month_bounds(datetime(2026, 2, 14, tzinfo=UTC).timestamp())
    assert (end - start) / 86400 == 28


def test_a_jump_far_above_the_teams_own_baseline_is_flagged():
    now = JUNE + 10 * 86400
    history = series(JUNE, 240, lambda h: 1.0 + 0.1 * (h % 3))
    for h in range(3):
        history[now - (h + 1) * HOUR] = 9.0
    flag = anomaly(history, now)
    assert flag.flagged and flag.recent_usd_per_hour == pytest.approx(9.0)


@pytest.mark.parametrize("recent", [1.1, 2.5])
def test_steady_or_mildly_higher_spend_is_not_flagged(recent):
    now = JUNE + 10 * 86400
    history = series(JUNE, 240, lambda h: 1.0 + 0.5 * math.sin(h))
    for h in range(3):
        history[now - (h + 1) * HOUR] = recent
    assert not anomaly(history, now).flagged


def test_alert_levels_at_50_80_100_percent():
    levels = alert_levels(spent_usd=85.0, forecast_usd=130.0, budget=Budget("vision", 100.0))
    assert levels["spent"] == {0.5: True, 0.8: True, 1.0: False}
    assert levels["forecast"] == {0.5: True, 0.8: True, 1.0: True}


def test_budget_config_is_typed_and_every_error_is_reported_with_its_path():
    config = parse_budgets({"budgets": [{"team": "vision", "monthlyUSD": 1200}], "thresholds": [1, 0.5]})
    assert config.for_team("vision") == Budget("vision", 1200.0)
    assert config.thresholds == (0.5, 1.0)
    with pytest.raises(BudgetConfigError) as err:
        parse_budgets({"budgets": [{"team": "", "monthlyUSD": -1}, {"team": "x", "monthlyUSD": "lots"}, 3],
                       "thresholds": [], "extra": 1})
    assert err.value.problems == (
        "budgets[0].team: must be a non-empty string", "budgets[0].monthlyUSD: must be a number > 0",
        "budgets[1].monthlyUSD: must be a number > 0", "budgets[2]: must be a mapping with team and monthlyUSD",
        "thresholds: must be a non-empty list of numbers > 0 (fractions of the budget)",
        "<root>: unknown key(s) extra")
