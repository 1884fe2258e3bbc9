"""The only module that changes the cluster: notices, cancellations, and the actions themselves.

Every write is idempotent. A notice is two pod annotations; an action first re-reads each pod it is
about (same UID, same idle-since, still opted in, not snoozed) and its root, then:

- Deployment / StatefulSet / ReplicaSet: annotate the root with the replica count, the time and the key
  (``<pod uid>@<idle-since>``), then PUT its scale subresource to 0 with the scale's resourceVersion; a
  root already carrying the key at 0 replicas is done, one at 0 without it was not ours to touch;
- Job: one merge patch: ``spec.suspend: true`` and the same annotations;
- evict: POST a policy/v1 Eviction with the pod's UID as precondition; 429 (a PDB says no) waits for a
  later pass; never a plain delete.

Each outcome is an Event, a metric and one log line with the evidence.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Callable
from typing import Any, Protocol

from gpufleet.autoscaler.controller.gate import Mode, format_time, notice_of, protection
from gpufleet.autoscaler.controller.metrics import ControllerMetrics
from gpufleet.autoscaler.controller.owners import object_path
from gpufleet.autoscaler.controller.plan import Action, ActionKind, PodPlan
from gpufleet.core import names
from gpufleet.core.clock import Clock
from gpufleet.core.kube.errors import Conflict, KubeAPIError

log = logging.getLogger(__name__)

COMPONENT = "gpufleet-controller"
_MAX_MESSAGE = 1000
_SCALE_ATTEMPTS = 3  # immediate retries of a scale write that lost a race with a status update


class WriteAPI(Protocol):
    def get(self, path: str) -> dict[str, Any] | None: ...

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]: ...

    def put(self, path: str, body: dict[str, Any]) -> dict[str, Any]: ...

    def patch(self, path: str, body: Any, patch_type: str = "merge") -> dict[str, Any]: ...


class Result(enum.StrEnum):
    DONE = "done"
    ALREADY = "already-done"  # a previous leader (or pass) did it: nothing written
    CONFLICT = "conflict"  # 409: retried next pass
    PDB = "pdb"  # 429 from the Eviction API: retried next pass
    CHANGED = "changed"  # re-validation failed: not acted
    NOT_OURS = "not-ours"  # the workload is already at zero and not by us
    ERROR = "error"


def evidence(plan: PodPlan) -> str:
    """The numbers behind a decision, for Events and logs: window, samples, forecast."""
    parts = []
    for d in plan.decisions:
        e = dict(d.evidence)
        items = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(e.items())
                         if k != "idle_since")
        parts.append(f"gpu={d.key.gpu[-12:]} verdict={d.verdict} elapsed_s={d.elapsed_s:.0f} {items}".strip())
    return "; ".join(parts)


class Actuator:
    def __init__(self, api: WriteAPI, clock: Clock, metrics: ControllerMetrics, instance: str,
                 mode_of: Callable[[dict[str, Any]], Mode]) -> None:
        """``mode_of(pod)``: the pod's reclaim mode now (annotations, then ReclaimPolicies), asked again
        just before acting."""
        self._api = api
        self._clock = clock
        self._metrics = metrics
        self._instance = instance
        self._mode_of = mode_of
        self._blocked: set[str] = set()  # action keys whose PDB block was already reported

    # ---- events ---------------------------------------------------------------------------------

    def event(self, obj_kind: str, namespace: str, name: str, uid: str, reason: str, message: str,
              warning: bool = False, api_version: str = "v1") -> None:
        stamp = format_time(self._clock.now())
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{name}.", "namespace": namespace},
            "involvedObject": {"apiVersion": api_version, "kind": obj_kind, "namespace": namespace, "name": name,
                               **({"uid": uid} if uid else {})},
            "reason": reason, "message": message[:_MAX_MESSAGE], "type": "Warning" if warning else "Normal",
            "source": {"component": COMPONENT}, "reportingComponent": f"gpufleet.io/{COMPONENT}",
            "reportingInstance": self._instance[:128], "firstTimestamp": stamp, "lastTimestamp": stamp,
            "count": 1, "action": reason,
        }
        try:
            self._api.post(f"/api/v1/namespaces/{namespace}/events", body)
        except KubeAPIError as err:
            self._metrics.api_errors.labels("event").inc()
            log.warning("event not posted object=%s/%s reason=%s: %s", namespace, name, reason, err)

    def _pod_event(self, plan: PodPlan, reason: str, message: str, warning: bool = False) -> None:
        self.event("Pod", plan.pod.namespace, plan.pod.name, plan.pod.uid, reason, message, warning)

    # ---- notices --------------------------------------------------------------------------------

    def report(self, plan: PodPlan) -> None:
        self._pod_event(plan, "IdleGPU", f"idle since {format_time(plan.idle_since or 0)} (report mode: no "
                        f"action): {plan.reason}; {evidence(plan)}")
        self._metrics.actions.labels("report", Result.DONE).inc()
        log.info("report pod=%s idle_since=%s reason=%r evidence=%r", plan.pod.key,
                 format_time(plan.idle_since or 0), plan.reason, evidence(plan))

    def notice(self, plan: PodPlan, notice_s: float) -> Result:
        now = self._clock.now()
        patch = {"metadata": {"uid": plan.pod.uid, "annotations": {
            names.IDLE_SINCE: format_time(plan.idle_since or now), names.NOTICE_AT: format_time(now)}}}
        result = self._write("notice", lambda: self._api.patch(object_path("Pod", plan.pod.namespace,
                                                                           plan.pod.name), patch))
        if result is Result.DONE:
            action = {Mode.NOTIFY: "no action will follow (notify mode)"}.get(
                plan.pod.mode, f"{plan.pod.mode} after {notice_s:g}s unless it becomes active or is snoozed "
                               f"(kubectl annotate pod {plan.pod.name} {names.KEEP_UNTIL}=<RFC 3339 time>)")
            self._pod_event(plan, "IdleGPUNotice", f"GPU idle since {format_time(plan.idle_since or now)}: "
                            f"{action}. {plan.reason}; {evidence(plan)}", warning=True)
        log.info("notice pod=%s uid=%s idle_since=%s mode=%s result=%s reason=%r evidence=%r", plan.pod.key,
                 plan.pod.uid, format_time(plan.idle_since or now), plan.pod.mode, result, plan.reason,
                 evidence(plan))
        self._metrics.actions.labels("notice", result).inc()
        return result

    def cancel(self, plan: PodPlan) -> Result:
        patch = {"metadata": {"uid": plan.pod.uid, "annotations": {names.IDLE_SINCE: None, names.NOTICE_AT: None}}}
        result = self._write("cancel", lambda: self._api.patch(object_path("Pod", plan.pod.namespace,
                                                                           plan.pod.name), patch))
        if result is Result.DONE:
            self._pod_event(plan, "IdleGPUNoticeCancelled", plan.reason)
        log.info("cancel pod=%s uid=%s result=%s reason=%r", plan.pod.key, plan.pod.uid, result, plan.reason)
        self._metrics.actions.labels("cancel", result).inc()
        return result

    # ---- actions --------------------------------------------------------------------------------

    def revalidate(self, action: Action) -> str | None:
        """Re-read every pod of ``action`` just before acting; why it must not go ahead, or None."""
        now = self._clock.now()
        for p in action.pods:
            fresh = self._api.get(object_path("Pod", p.pod.namespace, p.pod.name))
            if fresh is None:
                return f"pod {p.pod.key} is gone" if action.kind is not ActionKind.EVICT else None
            meta = fresh.get("metadata") or {}
            if meta.get("uid") != p.pod.uid:
                return f"pod {p.pod.key} was replaced (uid {meta.get('uid')})"
            if meta.get("deletionTimestamp"):
                return f"pod {p.pod.key} is already terminating"
            notice = notice_of(fresh)
            if notice is None or p.idle_since is None or abs(notice[0] - p.idle_since) > 1.0:
                return f"pod {p.pod.key}: notice changed or withdrawn"
            why = protection(fresh, now)
            if why is not None:
                return f"pod {p.pod.key}: {why}"
            mode = self._mode_of(fresh)
            if not mode.acts:
                return f"pod {p.pod.key}: reclaim mode is now {mode}"
        return None

    def act(self, action: Action) -> Result:
        try:
            why = self.revalidate(action)
        except KubeAPIError as err:
            self._metrics.api_errors.labels("revalidate").inc()
            log.warning("action=%s root=%s re-validation failed: %s", action.kind, action.root.key, err)
            return self._done(action, Result.ERROR, str(err))
        if why is not None:
            return self._done(action, Result.CHANGED, why)
        if action.kind is ActionKind.EVICT:
            result = self._write("evict", lambda: self._evict(action))
        elif action.kind is ActionKind.SUSPEND:
            result = self._write("suspend", lambda: self._suspend(action))
        else:
            result = self._write("scale", lambda: self._scale(action))
        return self._done(action, result, "")

    def _annotations(self, action: Action, replicas: str) -> dict[str, str]:
        return {names.RECLAIMED_REPLICAS: replicas, names.RECLAIMED_AT: format_time(self._clock.now()),
                names.RECLAIM_KEY: action.key, names.RECLAIMED_GPUS: str(action.gpus)}

    def _scale(self, action: Action) -> Result:
        """Annotate, then PUT the scale to 0 with the resourceVersion just read. Status writes by the
        workload's controller move that version often, so a 409 is retried at once (a few times)."""
        scale_path = f"{action.root.path}/scale"
        for attempt in range(_SCALE_ATTEMPTS):
            root = self._api.get(action.root.path)
            scale = self._api.get(scale_path)
            if root is None or scale is None:
                return Result.CHANGED
            annotations = (root.get("metadata") or {}).get("annotations") or {}
            replicas = int((scale.get("spec") or {}).get("replicas") or 0)
            ours = annotations.get(names.RECLAIM_KEY) == action.key
            if replicas == 0:
                return Result.ALREADY if ours else Result.NOT_OURS
            if not ours or annotations.get(names.RECLAIMED_REPLICAS) != str(replicas):
                self._api.patch(action.root.path, {"metadata": {
                    "uid": (root.get("metadata") or {}).get("uid"),
                    "annotations": self._annotations(action, str(replicas))}})
                scale = self._api.get(scale_path)  # the annotation moved the resourceVersion the scale carries
                if scale is None:
                    return Result.CHANGED
            body = {"apiVersion": "autoscaling/v1", "kind": "Scale",
                    "metadata": {"name": action.root.name, "namespace": action.root.namespace,
                                 "resourceVersion": (scale.get("metadata") or {}).get("resourceVersion")},
                    "spec": {"replicas": 0}}
            try:
                self._api.put(scale_path, body)
                return Result.DONE
            except Conflict:
                if attempt == _SCALE_ATTEMPTS - 1:
                    raise
                log.debug("root=%s scale moved under us; reading it again", action.root.key)
        return Result.CONFLICT

    def _suspend(self, action: Action) -> Result:
        job = self._api.get(action.root.path)
        if job is None:
            return Result.CHANGED
        annotations = (job.get("metadata") or {}).get("annotations") or {}
        if (job.get("spec") or {}).get("suspend"):
            return Result.ALREADY if annotations.get(names.RECLAIM_KEY) == action.key else Result.NOT_OURS
        meta = job.get("metadata") or {}
        self._api.patch(action.root.path, {
            "metadata": {"uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion"),
                         "annotations": self._annotations(action, "suspend")},
            "spec": {"suspend": True}})
        return Result.DONE

    def _evict(self, action: Action) -> Result:
        p = action.pods[0].pod
        body = {"apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": {"name": p.name, "namespace": p.namespace},
                "deleteOptions": {"preconditions": {"uid": p.uid}}}
        try:
            self._api.post(f"/api/v1/namespaces/{p.namespace}/pods/{p.name}/eviction", body)
        except KubeAPIError as err:
            if err.status == 429:
                return Result.PDB
            if err.status == 404:
                return Result.ALREADY
            raise
        return Result.DONE

    def _write(self, operation: str, call: Callable[[], Any]) -> Result:
        try:
            out = call()
        except Conflict as err:
            log.info("operation=%s conflict (retried next pass): %s", operation, err)
            return Result.CONFLICT
        except KubeAPIError as err:
            self._metrics.api_errors.labels(operation).inc()
            log.warning("operation=%s failed (retried next pass): %s", operation, err)
            return Result.ERROR
        return out if isinstance(out, Result) else Result.DONE

    def _done(self, action: Action, result: Result, why: str) -> Result:
        first = action.pods[0]
        detail = json.dumps({"root": action.root.key, "gpus": action.gpus, "key": action.key,
                             "pods": [p.pod.key for p in action.pods]})
        log.info("action=%s root=%s result=%s gpus=%d key=%s why=%r idle_since=%s due_at=%s delay_s=%.2f "
                 "evidence=%r pods=%s", action.kind, action.root.key, result, action.gpus, action.key, why,
                 format_time(first.idle_since or 0), format_time(action.due_at),
                 self._clock.now() - action.due_at, evidence(first), detail)
        self._metrics.actions.labels(action.kind, result).inc()
        if result is Result.DONE:
            message = (f"{action.kind} {action.root.key}: {action.gpus} idle GPU(s) freed; idle since "
                       f"{format_time(first.idle_since or 0)}, notice ended {format_time(action.due_at)}. "
                       f"Undo: gpufleet reclaim undo {action.root.key}. {evidence(first)}")
            for p in action.pods:
                self._pod_event(p, "IdleGPUReclaimed", message, warning=True)
            if action.root.kind != "Pod":
                api_version = "batch/v1" if action.root.kind == "Job" else "apps/v1"
                self.event(action.root.kind, action.root.namespace, action.root.name, action.root.uid,
                           "IdleGPUReclaimed", message, warning=True, api_version=api_version)
        elif result is Result.PDB and action.key not in self._blocked:
            self._blocked.add(action.key)
            self._pod_event(first, "IdleGPUEvictionBlocked", "a PodDisruptionBudget does not allow the eviction "
                            "now; retrying later")
        return result
