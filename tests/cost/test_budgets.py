"""Budgets: config validation, month-end forecast with daily seasonality, anomaly flags, alert levels."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

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


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_a_month_starts_in_the_budgets_time_zone():
    now = at("2026-12-01T03:00:00+00:00")  # December in UTC, still November in Los Angeles
    assert month_bounds(now) == (at("2026-12-01T00:00:00+00:00"), at("2027-01-01T00:00:00+00:00"))
    start, end = month_bounds(now, "America/Los_Angeles")
    assert (start, end) == (at("2026-11-01T00:00:00-07:00"), at("2026-12-01T00:00:00-08:00"))
    assert (end - start) / HOUR == 30 * 24 + 1  # DST ends on 1 November: one 25-h day
    spend = series(at("2026-11-01T07:00:00+00:00"), 30 * 24 - 4, lambda h: 1.0)  # to 2026-12-01T03:00Z
    assert forecast(spend, now).spent_usd == pytest.approx(3.0)
    la = forecast(spend, now, time_zone="America/Los_Angeles")
    assert la.spent_usd == pytest.approx(30 * 24 - 4)
    assert la.month_end_usd == pytest.approx(30 * 24 + 1)  # 5 more hours until midnight PST


@pytest.mark.parametrize(("month_start", "now", "hours_in_month", "hours_elapsed"), [
    ("2026-03-01T00:00:00+01:00", "2026-03-30T00:00:00+02:00", 31 * 24 - 1, 29 * 24 - 1),  # 29 Mar: 23 h
    ("2026-10-01T00:00:00+02:00", "2026-10-26T00:00:00+01:00", 31 * 24 + 1, 25 * 24 + 1),  # 25 Oct: 25 h
])
def test_a_berlin_dst_month_counts_real_hours(month_start, now, hours_in_month, hours_elapsed):
    start, end = month_bounds(at(now), "Europe/Berlin")
    assert (start, end) == (at(month_start), start + hours_in_month * HOUR)
    assert (at(now) - start) / (end - start) == pytest.approx(hours_elapsed / hours_in_month, rel=1e-12)
    f = forecast(series(start, hours_elapsed, lambda h: 1.0), at(now), time_zone="Europe/Berlin")
    assert f.spent_usd == pytest.approx(hours_elapsed)
    assert f.month_end_usd == pytest.approx(hours_in_month)  # not 24 h x 31 days


def test_daily_seasonality_follows_local_hours_across_a_dst_change():
    # 3 $/h from 08:00 to 20:00 Berlin time, 1 $/h otherwise: each day 48 $ (49 $ on the 25-h day).
    zone = "Europe/Berlin"
    start = month_bounds(at("2026-10-15T00:00:00+00:00"), zone)[0]
    now = at("2026-10-27T12:00:00+01:00")

    def rate(h):
        return 3.0 if 8 <= datetime.fromtimestamp(start + h * HOUR, ZoneInfo(zone)).hour < 20 else 1.0
    f = forecast(series(start, round((now - start) / HOUR), rate), now, time_zone=zone)
    assert f.month_end_usd == pytest.approx(31 * 48 + 1, rel=1e-9)
    low, high = f.hour_factors[7], f.hour_factors[8]  # factors by Berlin hour, before and after the change
    assert high == pytest.approx(3 * low) and f.hour_factors[19] == high and f.hour_factors[20] == low


def test_a_budget_time_zone_is_parsed_and_an_unknown_one_refused():
    config = parse_budgets({"budgets": [{"team": "vision", "monthlyUSD": 10, "timeZone": "Asia/Kolkata"},
                                        {"team": "nlp", "monthlyUSD": 10}]})
    assert config.budgets == (Budget("vision", 10.0, "Asia/Kolkata"), Budget("nlp", 10.0, "UTC"))
    with pytest.raises(BudgetConfigError) as err:
        parse_budgets({"budgets": [{"team": "vision", "monthlyUSD": 10, "timeZone": "Mars/Olympus"}]})
    assert err.value.problems == (
        "budgets[0].timeZone: unknown IANA time zone 'Mars/Olympus' (e.g. UTC, Europe/Berlin)",)
