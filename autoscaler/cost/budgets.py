"""Team GPU budgets: typed config, month-end forecast with daily seasonality, spend anomalies, alert levels.

Config (YAML/JSON now; the CRD ``GpuBudget`` of the GitOps issue later carries the same fields)::

    budgets:
      - team: vision          # the team label value ("unassigned" for unlabelled pods)
        monthlyUSD: 12000
    thresholds: [0.5, 0.8, 1.0]

Forecast: spend so far this month + for every remaining hour, the recent mean hourly spend x that
hour-of-day's factor (mean spend at that hour / mean spend, over up to ``history_days`` whole days;
flat with less than one day). Anomaly: the mean rate over the last ``window_hours`` is above both
``factor`` x and ``sigmas`` standard deviations over the team's own hourly rate in the
``baseline_hours`` before. Hourly series are {hour start (epoch s): USD}; hours absent are 0. No I/O.
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

HOUR = 3600.0
DEFAULT_THRESHOLDS = (0.5, 0.8, 1.0)


class BudgetConfigError(ValueError):
    """Invalid budget config; ``problems`` lists every error with its path."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = tuple(problems)


@dataclass(frozen=True)
class Budget:
    team: str
    monthly_usd: float


@dataclass(frozen=True)
class BudgetConfig:
    budgets: tuple[Budget, ...] = ()
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS

    def for_team(self, team: str) -> Budget | None:
        return next((b for b in self.budgets if b.team == team), None)


def parse_budgets(data: object) -> BudgetConfig:
    """Build a config from parsed YAML/JSON; every problem is collected with its path."""
    problems: list[str] = []
    if not isinstance(data, Mapping):
        raise BudgetConfigError(["<root>: must be a mapping with a budgets list"])
    raw = data.get("budgets", [])
    budgets: list[Budget] = []
    if not isinstance(raw, list):
        problems.append("budgets: must be a list")
        raw = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        path = f"budgets[{i}]"
        if not isinstance(item, Mapping):
            problems.append(f"{path}: must be a mapping with team and monthlyUSD")
            continue
        team, usd = item.get("team"), item.get("monthlyUSD")
        if not isinstance(team, str) or not team:
            problems.append(f"{path}.team: must be a non-empty string")
        elif team in seen:
            problems.append(f"{path}.team: {team!r} appears twice")
        if isinstance(usd, bool) or not isinstance(usd, int | float) or not usd > 0:
            problems.append(f"{path}.monthlyUSD: must be a number > 0")
        if isinstance(team, str) and team and isinstance(usd, int | float) and not isinstance(usd, bool) and usd > 0:
            seen.add(team)
            budgets.append(Budget(team, float(usd)))
    thresholds = data.get("thresholds", list(DEFAULT_THRESHOLDS))
    if not isinstance(thresholds, list) or not thresholds or not all(
            isinstance(t, int | float) and not isinstance(t, bool) and t > 0 for t in thresholds):
        problems.append("thresholds: must be a non-empty list of numbers > 0 (fractions of the budget)")
        thresholds = list(DEFAULT_THRESHOLDS)
    unknown = set(data) - {"budgets", "thresholds"}
    if unknown:
        problems.append(f"<root>: unknown key(s) {', '.join(sorted(unknown))}")
    if problems:
        raise BudgetConfigError(problems)
    return BudgetConfig(tuple(budgets), tuple(sorted(float(t) for t in thresholds)))


def month_bounds(now: float) -> tuple[float, float]:
    """Start and end (epoch s, UTC) of the month containing ``now``."""
    day = datetime.fromtimestamp(now, UTC)
    start = datetime(day.year, day.month, 1, tzinfo=UTC)
    days = calendar.monthrange(day.year, day.month)[1]
    return start.timestamp(), start.timestamp() + days * 86400.0


@dataclass(frozen=True)
class Forecast:
    spent_usd: float
    month_end_usd: float
    rate_usd_per_hour: float
    hour_factors: tuple[float, ...]  # 24 hour-of-day factors (UTC), mean 1


def _hours(hourly: Mapping[float, float], start: float, end: float) -> np.ndarray:
    """Spend per whole hour in [start, end), zeros where absent."""
    first = math.floor(start / HOUR)
    count = max(0, math.floor(end / HOUR) - first)
    out = np.zeros(count)
    for t, usd in hourly.items():
        k = math.floor(t / HOUR) - first
        if 0 <= k < count:
            out[k] += usd
    return out


def forecast(hourly: Mapping[float, float], now: float, history_days: int = 14, rate_days: int = 7) -> Forecast:
    """Month-end spend forecast for one team (see the module docstring)."""
    start, end = month_bounds(now)
    spent = sum(v for t, v in hourly.items() if start <= t < now)
    first_seen = min((t for t, v in hourly.items() if v > 0), default=now)
    days = int(min(history_days, max(0.0, (math.floor(now / HOUR) * HOUR - first_seen)) // 86400))
    factors = np.ones(24)
    history_end = math.floor(now / 86400) * 86400  # whole UTC days before today
    if days >= 1:
        series = _hours(hourly, history_end - days * 86400, history_end).reshape(days, 24)
        mean = series.mean()
        if mean > 0:
            factors = series.mean(axis=0) / mean
    rate_span = min(rate_days * 86400.0, max(HOUR, math.floor(now / HOUR) * HOUR - first_seen))
    recent = _hours(hourly, math.floor(now / HOUR) * HOUR - rate_span, math.floor(now / HOUR) * HOUR)
    if days >= 1 and len(recent):
        # de-seasonalise the recent hours before averaging, so a partial day does not bias the rate
        hours_of_day = ((math.floor(now / HOUR) - len(recent) + np.arange(len(recent))) % 24).astype(int)
        weights = factors[hours_of_day]
        rate = float(recent.sum() / weights.sum()) if weights.sum() > 0 else 0.0
    else:
        rate = float(recent.mean()) if len(recent) else 0.0
    remaining = 0.0
    t = now
    while t < end:
        step = min(end, (math.floor(t / HOUR) + 1) * HOUR) - t
        remaining += rate * factors[int(t // HOUR) % 24] * step / HOUR
        t += step
    return Forecast(spent, spent + remaining, rate, tuple(float(f) for f in factors))


@dataclass(frozen=True)
class Anomaly:
    flagged: bool
    recent_usd_per_hour: float
    baseline_usd_per_hour: float
    baseline_std: float


def anomaly(hourly: Mapping[float, float], now: float, window_hours: int = 3, baseline_hours: int = 168,
            factor: float = 3.0, sigmas: float = 4.0) -> Anomaly:
    """Whether a team's recent spend rate jumped far above its own recent baseline."""
    end = math.floor(now / HOUR) * HOUR
    recent = _hours(hourly, end - window_hours * HOUR, end)
    before = _hours(hourly, end - (window_hours + baseline_hours) * HOUR, end - window_hours * HOUR)
    rate = float(recent.mean()) if len(recent) else 0.0
    mean = float(before.mean()) if len(before) else 0.0
    std = float(before.std()) if len(before) else 0.0
    flagged = rate > 0 and rate > factor * mean and rate > mean + sigmas * std
    return Anomaly(flagged, rate, mean, std)


def alert_levels(spent_usd: float, forecast_usd: float, budget: Budget,
                 thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> dict[str, dict[float, bool]]:
    """For each threshold: whether spend so far ("spent") and the forecast ("forecast") reach it."""
    return {"spent": {t: spent_usd >= t * budget.monthly_usd for t in thresholds},
            "forecast": {t: forecast_usd >= t * budget.monthly_usd for t in thresholds}}
