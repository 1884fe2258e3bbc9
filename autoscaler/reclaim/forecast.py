"""The idle-span forecast: how likely the current idle span lasts another horizon. No I/O here.

An empirical survival estimate with censoring. For the current age ``e`` (time idle so far) and horizon
``H``, a span of the history is *at risk* when it reached age ``e`` and its fate over the next ``H`` is
known (it ended, or it is already ``e + H`` old, finished or still running); it *survived* when it lasted
to ``e + H``. Spans still running count, so a GPU idle for 20 h is evidence that 20-h spans exist.

- Fleet: ``p_fleet = survived / (at_risk + PRIOR_FAILURES)``, i.e. it starts from a span that did not
  last, so no evidence means P = 0 and nothing is acted on.
- Workload: ``p = (own_survived + prior_spans * p_fleet) / (own_at_risk + prior_spans)``, the fleet's
  estimate acting as a prior worth ``prior_spans`` spans of the workload's own.

Evidence is weighted by its age (``half_life_s``; load regimes change over a day). The estimate is also
taken at younger ages, down to ``lookback_horizons`` horizons earlier, and the largest is used: a span's
chance to last another horizon does not fall as it ages (the longer a GPU has been idle, the longer it
tends to stay idle), so a younger age's estimate stands in, cautiously, when the fleet has not yet seen
spans as old as this one. There, the span being forecast is evidence too: it did last from that age.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import ForecastConfig
from .history import SpanHistory
from .samples import GpuKey

ANCHORS_PER_HORIZON = 2  # younger ages tried per horizon of lookback
SELF_EVIDENCE = True  # the span being forecast counts as evidence at younger ages
PRIOR_FAILURES = 0.5  # pseudo-spans that did not last, added to the fleet's at-risk weight


@dataclass(frozen=True, slots=True)
class Forecast:
    probability: float  # P(the span lasts at least horizon more)
    own_at_risk: float  # the workload's spans that reached this age, weighted by recency
    own_survived: float  # ... and lasted another horizon
    fleet_at_risk: float  # the same over every workload
    fleet_survived: float


def remaining_probability(history: SpanHistory, key: GpuKey, run_start: float, elapsed_s: float,
                          config: ForecastConfig, busy_before: float = float("nan")) -> Forecast:
    """P(the idle span of ``key`` that began at ``run_start`` lasts ``horizon_s`` past ``elapsed_s``)."""
    h = config.horizon_s
    steps = int(round(config.lookback_horizons * ANCHORS_PER_HORIZON))
    anchors = sorted({max(0.0, elapsed_s - k * h / ANCHORS_PER_HORIZON) for k in range(steps + 1)})
    keep = history.length_s >= anchors[0]  # shorter spans are evidence at no age tried here
    length = history.length_s[keep]
    completed = history.completed[keep]
    start = history.start[keep]
    own = history.workload[keep] == history.workload_index(key)
    usable = np.ones(len(length), dtype=np.float64)
    width = config.similarity_width
    if width is not None and np.isfinite(busy_before):  # spans that began in a similar state count more
        gap = np.abs(history.busy_before[keep] - busy_before)
        usable = np.where(np.isnan(gap), 1.0, np.exp(-np.nan_to_num(gap) / width))
    me = history.series_index(key)
    if me >= 0 and not SELF_EVIDENCE:
        usable = usable * ~((history.series[keep] == me) & (start == run_start))
    best: Forecast | None = None
    for anchor in anchors:
        survived = length >= anchor + h  # finished or still running: lasted the horizon past the anchor
        at_risk = (length >= anchor) & (completed | survived)  # reached the anchor, fate over H known
        evidence_end = start + np.minimum(length, anchor + h)
        weight = np.exp2(-np.maximum(history.now - evidence_end, 0.0) / config.half_life_s) * usable
        w_risk = weight * at_risk
        w_survived = weight * survived
        fleet_risk, fleet_survived = float(w_risk.sum()), float(w_survived.sum())
        own_risk, own_survived = float(w_risk[own].sum()), float(w_survived[own].sum())
        fleet_p = fleet_survived / (fleet_risk + PRIOR_FAILURES)
        p = (own_survived + config.prior_spans * fleet_p) / (own_risk + config.prior_spans)
        if best is None or p > best.probability:
            best = Forecast(p, own_risk, own_survived, fleet_risk, fleet_survived)
    assert best is not None
    return best
