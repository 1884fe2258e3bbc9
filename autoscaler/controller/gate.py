"""Who may be touched at all: opt-in modes and the never-touch rules, from a pod and its namespace. No I/O.

Opt-in only: ``gpufleet.io/reclaim`` on the pod wins over the namespace's; absent or unknown is ``off``.
Never touched whatever the mode: kube-system, ``karpenter.sh/do-not-disrupt: "true"``, and
``gpufleet.io/keep-until`` in the future (an unreadable keep-until also holds: a typo must not expose a pod).
"""

from __future__ import annotations

import enum
import logging
from datetime import UTC, datetime
from typing import Any

from gpufleet.core import names

log = logging.getLogger(__name__)


class Mode(enum.StrEnum):
    OFF = "off"
    REPORT = "report"  # metrics and Events only
    NOTIFY = "notify"  # idle-since annotation and Event, never an action
    SCALE_TO_ZERO = "scale-to-zero"  # scale the root workload to 0 (bare pods are evicted)
    EVICT = "evict"  # the Eviction API, honouring PDBs

    @property
    def gives_notice(self) -> bool:
        return self in (Mode.NOTIFY, Mode.SCALE_TO_ZERO, Mode.EVICT)

    @property
    def acts(self) -> bool:
        return self in (Mode.SCALE_TO_ZERO, Mode.EVICT)


class Skip(enum.StrEnum):
    """Why a decision did not lead to an action (the ``reason`` label of skipped decisions)."""

    KUBE_SYSTEM = "kube-system"
    DO_NOT_DISRUPT = "do-not-disrupt"
    SNOOZE = "snooze"
    GRACE = "grace"
    STALE = "stale"  # agent silent or newest sample too old
    NO_POD_RESOURCES = "no-pod-resources"  # the agent cannot ask the kubelet who holds the GPU
    NO_DATA = "no-data"
    BUDGET = "budget"
    WINDOW = "window"  # outside every allowed window
    PDB = "pdb"  # the Eviction API refused (429)
    SIBLINGS = "siblings-active"  # scale-to-zero waits until every pod of the workload is due
    OWNER = "unsupported-owner"
    CHANGED = "changed"  # re-validation before acting found the pod changed
    API_ERROR = "api-error"
    NOT_LEADER = "not-leader"


PROTECTED_NAMESPACES = frozenset({"kube-system"})


def parse_time(text: str | None) -> float | None:
    """RFC 3339 (``2026-12-03T18:00:00Z``) to unix seconds; None when absent or unreadable."""
    if not text:
        return None
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.timestamp()


def format_time(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _annotations(obj: dict[str, Any] | None) -> dict[str, str]:
    return ((obj or {}).get("metadata") or {}).get("annotations") or {}


def _mode_value(obj: dict[str, Any] | None) -> str | None:
    meta = (obj or {}).get("metadata") or {}
    value = (meta.get("annotations") or {}).get(names.RECLAIM) or (meta.get("labels") or {}).get(names.RECLAIM)
    return value.strip().lower() if isinstance(value, str) else None


def mode_of(pod: dict[str, Any], namespace: dict[str, Any] | None) -> Mode:
    """The pod's mode (annotation or label), else its namespace's; ``off`` when neither says or unknown."""
    for value in (_mode_value(pod), _mode_value(namespace)):
        if value is None:
            continue
        try:
            return Mode(value)
        except ValueError:
            log.warning("unknown %s value=%r on pod=%s; treated as off", names.RECLAIM, value,
                        (pod.get("metadata") or {}).get("name"))
            return Mode.OFF
    return Mode.OFF


def protection(pod: dict[str, Any], now: float) -> Skip | None:
    """Why this pod must not be touched now (kube-system, do-not-disrupt, snooze), or None."""
    meta = pod.get("metadata") or {}
    if meta.get("namespace") in PROTECTED_NAMESPACES:
        return Skip.KUBE_SYSTEM
    annotations = _annotations(pod)
    if str(annotations.get(names.DO_NOT_DISRUPT, "")).strip().lower() == "true":
        return Skip.DO_NOT_DISRUPT
    if names.KEEP_UNTIL in annotations:
        until = parse_time(annotations[names.KEEP_UNTIL])
        if until is None or until > now:
            return Skip.SNOOZE
    return None


def started_at(pod: dict[str, Any]) -> float | None:
    """When the pod started (status.startTime, else creation), unix seconds."""
    status = pod.get("status") or {}
    return parse_time(status.get("startTime")) or parse_time((pod.get("metadata") or {}).get("creationTimestamp"))


def notice_of(pod: dict[str, Any]) -> tuple[float, float] | None:
    """(idle-since, notice-at) from the pod's annotations, or None when it has no (readable) notice."""
    annotations = _annotations(pod)
    idle_since = parse_time(annotations.get(names.IDLE_SINCE))
    notice_at = parse_time(annotations.get(names.NOTICE_AT))
    if idle_since is None or notice_at is None:
        return None
    return idle_since, notice_at
