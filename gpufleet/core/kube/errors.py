"""The Kubernetes API boundary's exceptions: every failure talking to the API server is a
``KubeAPIError`` (with the HTTP status when there was one); third-party exceptions do not leak."""

from __future__ import annotations


class KubeAPIError(Exception):
    """A Kubernetes API call failed; ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class WatchExpired(KubeAPIError):
    """The watch's resourceVersion is too old (410 Gone): list again."""


class Conflict(KubeAPIError):
    """409: the object changed or already exists (for a Binding: the pod is already bound)."""
