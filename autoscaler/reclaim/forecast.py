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
PRIOR_FAILURES = 0.5  # pseudo-spans that did not last, added to the fleet's at-risk weight


@dataclass(frozen=True, slots=True)
class Forecast:
    probability: float  # P(the span lasts at least horizon more)
    own_at_risk: float  # the workload's spans that reached this age, weighted by recency
    own_survived: float  # ... and lasted another horizon
    fleet_at_risk: float  # the same over every workload
    fleet_survived: float


class SurvivalIndex:
    """Recency-weighted at-risk and survived sums of some spans for any age, in O(log n) per age.

    With ``w = 2^-((now - evidence_end) / half_life)``, a survivor's weight is
    ``2^((anchor + h) / half_life) * 2^-((now - start) / half_life)`` and a failure's does not depend on
    the anchor, so spans sorted by length with cumulative weights answer every age.
    """

    def __init__(self, length: np.ndarray, completed: np.ndarray, start: np.ndarray, now: float,
                 half_life_s: float) -> None:
        order = np.argsort(length, kind="stable")
        self.length = length[order]
        started = start[order]
        lift = np.exp2(-(now - started) / half_life_s)
        fail = np.where(completed[order], np.exp2(-(now - started - self.length) / half_life_s), 0.0)
        self.lift_suffix = np.append(np.cumsum(lift[::-1])[::-1], 0.0)  # [j]: sum over spans j..n-1
        self.fail_prefix = np.concatenate(([0.0], np.cumsum(fail)))  # [j]: sum over spans 0..j-1
        self.half_life_s = half_life_s

    def sums(self, anchor: float, horizon_s: float) -> tuple[float, float]:
        """(at risk, survived) at age ``anchor``: see ``_direct`` for the plain definition."""
        lo = int(np.searchsorted(self.length, anchor, side="left"))
        hi = int(np.searchsorted(self.length, anchor + horizon_s, side="left"))
        survived = float(np.exp2((anchor + horizon_s) / self.half_life_s) * self.lift_suffix[hi])
        failed = float(self.fail_prefix[hi] - self.fail_prefix[lo])
        return survived + failed, survived


def _index(history: SpanHistory, workload: int | None, half_life_s: float) -> SurvivalIndex:
    key = ("survival", workload, half_life_s)
    index = history.cache.get(key)
    if index is None:
        rows = slice(None) if workload is None else history.workload_spans(workload)
        index = SurvivalIndex(history.length_s[rows], history.completed[rows], history.start[rows],
                              history.now, half_life_s)
        history.cache[key] = index
    return index


def remaining_probability(history: SpanHistory, key: GpuKey, run_start: float, elapsed_s: float,
                          config: ForecastConfig, busy_before: float = float("nan")) -> Forecast:
    """P(the idle span of ``key`` that began at ``run_start`` lasts ``horizon_s`` past ``elapsed_s``).

    ``run_start`` is part of the question (the span being forecast); it is evidence about itself only
    at younger ages, where it did last. ``busy_before`` feeds the optional similarity weighting.
    """
    h = config.horizon_s
    steps = int(round(config.lookback_horizons * ANCHORS_PER_HORIZON))
    anchors = sorted({max(0.0, elapsed_s - k * h / ANCHORS_PER_HORIZON) for k in range(steps + 1)})
    workload = history.workload_index(key)
    if config.similarity_width is not None and np.isfinite(busy_before):
        sums = _direct(history, workload, anchors, config, busy_before)
    else:
        fleet = _index(history, None, config.half_life_s)
        own = _index(history, workload, config.half_life_s) if workload >= 0 else None
        sums = [(*fleet.sums(a, h), *(own.sums(a, h) if own is not None else (0.0, 0.0))) for a in anchors]
    best: Forecast | None = None
    for fleet_risk, fleet_survived, own_risk, own_survived in sums:
        fleet_p = fleet_survived / (fleet_risk + PRIOR_FAILURES)
        p = (own_survived + config.prior_spans * fleet_p) / (own_risk + config.prior_spans)
        if best is None or p > best.probability:
            best = Forecast(p, own_risk, own_survived, fleet_risk, fleet_survived)
    assert best is not None
    return best


def _direct(history: SpanHistory, workload: int, anchors: list[float], config: ForecastConfig,
            busy_before: float = float("nan")) -> list[tuple[float, float, float, float]]:
    """(fleet at risk, fleet survived, own at risk, own survived) per anchor, straight from the definition."""
    h = config.horizon_s
    length, completed, start = history.length_s, history.completed, history.start
    own = history.workload == workload
    usable = np.ones(len(length), dtype=np.float64)
    if config.similarity_width is not None and np.isfinite(busy_before):  # similar hour before: more weight
        gap = np.abs(history.busy_before - busy_before)
        usable = np.where(np.isnan(gap), 1.0, np.exp(-np.nan_to_num(gap) / config.similarity_width))
    out = []
    for anchor in anchors:
        survived = length >= anchor + h  # finished or still running: lasted the horizon past the anchor
        at_risk = (length >= anchor) & (completed | survived)  # reached the anchor, fate over H known
        evidence_end = start + np.minimum(length, anchor + h)
        weight = np.exp2(-np.maximum(history.now - evidence_end, 0.0) / config.half_life_s) * usable
        w_risk = weight * at_risk
        w_survived = weight * survived
        out.append((float(w_risk.sum()), float(w_survived.sum()), float(w_risk[own].sum()),
                    float(w_survived[own].sum())))
    return out
