"""kstatus-correct status for gpufleet objects: ``Ready``, ``Reconciling``, ``Stalled`` and
``observedGeneration``, as Flux, Argo CD and ``kubectl wait`` read them without custom health checks.

Rules (sigs.k8s.io/cli-utils kstatus): ``observedGeneration`` equals ``metadata.generation`` once the
controller has looked at the current spec; ``Ready=True`` only when the spec is in effect;
``Stalled=True`` (with ``Ready=False``) when it cannot be applied without a change of the object; the
abnormal-true conditions ``Reconciling``/``Stalled`` are removed when they do not hold. Pure functions,
an injected time; no I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gpufleet.core.config.schema import prop

READY, RECONCILING, STALLED = "Ready", "Reconciling", "Stalled"
REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


@dataclass(frozen=True, kw_only=True)
class Condition:
    """metav1.Condition."""

    type: str = prop(doc="Ready, Reconciling or Stalled", max_length=316)
    status: str = prop(doc="True, False or Unknown", enum=("True", "False", "Unknown"))
    last_transition_time: str = prop(doc="when the status last changed", fmt="date-time")
    reason: str = prop(doc="CamelCase reason", pattern=REASON_PATTERN, min_length=1, max_length=1024)
    message: str = prop(doc="human-readable detail", max_length=32768)
    observed_generation: int | None = prop(None, "metadata.generation the condition was set for", minimum=0)


@dataclass(frozen=True, kw_only=True)
class PolicyStatus:
    """Status every gpufleet kind reports."""

    observed_generation: int | None = prop(None, "the metadata.generation last applied or rejected",
                                           minimum=0)
    conditions: tuple[Condition, ...] = prop((), "Ready, Reconciling, Stalled", max_items=8,
                                             list_type="map", list_map_keys=("type",), show_default=False)
    applied_by: str | None = prop(None, "component that applied the spec (e.g. extender pod name)",
                                  max_length=253)


def _now(now: datetime | None) -> str:
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _merge(old: list[dict[str, Any]], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` keeping the old lastTransitionTime when the status did not change."""
    previous = next((c for c in old if c.get("type") == new["type"]), None)
    if previous and previous.get("status") == new["status"] and previous.get("lastTransitionTime"):
        return {**new, "lastTransitionTime": previous["lastTransitionTime"]}
    return new


def applied(old_status: dict[str, Any] | None, generation: int, message: str, *,
            now: datetime | None = None, applied_by: str | None = None) -> dict[str, Any]:
    """Status for a spec that is in effect: Ready=True, no Reconciling/Stalled."""
    return _status(old_status, generation, ("True", "Applied", message), None, now, applied_by)


def stalled(old_status: dict[str, Any] | None, generation: int, reason: str, message: str, *,
            now: datetime | None = None, applied_by: str | None = None) -> dict[str, Any]:
    """Status for a spec that cannot be applied: Ready=False and Stalled=True with the reason."""
    return _status(old_status, generation, ("False", reason, message), (STALLED, reason, message), now, applied_by)


def reconciling(old_status: dict[str, Any] | None, generation: int, message: str, *,
                now: datetime | None = None) -> dict[str, Any]:
    """Status while a new generation is being applied: Reconciling=True, Ready=Unknown."""
    return _status(old_status, generation, ("Unknown", "Progressing", message),
                   (RECONCILING, "Progressing", message), now, None)


def _status(old_status: dict[str, Any] | None, generation: int, ready: tuple[str, str, str],
            abnormal: tuple[str, str, str] | None, now: datetime | None,
            applied_by: str | None) -> dict[str, Any]:
    old = list((old_status or {}).get("conditions") or [])
    stamp = _now(now)
    status, reason, message = ready
    conditions = [_merge(old, {"type": READY, "status": status, "reason": reason, "message": message[:32768],
                               "lastTransitionTime": stamp, "observedGeneration": generation})]
    if abnormal is not None:
        kind, reason, message = abnormal
        conditions.append(_merge(old, {"type": kind, "status": "True", "reason": reason,
                                       "message": message[:32768], "lastTransitionTime": stamp,
                                       "observedGeneration": generation}))
    result: dict[str, Any] = {"observedGeneration": generation, "conditions": conditions}
    if applied_by:
        result["appliedBy"] = applied_by
    return result


def is_ready(obj: dict[str, Any]) -> bool:
    """kstatus Current: the latest generation observed and Ready=True."""
    status = obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation")
    if generation is not None and status.get("observedGeneration") != generation:
        return False
    return any(c.get("type") == READY and c.get("status") == "True" for c in status.get("conditions") or [])
