"""Progress lines with a rate and the time left, for long steps of the demo and the benchmarks.

``Progress(what, total, emit)`` prints ``what 1,200/5,000 (24%) 310/s, 12 s left`` at most once per
``every_s`` seconds and once at the end. The clock is injected so tests can drive it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


def format_seconds(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``: short enough for a progress line."""
    if seconds < 0 or math.isnan(seconds):
        return "?"
    if seconds < 100:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s"


class Progress:
    """Counts done out of ``total`` and reports rate and time left through ``emit``."""

    def __init__(self, what: str, total: int, emit: Callable[[str], None], *, unit: str = "",
                 every_s: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 started: float | None = None) -> None:
        self.what = what
        self.total = max(0, total)
        self._emit = emit
        self._unit = unit
        self._every = every_s
        self._clock = clock
        self._start = clock() if started is None else started  # the rate counts from here
        self._last_emit: float | None = None
        self.done = 0

    @property
    def elapsed_s(self) -> float:
        return self._clock() - self._start

    def rate(self) -> float:
        """Items per second since the start (0 before the first)."""
        elapsed = self.elapsed_s
        return self.done / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        rate = self.rate()
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        unit = f" {self._unit}" if self._unit else ""
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        tail = f", {format_seconds(left)} left" if self.done < self.total else f" in {format_seconds(self.elapsed_s)}"
        return f"{self.what} {self.done:,}/{self.total:,}{unit}{share} {rate:,.0f}/s{tail}"

    def update(self, done: int) -> None:
        """Record ``done`` items so far; emit a line if ``every_s`` has passed since the last one."""
        self.done = done
        now = self._clock()
        if self._last_emit is None or now - self._last_emit >= self._every:
            self._last_emit = now
            self._emit(self.line())

    def finish(self, done: int | None = None) -> None:
        """Emit the final line."""
        if done is not None:
            self.done = done
        self._last_emit = self._clock()
        self._emit(self.line())
