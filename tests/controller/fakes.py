"""A recording in-memory API server for the controller's unit tests, with injectable errors.

Objects live by path; PATCH merges (JSON merge patch, None deletes), PUT checks resourceVersion (409),
every write bumps it. ``fail_next(method, fragment, error)`` makes the next matching call raise.
Scale subresources read and write the parent's ``spec.replicas``; evictions delete the pod unless
``pdb_blocks`` holds its name (429).
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

from gpufleet.core.kube.errors import Conflict, KubeAPIError


def merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


class FakeAPI:
    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.pdb_blocks: set[str] = set()
        self._errors: list[tuple[str, str, Exception]] = []
        self._rv = itertools.count(100)

    def add(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        obj.setdefault("metadata", {})["resourceVersion"] = str(next(self._rv))
        self.objects[path] = obj
        return obj

    def fail_next(self, method: str, fragment: str, error: Exception) -> None:
        self._errors.append((method, fragment, error))

    def _maybe_fail(self, method: str, path: str) -> None:
        for i, (m, fragment, error) in enumerate(self._errors):
            if m == method and fragment in path:
                del self._errors[i]
                raise error

    def writes(self, method: str | None = None, fragment: str = "") -> list[tuple[str, str, Any]]:
        return [c for c in self.calls if c[0] != "GET" and (method is None or c[0] == method) and fragment in c[1]]

    # ---- verbs ----------------------------------------------------------------------------------

    def get(self, path: str) -> dict[str, Any] | None:
        self.calls.append(("GET", path, None))
        self._maybe_fail("GET", path)
        if path.endswith("/scale"):
            parent = self.objects.get(path.removesuffix("/scale"))
            if parent is None:
                return None
            return {"apiVersion": "autoscaling/v1", "kind": "Scale",
                    "metadata": {"name": parent["metadata"]["name"], "resourceVersion":
                                 parent["metadata"]["resourceVersion"]},
                    "spec": {"replicas": parent["spec"].get("replicas", 1)}}
        obj = self.objects.get(path)
        return copy.deepcopy(obj) if obj is not None else None

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("POST", path, copy.deepcopy(body)))
        self._maybe_fail("POST", path)
        if path.endswith("/events"):
            self.events.append(body)
            return body
        if path.endswith("/eviction"):
            pod_path = path.removesuffix("/eviction")
            pod = self.objects.get(pod_path)
            if pod is None:
                raise KubeAPIError(f"POST {path}: 404", 404)
            if pod["metadata"]["name"] in self.pdb_blocks:
                raise KubeAPIError(f"POST {path}: 429 Too Many Requests: disruption budget", 429)
            del self.objects[pod_path]
            return {}
        name = body["metadata"]["name"]
        full = f"{path}/{name}"
        if full in self.objects:
            raise Conflict(f"POST {path}: 409 AlreadyExists", 409)
        return copy.deepcopy(self.add(full, body))

    def put(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("PUT", path, copy.deepcopy(body)))
        self._maybe_fail("PUT", path)
        scale = path.endswith("/scale")
        target = self.objects.get(path.removesuffix("/scale"))
        if target is None:
            raise KubeAPIError(f"PUT {path}: 404", 404)
        want = (body.get("metadata") or {}).get("resourceVersion")
        if want and want != target["metadata"]["resourceVersion"]:
            raise Conflict(f"PUT {path}: 409 Conflict: object has been modified", 409)
        if scale:
            target["spec"]["replicas"] = body["spec"]["replicas"]
        else:
            meta = dict(body.get("metadata") or {})
            self.objects[path] = {**copy.deepcopy(body), "metadata": meta}
            target = self.objects[path]
        target["metadata"]["resourceVersion"] = str(next(self._rv))
        return copy.deepcopy(target)

    def patch(self, path: str, body: Any, patch_type: str = "merge") -> dict[str, Any]:
        self.calls.append(("PATCH", path, copy.deepcopy(body)))
        self._maybe_fail("PATCH", path)
        target = self.objects.get(path)
        if target is None:
            raise KubeAPIError(f"PATCH {path}: 404", 404)
        meta = (body or {}).get("metadata") or {}
        if meta.get("uid") and meta["uid"] != target["metadata"].get("uid"):
            raise Conflict(f"PATCH {path}: 409 Precondition failed: UID", 409)
        if meta.get("resourceVersion") and meta["resourceVersion"] != target["metadata"]["resourceVersion"]:
            raise Conflict(f"PATCH {path}: 409 Conflict", 409)
        body = copy.deepcopy(body)
        body.get("metadata", {}).pop("resourceVersion", None)
        merge(target, body)
        target["metadata"]["resourceVersion"] = str(next(self._rv))
        return copy.deepcopy(target)

    def list(self, resource: str) -> tuple[list[dict[str, Any]], str]:
        self.calls.append(("GET", resource, None))
        self._maybe_fail("LIST", resource)
        prefix = {"pods": "/api/v1/namespaces/", "namespaces": "/api/v1/namespaces/"}.get(resource, resource)
        items = [copy.deepcopy(o) for p, o in self.objects.items() if p.startswith(prefix)]
        return items, "1"


def pod(namespace: str, name: str, uid: str, owner: tuple[str, str, str] | None = None,
        annotations: dict[str, str] | None = None, start: str = "2023-11-14T00:00:00Z",
        node: str = "node-0") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": uid, "annotations": dict(annotations or {}),
                            "creationTimestamp": start}
    if owner is not None:
        kind, owner_name, owner_uid = owner
        meta["ownerReferences"] = [{"kind": kind, "name": owner_name, "uid": owner_uid, "controller": True,
                                    "apiVersion": "apps/v1"}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"nodeName": node},
            "status": {"phase": "Running", "startTime": start}}
