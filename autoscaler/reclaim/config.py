"""The reclaim policy's settings: one typed object, grouped like the ReclaimPolicy CRD it will become.

Field names carry the unit (``_s`` seconds, ``_percent``, ``_bytes``, ``_watts``); every field has a default.
``ReclaimConfig.from_dict`` reads the camelCase spelling a CRD would use and reports every bad field with
its path at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

from gpufleet.core.config.schema import camel

MINUTE = 60.0

POLICY_FORECAST = "forecast"  # gpufleet: forecast of how long the current idle span will last
POLICY_WINDOW = "window"  # gpu-pruner: idle for the whole window
POLICIES = (POLICY_FORECAST, POLICY_WINDOW)


class ReclaimConfigError(ValueError):
    """One or more settings are invalid; ``errors`` lists them as ``path: what is wrong``."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("invalid reclaim policy: " + "; ".join(errors))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class DetectionConfig:
    """When a sample counts as idle. No sample (or a gap longer than ``max_gap_s``) is never idle."""

    threshold_percent: float = 1.0  # utilisation <= this is idle, %
    memory_activity_bytes: float | None = 256 * 2**20  # |change of memory used| above this is activity; None: off
    power_active_watts: float | None = None  # power draw above this is activity; None: off (GPU-model specific)
    process_change_is_activity: bool = True  # a change of the GPU's process count is activity
    max_gap_s: float = 5 * MINUTE  # samples further apart than this break an idle run
    stale_after_s: float = 5 * MINUTE  # newest sample older than this: no data, never acted on
    min_idle_s: float = 5 * MINUTE  # an idle run shorter than this is never acted on (at least one max gap)


@dataclass(frozen=True, slots=True)
class ForecastConfig:
    """The idle-span forecast: act when P(the span lasts another ``horizon_s``) >= ``confidence``."""

    horizon_s: float = 30 * MINUTE  # the span must last at least this much longer after the action, s
    confidence: float = 0.9  # required probability (1 - the share of premature actions one accepts)
    half_life_s: float = 6 * 3600.0  # weight of evidence halves with this age (load regimes change), s
    prior_spans: float = 2.0  # weight of the fleet's (pooled) estimate, in spans of the workload's own
    similarity_width: float | None = None  # weigh spans by how busy the hour before them was (busy-share
    # difference that weighs 1/e, e.g. 0.1); None: off (no gain measured on GenTD26)
    lookback_horizons: float = 1.0  # evidence window starts this many horizons before the elapsed time


@dataclass(frozen=True, slots=True)
class WindowConfig:
    """gpu-pruner's rule: act once the current idle run is at least ``window_s`` old."""

    window_s: float = 30 * MINUTE


@dataclass(frozen=True, slots=True)
class ReclaimConfig:
    """Everything the decision function needs; the controller adds modes, budgets and schedules."""

    policy: str = POLICY_FORECAST  # "forecast" (gpufleet) or "window" (gpu-pruner)
    grace_s: float = 10 * MINUTE  # a pod younger than this is never acted on, s
    notice_s: float = 15 * MINUTE  # idle-since annotation + Event this long before acting (controller), s
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    forecast: ForecastConfig = field(default_factory=ForecastConfig)
    window: WindowConfig = field(default_factory=WindowConfig)

    def __post_init__(self) -> None:
        errors = validate(self)
        if errors:
            raise ReclaimConfigError(errors)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReclaimConfig:
        """From the camelCase mapping of a CRD spec or YAML file (``{"detection": {"thresholdPercent": 2}}``)."""
        errors: list[str] = []
        values = _read_group(cls, data, "", errors, nested={
            "detection": DetectionConfig, "forecast": ForecastConfig, "window": WindowConfig})
        try:
            config = cls(**values)
        except ReclaimConfigError as err:
            raise ReclaimConfigError(errors + err.errors) from None
        except TypeError as err:  # a value of the wrong type that validation could not compare
            raise ReclaimConfigError([*errors, str(err)]) from None
        if errors:
            raise ReclaimConfigError(errors)
        return config

    def to_dict(self) -> dict[str, Any]:
        """The camelCase mapping ``from_dict`` reads."""
        return _write_group(self)

    def with_baseline(self) -> ReclaimConfig:
        """gpu-pruner's rule on utilisation only (the backtest's baseline)."""
        return replace(self, policy=POLICY_WINDOW, detection=replace(
            self.detection, memory_activity_bytes=None, power_active_watts=None,
            process_change_is_activity=False, min_idle_s=0.0))


def validate(config: ReclaimConfig) -> list[str]:
    """Every problem as ``path: what is wrong`` (empty when valid)."""
    errors = []
    if config.policy not in POLICIES:
        errors.append(f"policy: must be one of {', '.join(POLICIES)}, got {config.policy!r}")
    checks: list[tuple[str, float | None, float, bool]] = [  # path, value, lower bound, bound allowed
        ("graceSeconds", config.grace_s, 0.0, True),
        ("noticeSeconds", config.notice_s, 0.0, True),
        ("detection.thresholdPercent", config.detection.threshold_percent, 0.0, True),
        ("detection.memoryActivityBytes", config.detection.memory_activity_bytes, 0.0, False),
        ("detection.powerActiveWatts", config.detection.power_active_watts, 0.0, False),
        ("detection.maxGapSeconds", config.detection.max_gap_s, 0.0, False),
        ("detection.staleAfterSeconds", config.detection.stale_after_s, 0.0, False),
        ("detection.minIdleSeconds", config.detection.min_idle_s, 0.0, True),
        ("forecast.horizonSeconds", config.forecast.horizon_s, 0.0, False),
        ("forecast.halfLifeSeconds", config.forecast.half_life_s, 0.0, False),
        ("forecast.priorSpans", config.forecast.prior_spans, 0.0, False),
        ("forecast.similarityWidth", config.forecast.similarity_width, 0.0, False),
        ("forecast.lookbackHorizons", config.forecast.lookback_horizons, 0.0, True),
        ("window.windowSeconds", config.window.window_s, 0.0, True),
    ]
    for path, value, low, inclusive in checks:
        if value is None:
            if path not in _OPTIONAL:
                errors.append(f"{path}: must be set")
            continue
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            errors.append(f"{path}: must be a finite number, got {value!r}")
        elif value < low or (value == low and not inclusive):
            errors.append(f"{path}: must be {'>=' if inclusive else '>'} {low:g}, got {value:g}")
    if config.detection.threshold_percent > 100:
        errors.append(f"detection.thresholdPercent: must be <= 100, got {config.detection.threshold_percent:g}")
    if not 0.0 < config.forecast.confidence < 1.0:
        errors.append(f"forecast.confidence: must be between 0 and 1 (exclusive), got {config.forecast.confidence}")
    return errors


_OPTIONAL = ("detection.memoryActivityBytes", "detection.powerActiveWatts", "forecast.similarityWidth")


def _camel(name: str) -> str:
    """The CRD key of a field: ``grace_s`` -> ``graceSeconds``."""
    return camel(name.removesuffix("_s") + "_seconds" if name.endswith("_s") else name)


def _read_group(cls: type, data: Any, path: str, errors: list[str],
                nested: dict[str, type] | None = None) -> dict[str, Any]:
    if not isinstance(data, dict):
        errors.append(f"{path.rstrip('.') or 'spec'}: must be a mapping, got {type(data).__name__}")
        return {}
    names = {_camel(f.name): f.name for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            errors.append(f"{path}{key}: unknown field (known: {', '.join(sorted(names))})")
            continue
        name = names[key]
        if nested and name in nested:
            sub = _read_group(nested[name], value, f"{path}{key}.", errors)
            try:
                values[name] = nested[name](**sub)
            except TypeError as err:
                errors.append(f"{path}{key}: {err}")
        else:
            values[name] = value
    return values


def _write_group(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        out[_camel(f.name)] = _write_group(value) if hasattr(value, "__dataclass_fields__") else value
    return out
