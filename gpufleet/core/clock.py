"""Clocks passed into everything that reads time (the extender's ledger, informers and event limiter,
the agent's sampler and GPU readers), so tests control time. No I/O here."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic seconds for expiry and rates; wall seconds for timestamps written to the API."""

    def monotonic(self) -> float: ...

    def now(self) -> float: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> float:
        return time.time()


class FakeClock:
    """Moves only when told to; safe to share between threads."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._lock = threading.Lock()
        self._wall = start
        self._mono = 1000.0

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def now(self) -> float:
        with self._lock:
            return self._wall

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"advancing a fake clock by {seconds} s: time only moves forward")
        with self._lock:
            self._wall += seconds
            self._mono += seconds
