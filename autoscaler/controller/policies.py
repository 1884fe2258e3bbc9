"""ReclaimPolicy and GpuBudget objects, applied while the controller runs: watched, mapped, in effect
at the next pass (no restart).

Which mode a pod gets, first match wins:

1. the pod's own ``gpufleet.io/reclaim`` (annotation or label);
2. its namespace's ``gpufleet.io/reclaim``;
3. the oldest ReclaimPolicy (creation time, then name) whose ``namespaceSelector`` selects the
   namespace and whose ``podSelector`` (if any) selects the pod: its ``mode``
   (Off -> off, DryRun -> report, Notify -> notify, Reclaim -> scale-to-zero);
4. off.

An unknown annotation value is off (a typo never opts a pod in). kube-system is never selected by a
policy, whatever the selector says (the CRD's CEL rules forbid it too; an object whose selector would
still match a bare kube-system namespace is Stalled). The reclaim settings (detection, window,
threshold, notice, grace) of a pod come from the policy of step 3 when one selects it, even when an
annotation set its mode; otherwise from ``--config``. The policy's fields are laid over the
``--config`` reclaim settings, so what the CRD does not carry (forecast, memory activity, ...) stays
as configured. Budgets: the smallest active ``maxPods`` caps the actions on roots in the namespaces
the policy selects, counted in the controller's rolling budget window (``budget.window``), on top of
the global budget.

GpuBudget objects become :class:`gpufleet.autoscaler.cost.budgets.BudgetConfig`: one budget per team
(the oldest object wins a team; later ones are Stalled), alert thresholds per team (the global list
is their union). Each budget's months start in its own ``timeZone`` (any IANA zone, DST-safe); an
unknown zone is Stalled.

An object that cannot be applied gets ``Stalled`` with the reason and the last good generation of
that object keeps running; a good one gets ``Ready``. Every replica applies; only the Lease holder
writes status (a background thread, so informer callbacks never wait on the API).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gpufleet.autoscaler.controller.budget import Entry
from gpufleet.autoscaler.controller.cron import CronError, CronSchedule, window_open
from gpufleet.autoscaler.controller.gate import PROTECTED_NAMESPACES, Mode
from gpufleet.autoscaler.controller.objectstatus import StatusWriter
from gpufleet.autoscaler.cost.budgets import DEFAULT_THRESHOLDS, Budget, BudgetConfig, time_zone_problem
from gpufleet.autoscaler.reclaim.config import ReclaimConfig, ReclaimConfigError, WindowConfig
from gpufleet.core import names
from gpufleet.core.config import status as kstatus
from gpufleet.core.config.kinds import (
    API_VERSION,
    NAMESPACE_NAME_LABEL,
    GpuBudgetSpec,
    ReclaimPolicySpec,
    seconds,
)
from gpufleet.core.config.schema import SpecError, parse

log = logging.getLogger(__name__)

RECLAIM_RESOURCE = f"/apis/{API_VERSION}/reclaimpolicies"
BUDGET_RESOURCE = f"/apis/{API_VERSION}/gpubudgets"
COMPONENT = "gpufleet-controller"
MODES = {"Off": Mode.OFF, "DryRun": Mode.REPORT, "Notify": Mode.NOTIFY, "Reclaim": Mode.SCALE_TO_ZERO}


@dataclass(frozen=True)
class PolicyBudget:
    """At most ``max_pods`` actions per budget window; with a schedule only while it is open."""

    max_pods: int
    window: tuple[CronSchedule, float, ZoneInfo] | None = None


@dataclass(frozen=True)
class AppliedReclaim:
    """One ReclaimPolicy generation in effect."""

    name: str
    generation: int
    created: str
    spec: ReclaimPolicySpec
    mode: Mode
    reclaim: ReclaimConfig
    budgets: tuple[PolicyBudget, ...] = ()

    def selects_namespace(self, namespace: str, labels: dict[str, str]) -> bool:
        if namespace in PROTECTED_NAMESPACES:  # never, whatever the selector says
            return False
        return self.spec.namespace_selector.matches({**labels, NAMESPACE_NAME_LABEL: namespace})

    def selects_pod(self, labels: dict[str, str]) -> bool:
        return self.spec.pod_selector is None or self.spec.pod_selector.matches(labels)

    def max_pods(self, now: float) -> int | None:
        """The smallest active budget's maxPods, or None when none is active."""
        active = [b.max_pods for b in self.budgets if b.window is None or window_open([b.window], now)]
        return min(active) if active else None


@dataclass(frozen=True)
class Verdict:
    """What to do with one object: apply it (``applied``) or keep the last good one (``reason``)."""

    applied: Any
    reason: str
    message: str


@dataclass(frozen=True)
class Selection:
    """A pod's mode, where it came from, and the reclaim settings that apply to it."""

    mode: Mode
    source: str  # "pod", "namespace", "ReclaimPolicy/<name>" or "default"
    reclaim: ReclaimConfig
    policy: AppliedReclaim | None = None


def to_reclaim_config(spec: ReclaimPolicySpec, base: ReclaimConfig) -> ReclaimConfig:
    """``spec`` laid over ``base``; raises ReclaimConfigError or ValueError."""
    window = WindowConfig(seconds(spec.window)) if spec.window is not None else base.window
    return replace(base, policy=spec.detection, window=window, notice_s=seconds(spec.notice),
                   grace_s=seconds(spec.grace),
                   detection=replace(base.detection, threshold_percent=float(spec.threshold_percent)))


def _budgets(spec: ReclaimPolicySpec, errors: list[str]) -> tuple[PolicyBudget, ...]:
    out = []
    for i, b in enumerate(spec.budgets):
        if b.schedule is None:
            out.append(PolicyBudget(b.max_pods))
            continue
        zone_name = b.time_zone or "UTC"
        try:
            schedule = CronSchedule.parse(b.schedule)
            zone = ZoneInfo(zone_name)
            out.append(PolicyBudget(b.max_pods, (schedule, seconds(b.duration or ""), zone)))
        except CronError as err:
            errors.append(f"spec.budgets[{i}].schedule: {err}")
        except (ZoneInfoNotFoundError, ValueError):
            errors.append(f"spec.budgets[{i}].timeZone: unknown IANA time zone {zone_name!r}")
    return tuple(out)


def evaluate_reclaim(obj: dict[str, Any], base: ReclaimConfig) -> Verdict:
    """Whether ``obj`` (a ReclaimPolicy) can be applied over ``base``, and why not. Pure."""
    meta = obj.get("metadata") or {}
    try:
        spec = parse(ReclaimPolicySpec, obj.get("spec"))
    except SpecError as err:
        return Verdict(None, "InvalidSpec", "; ".join(err.errors))
    if spec.namespace_selector.matches({NAMESPACE_NAME_LABEL: "kube-system"}):
        return Verdict(None, "SelectsKubeSystem", "spec.namespaceSelector: selects kube-system; select "
                       "namespaces with matchLabels or an In/Exists expression")
    errors: list[str] = []
    budgets = _budgets(spec, errors)
    try:
        reclaim = to_reclaim_config(spec, base)
    except ReclaimConfigError as err:
        errors.extend(f"spec: {e}" for e in err.errors)
        reclaim = base
    except ValueError as err:
        errors.append(f"spec: {err}")
        reclaim = base
    if errors:
        return Verdict(None, "InvalidSpec", "; ".join(errors))
    applied = AppliedReclaim(str(meta.get("name") or ""), int(meta.get("generation") or 0),
                             str(meta.get("creationTimestamp") or ""), spec, MODES[spec.mode], reclaim, budgets)
    return Verdict(applied, "Applied", f"mode {spec.mode}, detection {spec.detection} in effect")


def _explicit(obj: dict[str, Any] | None) -> str | None:
    meta = (obj or {}).get("metadata") or {}
    value = (meta.get("annotations") or {}).get(names.RECLAIM) or (meta.get("labels") or {}).get(names.RECLAIM)
    return value.strip().lower() if isinstance(value, str) else None


def _labels(obj: dict[str, Any] | None) -> dict[str, str]:
    labels = ((obj or {}).get("metadata") or {}).get("labels")
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


def _name(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _generation(obj: dict[str, Any]) -> int:
    return int((obj.get("metadata") or {}).get("generation") or 0)


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("creationTimestamp") or ""), str(meta.get("name") or "")


class _Kind:
    """The objects of one kind: newest seen per name, last good applied per name, status per name."""

    def __init__(self, kind: str, writer: StatusWriter | None, identity: str) -> None:
        self.kind = kind
        self.lock = threading.Lock()
        self.seen: dict[str, dict[str, Any]] = {}
        self.applied: dict[str, Any] = {}
        self._verdicts: dict[str, tuple[int, str, str]] = {}
        self._writer = writer
        self._identity = identity

    def replace(self, objects: list[dict[str, Any]]) -> bool:
        with self.lock:
            names_now = {_name(o) for o in objects}
            for gone in set(self.seen) - names_now:
                self.seen.pop(gone, None)
                self.applied.pop(gone, None)
                self._verdicts.pop(gone, None)
            changed = False
            for obj in objects:
                changed |= self._put(obj)
            return changed

    def apply(self, kind: str, obj: dict[str, Any]) -> bool:
        name = _name(obj)
        with self.lock:
            if kind == "DELETED":
                self.seen.pop(name, None)
                self.applied.pop(name, None)
                self._verdicts.pop(name, None)
                log.info("%s=%s deleted", self.kind, name)
                return True
            return self._put(obj)

    def _put(self, obj: dict[str, Any]) -> bool:
        """Store ``obj``; whether it is new to us (a status write or a re-list is not)."""
        old = self.seen.get(_name(obj))
        self.seen[_name(obj)] = obj
        return old is None or _generation(old) != _generation(obj) or old.get("spec") != obj.get("spec")

    def settle(self, verdicts: dict[str, Verdict]) -> None:
        """Record ``verdicts`` (name -> verdict for the newest object), keep the good ones, write status."""
        for name, verdict in verdicts.items():
            obj = self.seen.get(name)
            if obj is None:
                continue
            generation = _generation(obj)
            if verdict.applied is not None:
                self.applied[name] = verdict.applied
            running = self.applied.get(name)
            message = verdict.message
            if verdict.applied is None:
                message += (f"; generation {running.generation} keeps running" if running
                            else "; nothing of this object is in effect")
            if self._verdicts.get(name) == (generation, verdict.reason, message):
                continue
            self._verdicts[name] = (generation, verdict.reason, message)
            if verdict.applied is not None:
                log.info("%s=%s generation=%d applied: %s", self.kind, name, generation, message)
                status = kstatus.applied(obj.get("status"), generation, message, applied_by=self._identity)
            else:
                log.warning("%s=%s generation=%d stalled reason=%s: %s", self.kind, name, generation,
                            verdict.reason, message)
                status = kstatus.stalled(obj.get("status"), generation, verdict.reason, message,
                                         applied_by=self._identity)
            if self._writer is not None:
                self._writer.submit(name, status)


class ReclaimPolicies:
    """Informer sink for reclaimpolicies; answers which mode and settings a pod gets. Thread-safe."""

    def __init__(self, base: ReclaimConfig, writer: StatusWriter | None = None,
                 identity: str = COMPONENT) -> None:
        self.base = base
        self._objects = _Kind("reclaimpolicy", writer, identity)
        self.writer = writer

    def replace(self, objects: list[dict[str, Any]]) -> None:
        self._objects.replace(objects)
        self._evaluate(objects)

    def apply(self, kind: str, obj: dict[str, Any]) -> None:
        if self._objects.apply(kind, obj) and kind != "DELETED":
            self._evaluate([obj])

    def _evaluate(self, objects: list[dict[str, Any]]) -> None:
        with self._objects.lock:
            self._objects.settle({_name(o): evaluate_reclaim(o, self.base) for o in objects})

    def applied(self) -> dict[str, AppliedReclaim]:
        with self._objects.lock:
            return dict(self._objects.applied)

    def policy_for(self, namespace: str, ns_labels: dict[str, str], pod_labels: dict[str, str]
                   ) -> AppliedReclaim | None:
        """The oldest policy in effect selecting this namespace and pod, or None."""
        matching = [p for p in self.applied().values()
                    if p.selects_namespace(namespace, ns_labels) and p.selects_pod(pod_labels)]
        return min(matching, key=lambda p: (p.created, p.name)) if matching else None

    def select(self, pod: dict[str, Any], namespace: dict[str, Any] | None) -> Selection:
        """The pod's mode by the precedence of the module docstring, and its reclaim settings."""
        ns_name = str((pod.get("metadata") or {}).get("namespace") or "")
        if ns_name in PROTECTED_NAMESPACES:
            return Selection(Mode.OFF, "kube-system", self.base)
        policy = self.policy_for(ns_name, _labels(namespace), _labels(pod))
        reclaim = policy.reclaim if policy is not None else self.base
        for source, value in (("pod", _explicit(pod)), ("namespace", _explicit(namespace))):
            if value is None:
                continue
            try:
                return Selection(Mode(value), source, reclaim, policy)
            except ValueError:
                log.warning("unknown %s value=%r on the %s of pod=%s/%s; treated as off", names.RECLAIM, value,
                            source, ns_name, (pod.get("metadata") or {}).get("name"))
                return Selection(Mode.OFF, source, reclaim, policy)
        if policy is not None:
            return Selection(policy.mode, f"ReclaimPolicy/{policy.name}", reclaim, policy)
        return Selection(Mode.OFF, "default", self.base)

    def allows(self, policy: AppliedReclaim | None, entries: Sequence[Entry], window_s: float,
               namespace_labels: Callable[[str], dict[str, str]], now: float) -> tuple[bool, str]:
        """Whether ``policy``'s budgets leave room for one more action now (``entries``: the ledger)."""
        if policy is None:
            return True, ""
        limit = policy.max_pods(now)
        if limit is None:
            return True, ""
        used = 0
        for e in entries:
            namespace = e.root.split("/", 1)[0]
            if now - e.at < window_s and policy.selects_namespace(namespace, namespace_labels(namespace)):
                used += 1
        if used >= limit:
            return False, f"ReclaimPolicy/{policy.name}: {used} actions in the last {window_s:g}s (maxPods {limit})"
        return True, ""


def evaluate_budgets(objects: Sequence[dict[str, Any]]) -> dict[str, Verdict]:
    """A verdict per GpuBudget (name -> verdict); the oldest object of a team wins it. Pure."""
    verdicts: dict[str, Verdict] = {}
    owners: dict[str, str] = {}
    for obj in sorted(objects, key=_key):
        name = _name(obj)
        try:
            spec = parse(GpuBudgetSpec, obj.get("spec"))
        except SpecError as err:
            verdicts[name] = Verdict(None, "InvalidSpec", "; ".join(err.errors))
            continue
        zone_problem = time_zone_problem(spec.time_zone)
        if zone_problem:
            verdicts[name] = Verdict(None, "InvalidSpec", f"spec.timeZone: {zone_problem}")
            continue
        if spec.team in owners:
            verdicts[name] = Verdict(None, "DuplicateTeam", f"spec.team: team {spec.team!r} already has "
                                     f"GpuBudget/{owners[spec.team]}")
            continue
        owners[spec.team] = name
        verdicts[name] = Verdict(spec, "Applied", f"budget {spec.monthly_usd:g} USD/month for team {spec.team}"
                                 + (f" (months in {spec.time_zone})" if spec.time_zone != "UTC" else ""))
    return verdicts


class GpuBudgets:
    """Informer sink for gpubudgets; ``config()`` is the cost BudgetConfig in effect. Thread-safe."""

    def __init__(self, base: BudgetConfig | None = None, writer: StatusWriter | None = None,
                 identity: str = COMPONENT) -> None:
        self.base = base or BudgetConfig()
        self._objects = _Kind("gpubudget", writer, identity)
        self.writer = writer

    def replace(self, objects: list[dict[str, Any]]) -> None:
        self._objects.replace(objects)
        self._evaluate()

    def apply(self, kind: str, obj: dict[str, Any]) -> None:
        if self._objects.apply(kind, obj):
            self._evaluate()

    def _evaluate(self) -> None:
        # all objects at once: a team's owner can change when another object goes
        with self._objects.lock:
            self._objects.settle(evaluate_budgets(list(self._objects.seen.values())))

    def _specs(self) -> list[GpuBudgetSpec]:
        with self._objects.lock:
            applied = dict(self._objects.applied)
            seen = {n: _key(o) for n, o in self._objects.seen.items()}
        by_team: dict[str, tuple[tuple[str, str], GpuBudgetSpec]] = {}
        for name, spec in applied.items():  # a last good generation may share a team with another: oldest wins
            key = seen.get(name, ("", name))
            if spec.team not in by_team or key < by_team[spec.team][0]:
                by_team[spec.team] = (key, spec)
        return [spec for _, spec in sorted(by_team.values(), key=lambda kv: kv[0])]

    def config(self) -> BudgetConfig:
        """The objects' budgets, or ``base`` (the file/CLI config) when there are none."""
        specs = self._specs()
        if not specs:
            return self.base
        thresholds = sorted({t / 100.0 for s in specs for t in s.alert_thresholds_percent}) or DEFAULT_THRESHOLDS
        return BudgetConfig(tuple(Budget(s.team, float(s.monthly_usd), s.time_zone) for s in specs),
                            tuple(thresholds))

    def thresholds_for(self, team: str) -> tuple[float, ...]:
        """The team's alert thresholds as fractions of its budget."""
        spec = next((s for s in self._specs() if s.team == team), None)
        if spec is None:
            return self.config().thresholds
        return tuple(sorted(t / 100.0 for t in spec.alert_thresholds_percent)) or DEFAULT_THRESHOLDS
