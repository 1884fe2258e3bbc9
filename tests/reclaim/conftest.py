"""Helpers for the reclaim tests: hand-made series with a 60-s step."""

from __future__ import annotations

import pytest

from gpufleet.autoscaler.reclaim import GpuKey, Series

STEP = 60.0


def make_series(values: list[float], start: float = 0.0, step: float = STEP,
                times: list[float] | None = None) -> Series:
    """Utilisation ``values`` every ``step`` seconds from ``start`` (or at ``times``)."""
    t = times if times is not None else [start + i * step for i in range(len(values))]
    return Series.from_arrays(t, values)


def idle(minutes: int) -> list[float]:
    """``minutes`` idle samples (one a minute)."""
    return [0.0] * minutes


def busy(minutes: int) -> list[float]:
    return [50.0] * minutes


@pytest.fixture
def pod() -> GpuKey:
    return GpuKey(pod="ns/pod-a")
