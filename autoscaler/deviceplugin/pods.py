"""Where the device plugin finds the pods bound to its node, and how it marks one served.

``PodSource`` is the seam; ``KubePodSource`` lists the node's pods from the API server (a field
selector on ``spec.nodeName``, so the kubelet's node sees only its own) and marks a pod with a merge
patch of ``gpufleet.io/gpu-assigned``.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from gpufleet.autoscaler.deviceplugin.assignment import ASSIGNED_ANNOTATION

log = logging.getLogger(__name__)


class PodSourceError(RuntimeError):
    """Listing or marking pods failed."""


class PodSource(Protocol):
    def pods(self) -> list[dict[str, Any]]:
        """Pod objects bound to this node."""
        ...

    def mark_assigned(self, namespace: str, name: str, value: str) -> None:
        """Record on the pod that its containers got their GPUs."""
        ...


class KubePodSource:
    """The node's pods from the API server (needs get/list pods and patch pods in RBAC)."""

    def __init__(self, api: Any, node: str) -> None:
        self.api = api
        self.node = node

    def pods(self) -> list[dict[str, Any]]:
        from gpufleet.core.kube.errors import KubeAPIError

        try:
            doc = self.api._json("GET", "/api/v1/pods", {"fieldSelector": f"spec.nodeName={self.node}"})
        except KubeAPIError as err:
            raise PodSourceError(f"listing pods on node {self.node}: {err}") from err
        return list(doc.get("items") or [])

    def mark_assigned(self, namespace: str, name: str, value: str) -> None:
        from gpufleet.core.kube.errors import KubeAPIError

        try:
            self.api.patch(f"/api/v1/namespaces/{namespace}/pods/{name}",
                           {"metadata": {"annotations": {ASSIGNED_ANNOTATION: value}}})
        except KubeAPIError as err:
            raise PodSourceError(f"marking pod {namespace}/{name} assigned: {err}") from err
