"""When each pod of a namespace was bound, seen through a pod watch: the exact count kube-scheduler's
metrics cannot give (a bind that timed out towards the extender and was then refused to the
DefaultBinder counts as an error there, although the pod is bound).

``BindWatch`` is a sink on the shared informer (:mod:`gpufleet.core.kube.informer`: list, then watch,
re-list on 410) over one namespace's pods, recording the first moment each pod shows a
``spec.nodeName``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from gpufleet.core.kube.client import KubernetesAPI
from gpufleet.core.kube.informer import Informer, InformerConfig

#: Seconds one watch request lasts before the informer starts the next.
WATCH_S = 20


class BindWatch:
    """Bind times (``clock()``, default ``time.monotonic()``) by pod name for one namespace."""

    def __init__(self, core_api: Any, namespace: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._bound: dict[str, float] = {}
        self._stopped = False
        api = KubernetesAPI(core_api.api_client)
        self._informer = Informer(api, f"/api/v1/namespaces/{namespace}/pods", self,
                                  InformerConfig(watch_timeout_s=WATCH_S, backoff_s=0.5, backoff_max_s=2.0))

    def start(self, timeout_s: float = 30.0) -> BindWatch:
        """Start watching; returns once the first list is in (pods bound already count as bound now)."""
        self._informer.start()
        if not self._informer.synced.wait(timeout_s):
            self._informer.stop()
            raise TimeoutError(f"listing pods of {self._informer.resource} took over {timeout_s:.0f} s")
        return self

    def stop(self) -> None:
        """Stop recording; the informer's thread leaves when its current watch ends."""
        with self._lock:
            self._stopped = True
        self._informer.stop()

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._bound)

    def times(self) -> dict[str, float]:
        with self._lock:
            return dict(self._bound)

    # Sink
    def replace(self, objects: list[dict[str, Any]]) -> None:
        for pod in objects:
            self._see(pod)

    def apply(self, kind: str, obj: dict[str, Any]) -> None:
        if kind in ("ADDED", "MODIFIED"):
            self._see(obj)

    def _see(self, pod: dict[str, Any]) -> None:
        if not (pod.get("spec") or {}).get("nodeName"):
            return
        now = self._clock()
        name = (pod.get("metadata") or {}).get("name", "")
        with self._lock:
            if not self._stopped:
                self._bound.setdefault(name, now)
