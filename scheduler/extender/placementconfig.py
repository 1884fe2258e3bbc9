"""PlacementPolicy objects, applied while the extender runs: watched, parsed, in effect at once.

Two informer sinks feed one :class:`PlacementPolicies`: the ``placementpolicies`` of gpufleet.io
(the spec of each object, parsed into the typed spec of :mod:`gpufleet.core.config.kinds`) and the
namespaces' labels (what the policies select). A pod's placement is then, first match wins:

1. its own ``gpufleet.io/placement`` annotation;
2. a policy selecting its namespace whose ``podSelector`` selects the pod's labels;
3. a namespace-wide policy (no ``podSelector``) selecting its namespace;
4. its namespace's annotation, else off.

Where two policies of step 2 (or of step 3) match, the oldest applies (creation time, then name).

A policy with ``spec.workloadMix.source: ConfigMap`` scores its pods against the mix in that
ConfigMap key (see mixconfig: watched, so an edit applies within seconds). Each policy has its own mix.

An object that cannot be applied (a spec that does not parse, a field this extender does not
implement, a ConfigMap mix that is missing or not a pod list) gets ``Stalled`` with the reason, and
the last good generation of that object (with its mix) keeps running; a good one gets ``Ready``. Status is written by a background thread (merge patch of the
status subresource), only when it changes, so informer callbacks never wait on the API.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from gpufleet.core.config import status as kstatus
from gpufleet.core.config.kinds import API_VERSION, NAMESPACE_NAME_LABEL, PlacementPolicySpec
from gpufleet.core.config.schema import SpecError, parse
from gpufleet.core.kube.client import ListWatch
from gpufleet.core.kube.errors import KubeAPIError
from gpufleet.core.kube.informer import InformerConfig
from gpufleet.scheduler.extender.mixconfig import ConfigMapMixes, MixError, describe
from gpufleet.scheduler.policies.cost import CostOptions
from gpufleet.scheduler.workload import WorkloadMix

log = logging.getLogger(__name__)

RESOURCE = f"/apis/{API_VERSION}/placementpolicies"
COMPONENT = "gpufleet-extender"


class StatusPatcher(Protocol):
    def patch(self, path: str, body: Any, patch_type: str = "merge") -> dict[str, Any]: ...


@dataclass(frozen=True)
class AppliedPolicy:
    """One PlacementPolicy generation in effect."""

    name: str
    generation: int
    created: str
    spec: PlacementPolicySpec
    mix: WorkloadMix | None = None  # from its ConfigMap (source ConfigMap); None: the extender's own

    @property
    def policy(self) -> str:
        return self.spec.policy

    def cost_options(self) -> CostOptions:
        return CostOptions(self.spec.interruption_penalty_gpu_hours, self.spec.weights.fragmentation)


@dataclass(frozen=True)
class Verdict:
    """What to do with one object: apply it (``applied``) or keep the last good one (``reason``)."""

    applied: AppliedPolicy | None
    reason: str
    message: str


def evaluate(obj: dict[str, Any], mixes: ConfigMapMixes | None = None) -> Verdict:
    """Whether this extender can apply ``obj`` as it is, and why not; ``mixes``: the ConfigMaps (None:
    source ConfigMap is unsupported). Pure but for reading ``mixes``."""
    meta = obj.get("metadata") or {}
    name, generation = str(meta.get("name") or ""), int(meta.get("generation") or 0)
    try:
        spec = parse(PlacementPolicySpec, obj.get("spec"))
    except SpecError as err:
        return Verdict(None, "InvalidSpec", "; ".join(err.errors))
    mix, source = None, ""
    ref = spec.workload_mix.config_map
    if spec.workload_mix.source == "ConfigMap" and ref is not None:
        if mixes is None:
            return Verdict(None, "Unsupported", "spec.workloadMix.source ConfigMap: no API server to read it from")
        try:
            mix = mixes.mix(ref)
        except MixError as err:
            return Verdict(None, "WorkloadMixUnavailable", f"spec.workloadMix: {err}")
        source = f"; workload mix from {describe(ref)} ({len(mix)} shapes)"
    applied = AppliedPolicy(name, generation, str(meta.get("creationTimestamp") or ""), spec, mix)
    return Verdict(applied, "Applied", f"policy {spec.policy} in effect{source}")


class PlacementPolicies:
    """The PlacementPolicies in effect and the namespaces' labels; thread-safe."""

    def __init__(self, patcher: StatusPatcher | None = None, identity: str = COMPONENT,
                 api: ListWatch | None = None, informer: InformerConfig = InformerConfig()) -> None:
        """``api``: where referenced ConfigMaps are watched (None: only what ``mixes`` sinks are fed)."""
        self._lock = threading.Lock()
        self._evaluating = threading.RLock()  # one evaluation at a time: policy and ConfigMap events race
        self._applied: dict[str, AppliedPolicy] = {}
        self._seen: dict[str, tuple[int, Any]] = {}  # name -> (generation, spec) last evaluated
        self._objects: dict[str, dict[str, Any]] = {}  # name -> the object last evaluated
        self._verdicts: dict[str, Verdict] = {}
        self.mixes = ConfigMapMixes(api, self._configmaps_changed, informer)
        self._labels: dict[str, dict[str, str]] = {}
        self._identity = identity
        self._writer = StatusWriter(patcher)
        self.namespaces = _NamespaceLabels(self)

    # ---- the placementpolicies sink ------------------------------------------------------------

    def replace(self, objects: list[dict[str, Any]]) -> None:
        names = {str((o.get("metadata") or {}).get("name") or "") for o in objects}
        with self._lock:
            for gone in set(self._applied) - names:
                self._applied.pop(gone, None)
            for gone in set(self._seen) - names:
                self._seen.pop(gone, None)
                self._objects.pop(gone, None)
                self._verdicts.pop(gone, None)
        for obj in objects:
            self.apply("ADDED", obj)
        self._retain_mix_namespaces()

    def apply(self, kind: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        name = str(meta.get("name") or "")
        if kind == "DELETED":
            with self._lock:
                self._applied.pop(name, None)
                self._seen.pop(name, None)
                self._objects.pop(name, None)
                self._verdicts.pop(name, None)
            log.info("placementpolicy=%s deleted", name)
            self._retain_mix_namespaces()
            return
        generation = int(meta.get("generation") or 0)
        with self._lock:
            if self._seen.get(name) == (generation, obj.get("spec")):
                return  # a status write or a re-list: nothing new to apply
            self._seen[name] = (generation, obj.get("spec"))
        self._evaluate(name, obj, always=True)
        self._retain_mix_namespaces()

    def _retain_mix_namespaces(self) -> None:
        """Watch ConfigMaps only in the namespaces the policies' mixes are in now."""
        with self._lock:
            referred = {_mix_namespace(o) for o in self._objects.values()}
        self.mixes.retain({ns for ns in referred if ns is not None})

    def _configmaps_changed(self, namespace: str) -> None:
        """Evaluate again the policies whose mix is in a ConfigMap of ``namespace``."""
        with self._lock:
            referring = [(n, o) for n, o in self._objects.items() if _mix_namespace(o) == namespace]
        for name, obj in referring:
            self._evaluate(name, obj, always=False)

    def _evaluate(self, name: str, obj: dict[str, Any], always: bool) -> None:
        """Apply ``obj`` or keep the last good one, and write the status (``always``, else on a change)."""
        generation = int((obj.get("metadata") or {}).get("generation") or 0)
        with self._evaluating:
            with self._lock:
                if name not in self._seen:
                    return  # deleted meanwhile
                self._objects[name] = obj
            verdict = evaluate(obj, self.mixes)
            with self._lock:
                changed = self._verdicts.get(name) != verdict
                self._verdicts[name] = verdict
                if verdict.applied is not None:
                    self._applied[name] = verdict.applied
                running = self._applied.get(name)
            if not (always or changed):
                return
            self._report(name, generation, obj, verdict, running)

    def _report(self, name: str, generation: int, obj: dict[str, Any], verdict: Verdict,
                running: AppliedPolicy | None) -> None:
        if verdict.applied is not None:
            log.info("placementpolicy=%s generation=%d applied policy=%s", name, generation, verdict.applied.policy)
            new_status = kstatus.applied(obj.get("status"), generation, verdict.message, applied_by=self._identity)
        else:
            mix = " with its workload mix" if running is not None and running.mix is not None else ""
            keeps = (f"; generation {running.generation} (policy {running.policy}){mix} keeps running"
                     if running else "; nothing of this object is in effect")
            log.warning("placementpolicy=%s generation=%d stalled reason=%s: %s%s", name, generation,
                        verdict.reason, verdict.message, keeps)
            new_status = kstatus.stalled(obj.get("status"), generation, verdict.reason, verdict.message + keeps,
                                         applied_by=self._identity)
        self._writer.submit(name, new_status)

    # ---- lookups -------------------------------------------------------------------------------

    def for_pod(self, namespace: str, pod_labels: dict[str, str] | None) -> AppliedPolicy | None:
        """The policy in effect for a pod of ``namespace`` with ``pod_labels``: the oldest one whose
        podSelector selects it, else the oldest namespace-wide one; None when none selects it.
        ``pod_labels=None`` looks at namespace-wide policies only."""
        with self._lock:
            labels = {**self._labels.get(namespace, {}), NAMESPACE_NAME_LABEL: namespace}
            matching = [p for p in self._applied.values() if p.spec.namespace_selector.matches(labels)]
        by_pod = [p for p in matching if p.spec.pod_selector is not None and pod_labels is not None
                  and p.spec.pod_selector.matches(pod_labels)]
        chosen = by_pod or [p for p in matching if p.spec.pod_selector is None]
        return min(chosen, key=lambda p: (p.created, p.name)) if chosen else None

    def for_namespace(self, namespace: str) -> AppliedPolicy | None:
        """The namespace-wide policy in effect for ``namespace`` (the oldest selecting one), or None."""
        return self.for_pod(namespace, None)

    def applied(self) -> dict[str, AppliedPolicy]:
        with self._lock:
            return dict(self._applied)

    def start(self) -> None:
        self._writer.start()

    def stop(self) -> None:
        self.mixes.stop()
        self._writer.stop()


def _mix_namespace(obj: dict[str, Any]) -> str | None:
    """The namespace of the ConfigMap holding ``obj``'s mix (raw spec), or None."""
    mix = (obj.get("spec") or {}).get("workloadMix")
    ref = mix.get("configMap") if isinstance(mix, dict) and mix.get("source") == "ConfigMap" else None
    return str(ref.get("namespace")) if isinstance(ref, dict) else None


class _NamespaceLabels:
    """Sink for namespaces: keeps each namespace's labels for the policies' selectors."""

    def __init__(self, owner: PlacementPolicies) -> None:
        self._owner = owner

    def replace(self, objects: list[dict[str, Any]]) -> None:
        labels = {str((o.get("metadata") or {}).get("name") or ""): _labels(o) for o in objects}
        with self._owner._lock:
            self._owner._labels = labels

    def apply(self, kind: str, obj: dict[str, Any]) -> None:
        name = str((obj.get("metadata") or {}).get("name") or "")
        with self._owner._lock:
            if kind == "DELETED":
                self._owner._labels.pop(name, None)
            else:
                self._owner._labels[name] = _labels(obj)


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    labels = (obj.get("metadata") or {}).get("labels")
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


class StatusWriter:
    """Writes the newest status per object of ``resource`` (a collection path) on a thread of its own;
    a failed write is retried twice. Without a patcher (no API server) it writes nothing."""

    def __init__(self, patcher: StatusPatcher | None, resource: str = RESOURCE, attempts: int = 3) -> None:
        self._patcher = patcher
        self._resource = resource
        self._attempts = attempts
        self._pending: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._wake: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def submit(self, name: str, status: dict[str, Any]) -> None:
        if self._patcher is None:
            return
        with self._lock:
            self._pending[name] = status
        self._wake.put(True)

    def start(self) -> None:
        if self._patcher is None:
            return
        self._thread = threading.Thread(target=self._run, name="gpufleet-status-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.put(False)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.get()
            with self._lock:
                pending, self._pending = self._pending, {}
            for name, status in pending.items():
                self._write(name, status)

    def _write(self, name: str, status: dict[str, Any]) -> None:
        for attempt in range(1, self._attempts + 1):
            try:
                self._patcher.patch(f"{self._resource}/{name}/status", {"status": status})
                return
            except (KubeAPIError, OSError, ValueError) as err:
                log.warning("object=%s/%s status write %d/%d failed: %s", self._resource, name, attempt,
                            self._attempts, err)
                if self._stop.wait(0.5 * attempt):
                    return
