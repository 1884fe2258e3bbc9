"""A recording fake of the Kubernetes API seam (``KubeAPI``): scripted lists and watch events, an
in-memory pod store that ``bind`` updates like the API server does, and injectable errors."""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from typing import Any

from gpufleet.core.kube.errors import Conflict, KubeAPIError


class FakeKubeAPI:
    """``bound-pods`` is the ``pods`` script: the fake applies no field selector."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.objects: dict[str, list[dict[str, Any]]] = {"nodes": [], "pods": [], "namespaces": []}
        self.versions: dict[str, str] = {"nodes": "100", "pods": "200", "namespaces": "300"}
        self.watch_scripts: dict[str, list[Any]] = {"nodes": [], "pods": [], "namespaces": []}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.binds: list[dict[str, Any]] = []
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.calls: list[tuple[str, ...]] = []
        self.next_errors: dict[str, list[Exception]] = {}

    # -- scripting -------------------------------------------------------------------------------

    def fail_next(self, method: str, error: Exception) -> None:
        self.next_errors.setdefault(method, []).append(error)

    def _maybe_fail(self, method: str) -> None:
        errors = self.next_errors.get(method)
        if errors:
            raise errors.pop(0)

    def add_pod(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        self.pods[(meta["namespace"], meta["name"])] = copy.deepcopy(pod)

    # -- KubeAPI ---------------------------------------------------------------------------------

    def list(self, resource: str) -> tuple[list[dict[str, Any]], str]:
        self.calls.append(("list", resource))
        self._maybe_fail("list")
        resource = _stored(resource)
        return copy.deepcopy(self.objects[resource]), self.versions[resource]

    def watch(self, resource: str, resource_version: str, timeout_s: int) -> Iterator[tuple[str, dict[str, Any]]]:
        self.calls.append(("watch", resource, resource_version))
        self._maybe_fail("watch")
        script = self.watch_scripts[_stored(resource)]
        while script:
            item = script.pop(0)
            if isinstance(item, Exception):
                raise item
            yield item

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("get_pod", namespace, name))
        self._maybe_fail("get_pod")
        pod = self.pods.get((namespace, name))
        return copy.deepcopy(pod) if pod is not None else None

    def bind(self, namespace: str, name: str, uid: str, node: str, annotations: dict[str, str]) -> None:
        self.calls.append(("bind", namespace, name, node))
        self._maybe_fail("bind")
        with self.lock:
            pod = self.pods.get((namespace, name))
            if pod is None:
                raise KubeAPIError(f"pods {name!r} not found", 404)
            if uid and pod["metadata"]["uid"] != uid:
                raise Conflict("precondition failed: UID mismatch", 409)
            if pod["spec"].get("nodeName"):
                raise Conflict(f"pod {name} is already assigned to node {pod['spec']['nodeName']!r}", 409)
            pod["spec"]["nodeName"] = node
            pod["metadata"].setdefault("annotations", {}).update(annotations)
            self.binds.append({"namespace": namespace, "name": name, "uid": uid, "node": node,
                               "annotations": dict(annotations)})

    def patch(self, path: str, body: Any, patch_type: str = "merge") -> dict[str, Any]:
        """Merge-patch a pod's annotations (``/api/v1/namespaces/NS/pods/NAME``)."""
        self.calls.append(("patch", path))
        self._maybe_fail("patch")
        _, _, _, namespace, _, name = path.strip("/").split("/")
        with self.lock:
            pod = self.pods.get((namespace, name))
            if pod is None:
                raise KubeAPIError(f"pods {name!r} not found", 404)
            pod["metadata"].setdefault("annotations", {}).update(body["metadata"]["annotations"])
            return copy.deepcopy(pod)

    def create_event(self, namespace: str, body: dict[str, Any]) -> None:
        self.calls.append(("create_event", namespace))
        self._maybe_fail("create_event")
        self.events.append((namespace, body))


def _stored(resource: str) -> str:
    return "pods" if resource == "bound-pods" else resource
