"""The forecast's O(log n) survival index against its plain definition, and its basic behaviour."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gpufleet.autoscaler.reclaim import ForecastConfig, GpuKey, SpanHistory
from gpufleet.autoscaler.reclaim.forecast import _direct, _index

CONFIG = ForecastConfig()
NOW = 100_000.0


def history(spans: list[tuple[float, float, bool, int]]) -> SpanHistory:
    """Spans as (age of start before now, length, completed, workload); lengths are cut to fit before now."""
    n = len(spans)
    start = np.array([NOW - s[0] for s in spans], dtype=np.float64)
    length = np.array([min(s[1], s[0]) for s in spans], dtype=np.float64)
    workloads = tuple(f"w{i}" for i in range(3))
    return SpanHistory(
        now=NOW, keys=tuple(GpuKey(f"p{i}") for i in range(n)), series=np.arange(n, dtype=np.int64),
        workload=np.array([s[3] for s in spans], dtype=np.int64), workloads=workloads, start=start,
        length_s=length, completed=np.array([s[2] for s in spans], dtype=bool), evidence_at=start + length,
        busy_before=np.full(n, np.nan), key_index={}, workload_of={w: i for i, w in enumerate(workloads)})


span = st.tuples(st.floats(0, 90_000), st.floats(0, 20_000), st.booleans(), st.integers(0, 2))


@settings(max_examples=150, deadline=None)
@given(spans=st.lists(span, max_size=40), anchors=st.lists(st.floats(0, 20_000), min_size=1, max_size=4),
       workload=st.integers(-1, 2))
def test_the_survival_index_matches_the_definition(spans, anchors, workload) -> None:
    h = history(spans)
    direct = _direct(h, workload, anchors, CONFIG)
    fleet = _index(h, None, CONFIG.half_life_s)
    own = _index(h, workload, CONFIG.half_life_s) if workload >= 0 else None
    for anchor, expected in zip(anchors, direct):
        got = (*fleet.sums(anchor, CONFIG.horizon_s),
               *(own.sums(anchor, CONFIG.horizon_s) if own is not None else (0.0, 0.0)))
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)
