"""The idle-span forecast: how likely the current idle span lasts another horizon. No I/O here.

Survival analysis with censoring, estimated from the spans around the current age ``e``. In the window of
ages ``[e - lookback * H, e + H)`` each span contributes the idle time it spent there (its exposure) and,
if it ended there, one event. Spans still running or cut by missing data contribute exposure only, so a
GPU that has been idle for 20 h is evidence that 20-h spans exist. The hazard (events per idle second) is
a Gamma-Poisson estimate, and ``P(span >= e + H | span >= e) = exp(-hazard * H)``:

- pooled over the fleet, with a pessimistic prior of one event per horizon of exposure (no evidence gives
  P = e^-1 = 0.37, so nothing is acted on until the fleet has seen long spans at this age);
- for the workload, with the pooled hazard as prior worth ``prior_horizons`` horizons of exposure.

Evidence is weighted by its age (``half_life_s``: load regimes change over a day). Including ages just
below ``e`` in the window errs on the side of caution when the hazard falls with age, as it does for
idle spans (the longer a GPU has been idle, the longer it tends to stay idle).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import ForecastConfig
from .history import SpanHistory
from .samples import GpuKey

ANCHORS_PER_HORIZON = 2
SELF_EVIDENCE = False
PRIOR_FAILURES = 1.0  # the fleet estimate starts from one span that did not last (no evidence: P = 0)


@dataclass(frozen=True, slots=True)
class Forecast:
    probability: float  # P(the span lasts at least horizon more)
    own_at_risk: float  # the workload's spans that reached this age, weighted by recency
    own_survived: float  # ... and lasted another horizon
    fleet_at_risk: float  # the same over every workload
    fleet_survived: float


def remaining_probability(history: SpanHistory, key: GpuKey, run_start: float, elapsed_s: float,
                          config: ForecastConfig) -> Forecast:
    """P(the idle span of ``key`` that began at ``run_start`` lasts ``horizon_s`` past ``elapsed_s``).

    The larger of the estimates anchored at ``elapsed_s`` and at ``lookback_horizons`` horizons earlier:
    a span's chance to last another horizon does not fall as it ages, so the younger age's estimate is a
    cautious stand-in when the fleet has not yet seen spans as old as this one.
    """
    h = config.horizon_s
    steps = int(round(config.lookback_horizons * ANCHORS_PER_HORIZON))
    anchors = sorted({max(0.0, elapsed_s - k * h / ANCHORS_PER_HORIZON) for k in range(steps + 1)})
    me = history.series_index(key)
    own = history.workload == history.workload_index(key)
    if me >= 0 and not SELF_EVIDENCE:  # the span being forecast is not evidence about itself
        others = ~((history.series == me) & (history.start == run_start))
    else:
        others = np.ones(len(history), dtype=bool)
    best: Forecast | None = None
    for anchor in anchors:
        f = _anchored(history, others, own, anchor, config)
        if best is None or f.probability > best.probability:
            best = f
    assert best is not None
    return best


def _anchored(history: SpanHistory, others: np.ndarray, own: np.ndarray, anchor: float,
              config: ForecastConfig) -> Forecast:
    h = config.horizon_s
    length = history.length_s
    survived = length >= anchor + h  # finished or still running: lasted the horizon past the anchor
    # at risk: reached the anchor, and its fate over the horizon is known
    at_risk = (length >= anchor) & (history.completed | survived)
    segment_end = history.start + np.minimum(length, anchor + h)
    weight = np.exp2(-np.maximum(history.now - segment_end, 0.0) / config.half_life_s) * others
    w_risk = weight * at_risk
    w_survived = weight * survived
    fleet_risk = float(w_risk.sum())
    fleet_survived = float(w_survived.sum())
    fleet_p = fleet_survived / (fleet_risk + PRIOR_FAILURES)
    own_risk = float(w_risk[own].sum())
    own_survived = float(w_survived[own].sum())
    prior = config.prior_horizons
    p = (own_survived + fleet_p * prior) / (own_risk + prior)
    return Forecast(p, own_risk, own_survived, fleet_risk, fleet_survived)
