"""Cron schedules (five fields or @macros, as CronJob accepts) and "is now inside an allowed window". No I/O.

A window opens at each minute the schedule matches, in its IANA time zone, and stays open for its
duration; so ``0 22 * * 1-5`` for ``8h`` in ``Europe/Berlin`` allows actions on weekday nights, Berlin
time, across daylight-saving changes. Day-of-month and day-of-week combine as cron does: when both are
restricted, either may match.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
          "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
_MAX_LOOKBACK_MIN = 8 * 24 * 60  # longest window searched back (a weekly window plus a day)


class CronError(ValueError):
    """A schedule is not valid cron."""


@dataclass(frozen=True, slots=True)
class CronSchedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_any: bool
    weekdays_any: bool

    @classmethod
    def parse(cls, text: str) -> CronSchedule:
        expr = MACROS.get(text.strip(), text)
        parts = expr.split()
        if len(parts) != 5:
            raise CronError(f"{text!r}: expected 5 fields (minute hour day month weekday) or a @macro")
        sets = [_field(p, name, low, high) for p, (name, low, high) in zip(parts, _FIELDS, strict=True)]
        weekdays = frozenset(d % 7 for d in sets[4])
        return cls(sets[0], sets[1], sets[2], sets[3], weekdays, parts[2] == "*", parts[4] == "*")

    def matches(self, t: datetime) -> bool:
        if t.minute not in self.minutes or t.hour not in self.hours or t.month not in self.months:
            return False
        day_ok = t.day in self.days
        weekday_ok = (t.isoweekday() % 7) in self.weekdays
        if self.days_any or self.weekdays_any:
            return day_ok and weekday_ok
        return day_ok or weekday_ok


def _field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if body == "*":
                start, stop = low, high
            elif "-" in body:
                a, b = body.split("-", 1)
                start, stop = int(a), int(b)
            else:
                start = int(body)
                stop = high if step_text else start
        except ValueError:
            raise CronError(f"{name} field {part!r}: expected *, N, N-M, a list or /STEP") from None
        if step < 1 or not low <= start <= stop <= high:
            raise CronError(f"{name} field {part!r}: values must lie in {low}-{high}, steps >= 1")
        values.update(range(start, stop + 1, step))
    return frozenset(values)


def window_open(schedules: Sequence[tuple[CronSchedule, float, ZoneInfo]], now: float) -> bool:
    """True when no windows are configured or ``now`` (unix s) lies in one of them."""
    if not schedules:
        return True
    for schedule, duration_s, zone in schedules:
        local = datetime.fromtimestamp(now, zone).replace(second=0, microsecond=0)
        span = min(int(duration_s // 60), _MAX_LOOKBACK_MIN)
        if duration_s % 60 == 0 and span > 0:
            span -= 1  # a window of exactly N minutes ends before the start of minute N
        for back in range(span + 1):
            start = datetime.fromtimestamp(local.timestamp() - 60 * back, zone)
            if schedule.matches(start) and now < start.timestamp() + duration_s:
                return True
    return False
