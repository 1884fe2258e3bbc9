"""Team GPU budgets: typed config, month-end forecast with daily seasonality, spend anomalies, alert levels.

Config (YAML/JSON now; the CRD ``GpuBudget`` of the GitOps issue later carries the same fields)::

    budgets:
      - team: vision          # the team label value ("unassigned" for unlabelled pods)
        monthlyUSD: 12000
        timeZone: Europe/Berlin  # optional IANA zone in which its months (and days) start; default UTC
    thresholds: [0.5, 0.8, 1.0]

Forecast: spend so far this month + for every remaining hour, the recent mean hourly spend x that
hour-of-day's factor (mean spend at that hour / mean spend, over up to ``history_days`` whole days;
flat with less than one day). Months, days and hours of day are those of the budget's time zone
(zoneinfo, DST-safe: what remains is counted in real seconds, so a 23-h or 25-h day counts as such);
an hour's spend belongs to the local hour in which it starts. Anomaly: the mean rate over the last
``window_hours`` is above both ``factor`` x and ``sigmas`` standard deviations over the team's own
hourly rate in the ``baseline_hours`` before. Hourly series are {hour start (epoch s): USD}; hours absent are 0. No I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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
    time_zone: str = "UTC"  # IANA zone in which its months start


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
        team, usd, zone = item.get("team"), item.get("monthlyUSD"), item.get("timeZone", "UTC")
        if not isinstance(team, str) or not team:
            problems.append(f"{path}.team: must be a non-empty string")
        elif team in seen:
            problems.append(f"{path}.team: {team!r} appears twice")
        if isinstance(usd, bool) or not isinstance(usd, int | float) or not usd > 0:
            problems.append(f"{path}.monthlyUSD: must be a number > 0")
        zone_problem = time_zone_problem(zone)
        if zone_problem:
            problems.append(f"{path}.timeZone: {zone_problem}")
        if isinstance(team, str) and team and isinstance(usd, int | float) and not isinstance(usd, bool) and usd > 0 \
                and not zone_problem:
            seen.add(team)
            budgets.append(Budget(team, float(usd), zone))
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


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def time_zone_problem(name: object) -> str | None:
    """Why ``name`` is not an IANA time zone, or None when it is."""
    try:
        _zone(name)  # type: ignore[arg-type]
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        return f"unknown IANA time zone {name!r} (e.g. UTC, Europe/Berlin)"
    return None


def month_bounds(now: float, time_zone: str = "UTC") -> tuple[float, float]:
    """Start and end (epoch s) of the month containing ``now``, months starting in ``time_zone``."""
    zone = _zone(time_zone)
    day = datetime.fromtimestamp(now, zone)
    start = datetime(day.year, day.month, 1, tzinfo=zone)
    end = datetime(day.year + day.month // 12, day.month % 12 + 1, 1, tzinfo=zone)
    return start.timestamp(), end.timestamp()


def _midnight(now: float, days_before: int, zone: ZoneInfo) -> float:
    """Epoch s of the local midnight that starts the day ``days_before`` days before ``now``'s day."""
    day = datetime.fromtimestamp(now, zone).date() - timedelta(days=days_before)
    return datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()


def _hours_of_day(first_hour: int, count: int, zone: ZoneInfo) -> np.ndarray:
    """Local hour of day (0..23) in which each of ``count`` UTC hours from hour number ``first_hour`` starts."""
    if zone.key == "UTC":
        return ((first_hour + np.arange(count)) % 24).astype(int)
    return np.array([datetime.fromtimestamp((first_hour + k) * HOUR, zone).hour for k in range(count)], dtype=int)


@dataclass(frozen=True)
class Forecast:
    spent_usd: float
    month_end_usd: float
    rate_usd_per_hour: float
    hour_factors: tuple[float, ...]  # 24 hour-of-day factors (the budget's time zone), mean 1


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


def forecast(hourly: Mapping[float, float], now: float, history_days: int = 14, rate_days: int = 7,
             time_zone: str = "UTC") -> Forecast:
    """Month-end spend forecast for one team (see the module docstring)."""
    zone = _zone(time_zone)
    start, end = month_bounds(now, time_zone)
    spent = sum(v for t, v in hourly.items() if start <= t < now)
    first_seen = min((t for t, v in hourly.items() if v > 0), default=now)
    days = int(min(history_days, max(0.0, (math.floor(now / HOUR) * HOUR - first_seen)) // 86400))
    factors = np.ones(24)
    if days >= 1:  # whole local days before today (23, 24 or 25 hours each)
        history_start, history_end = _midnight(now, days, zone), _midnight(now, 0, zone)
        series = _hours(hourly, history_start, history_end)
        mean = series.mean()
        if mean > 0:
            hours_of_day = _hours_of_day(math.floor(history_start / HOUR), len(series), zone)
            seen = np.bincount(hours_of_day, minlength=24)
            by_hour = np.bincount(hours_of_day, weights=series, minlength=24)
            factors = np.divide(by_hour, seen, out=np.full(24, mean), where=seen > 0) / mean
    rate_span = min(rate_days * 86400.0, max(HOUR, math.floor(now / HOUR) * HOUR - first_seen))
    recent = _hours(hourly, math.floor(now / HOUR) * HOUR - rate_span, math.floor(now / HOUR) * HOUR)
    if days >= 1 and len(recent):
        # de-seasonalise the recent hours before averaging, so a partial day does not bias the rate
        weights = factors[_hours_of_day(math.floor(now / HOUR) - len(recent), len(recent), zone)]
        rate = float(recent.sum() / weights.sum()) if weights.sum() > 0 else 0.0
    else:
        rate = float(recent.mean()) if len(recent) else 0.0
    remaining = 0.0
    t = now
    left = _hours_of_day(math.floor(now / HOUR), max(0, math.ceil(end / HOUR) - math.floor(now / HOUR)), zone)
    for hour_of_day in left:
        if t >= end:
            break
        step = min(end, (math.floor(t / HOUR) + 1) * HOUR) - t
        remaining += rate * factors[hour_of_day] * step / HOUR
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
