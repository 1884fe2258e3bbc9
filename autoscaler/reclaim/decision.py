"""The decision: observations + span history + policy + clock -> one decision per pod GPU. No I/O here.

Level-triggered and pure: each call looks only at what it is given, so the controller can call it every
pass, after a restart or on another replica and get the same answer; the backtest calls it at every
sample of a trace. ``RECLAIM`` means "the evidence says act now"; the controller adds what depends on the
cluster (opt-in, snooze, do-not-disrupt, notice, budgets, PDBs) and skips with its own reasons.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .config import POLICY_WINDOW, ReclaimConfig
from .forecast import Forecast, remaining_probability
from .history import BUSY_WINDOW_S, SpanHistory
from .idle import busy_share_before, current_run, idle_mask
from .samples import GpuKey, Observation


class Verdict(enum.StrEnum):
    RECLAIM = "reclaim"  # idle, and the policy is confident enough to act
    WAIT = "wait"  # idle, not (yet) confident
    BUSY = "busy"  # the newest sample is not idle
    NO_DATA = "no-data"  # no samples, or the newest is stale: never acted on
    GRACE = "grace"  # the pod started less than the grace period ago


@dataclass(frozen=True, slots=True)
class Decision:
    key: GpuKey
    verdict: Verdict
    reason: str  # one line for logs and Events
    idle_since: float | None = None  # first sample of the current idle run (the gpufleet.io/idle-since value)
    elapsed_s: float = 0.0  # newest sample - idle_since
    probability: float | None = None  # the forecast's P(idle for another horizon), forecast policy only
    evidence: Mapping[str, float] = field(default_factory=dict)  # numbers behind the verdict

    @property
    def act(self) -> bool:
        return self.verdict is Verdict.RECLAIM


def decide(observations: Iterable[Observation], history: SpanHistory, config: ReclaimConfig,
           now: float) -> list[Decision]:
    """One decision per observation, in order. ``history`` should be known at ``now`` (``SpanLog.as_of``)."""
    return [decide_one(o, history, config, now) for o in observations]


def decide_one(observation: Observation, history: SpanHistory, config: ReclaimConfig, now: float) -> Decision:
    key, series = observation.key, observation.series
    detection = config.detection
    if observation.started_at is not None and now - observation.started_at < config.grace_s:
        return Decision(key, Verdict.GRACE, f"pod started {_dur(now - observation.started_at)} ago, "
                                            f"grace {_dur(config.grace_s)}")
    if len(series) == 0:
        return Decision(key, Verdict.NO_DATA, "no samples")
    newest = float(series.timestamps[-1])
    if now - newest > detection.stale_after_s:
        return Decision(key, Verdict.NO_DATA, f"newest sample is {_dur(now - newest)} old "
                                              f"(stale after {_dur(detection.stale_after_s)})")
    idle = idle_mask(series, detection)
    run = current_run(series, detection, idle)
    if run is None:
        u = float(series.utilisation_percent[-1])
        return Decision(key, Verdict.BUSY, f"active: utilisation {u:g}% (idle <= {detection.threshold_percent:g}%)"
                        if u > detection.threshold_percent else "active: memory, power or processes changed")
    evidence: dict[str, float] = {"samples": float(run.samples), "idle_since": run.start}
    if run.elapsed_s < detection.min_idle_s:
        return Decision(key, Verdict.WAIT, f"idle {_dur(run.elapsed_s)} over {run.samples} samples, less than "
                        f"the minimum {_dur(detection.min_idle_s)}", run.start, run.elapsed_s, None, evidence)
    if config.policy == POLICY_WINDOW:
        window = config.window.window_s
        evidence["window_s"] = window
        verdict = Verdict.RECLAIM if run.elapsed_s >= window else Verdict.WAIT
        return Decision(key, verdict, f"idle {_dur(run.elapsed_s)} over {run.samples} samples, window "
                        f"{_dur(window)}", run.start, run.elapsed_s, None, evidence)
    busy_before = busy_share_before(series, detection, run.start, BUSY_WINDOW_S)
    f = remaining_probability(history, key, run.start, run.elapsed_s, config.forecast, busy_before)
    evidence.update(_forecast_evidence(f))
    confident = f.probability >= config.forecast.confidence
    reason = (f"idle {_dur(run.elapsed_s)}; P(idle {_dur(config.forecast.horizon_s)} more) = "
              f"{f.probability:.2f} {'>=' if confident else '<'} {config.forecast.confidence:g} "
              f"({f.own_survived:.1f} of {f.own_at_risk:.1f} own and {f.fleet_survived:.1f} of "
              f"{f.fleet_at_risk:.1f} fleet spans this old lasted it, recency-weighted)")
    return Decision(key, Verdict.RECLAIM if confident else Verdict.WAIT, reason, run.start, run.elapsed_s,
                    f.probability, evidence)


def _forecast_evidence(f: Forecast) -> dict[str, float]:
    return {"own_at_risk": f.own_at_risk, "own_survived": f.own_survived, "fleet_at_risk": f.fleet_at_risk,
            "fleet_survived": f.fleet_survived}


def _dur(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
