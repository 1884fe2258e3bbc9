"""Walking a pod's ownerReferences to the workload an action applies to (fetched on demand, cached).

Pod -> ReplicaSet -> Deployment, Pod -> StatefulSet, Pod -> Job, or the bare pod. A root of any other
kind (DaemonSet, a CRD's operator) is reported as unsupported: scaling it is not ours to do, and evicting
its pod would only make the owner start another. Ownership never changes once set, so answers are cached
by the owner's UID.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Protocol

from gpufleet.core.kube.errors import KubeAPIError

SCALABLE = {"Deployment": "deployments", "StatefulSet": "statefulsets", "ReplicaSet": "replicasets"}
SUPPORTED = frozenset({*SCALABLE, "Job", "Pod"})


class Getter(Protocol):
    def get(self, path: str) -> dict[str, Any] | None: ...


@dataclass(frozen=True, slots=True)
class Root:
    kind: str  # Deployment, StatefulSet, ReplicaSet, Job, Pod, or another kind (unsupported)
    namespace: str
    name: str
    uid: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.kind}/{self.name}"

    @property
    def supported(self) -> bool:
        return self.kind in SUPPORTED

    @property
    def path(self) -> str:
        return object_path(self.kind, self.namespace, self.name)


def object_path(kind: str, namespace: str, name: str) -> str:
    if kind in SCALABLE:
        return f"/apis/apps/v1/namespaces/{namespace}/{SCALABLE[kind]}/{name}"
    if kind == "Job":
        return f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}"
    if kind == "Pod":
        return f"/api/v1/namespaces/{namespace}/pods/{name}"
    raise KubeAPIError(f"no path known for kind {kind!r} (supported: {', '.join(sorted(SUPPORTED))})")


def controller_ref(obj: dict[str, Any]) -> dict[str, Any] | None:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return next((r for r in refs if r.get("controller")), None)


class OwnerResolver:
    def __init__(self, api: Getter) -> None:
        self._api = api
        self._cache: dict[str, Root] = {}  # ReplicaSet uid -> its root
        self._lock = threading.Lock()

    def root_of(self, pod: dict[str, Any]) -> Root:
        """The pod's root workload; raises KubeAPIError when an owner cannot be read."""
        meta = pod.get("metadata") or {}
        namespace = meta.get("namespace", "")
        ref = controller_ref(pod)
        if ref is None:
            return Root("Pod", namespace, meta.get("name", ""), meta.get("uid", ""))
        kind, name, uid = ref.get("kind", ""), ref.get("name", ""), ref.get("uid", "")
        if kind != "ReplicaSet":
            return Root(kind, namespace, name, uid)
        with self._lock:
            cached = self._cache.get(uid)
        if cached is not None:
            return cached
        rs = self._api.get(object_path("ReplicaSet", namespace, name))
        if rs is None:
            raise KubeAPIError(f"reading ReplicaSet {namespace}/{name} of pod {meta.get('name')}: not found")
        parent = controller_ref(rs)
        root = Root("ReplicaSet", namespace, name, uid) if parent is None else \
            Root(parent.get("kind", ""), namespace, parent.get("name", ""), parent.get("uid", ""))
        with self._lock:
            self._cache[uid] = root
        return root
