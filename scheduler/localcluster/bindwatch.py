"""When each pod of a namespace was bound, seen through a pod watch: the exact count kube-scheduler's
metrics cannot give (a bind that timed out towards the extender and was then refused to the
DefaultBinder counts as an error there, although the pod is bound).

``BindWatch`` lists the namespace once, then watches from that resourceVersion on a thread of its own
and records the first moment each pod shows a ``spec.nodeName``. Events are parsed as raw JSON
(through the official client's transport, without its models).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

#: Seconds one watch request lasts before the thread starts the next (or leaves, once stopped).
WATCH_S = 20


class BindWatch:
    """Bind times (``time.monotonic()``) by pod name for one namespace."""

    def __init__(self, core_api: Any, namespace: str, clock: Callable[[], float] = time.monotonic,
                 max_s: float = 3600.0) -> None:
        self._core = core_api
        self._namespace = namespace
        self._clock = clock
        self._max_s = max_s
        self._lock = threading.Lock()
        self._bound: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    def start(self) -> BindWatch:
        """List the namespace (pods bound already count as bound now) and start watching."""
        version = self._list()
        self._thread = threading.Thread(target=self._run, args=(version,), name="gpufleet-bindwatch", daemon=True)
        self._thread.start()
        return self

    def _list(self) -> str:
        document = json.loads(self._core.list_namespaced_pod(self._namespace, _preload_content=False).data)
        now = self._clock()
        for pod in document.get("items") or []:
            self._see(pod, now)
        return (document.get("metadata") or {}).get("resourceVersion", "")

    def stop(self) -> None:
        """Stop recording. The thread leaves at its next event or when its watch ends (at most
        ``WATCH_S``); closing a response another thread reads from would block until then."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=0.2)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._bound)

    def times(self) -> dict[str, float]:
        with self._lock:
            return dict(self._bound)

    def _see(self, pod: dict[str, Any], now: float) -> None:
        if self._stop.is_set() or not (pod.get("spec") or {}).get("nodeName"):
            return
        name = (pod.get("metadata") or {}).get("name", "")
        with self._lock:
            self._bound.setdefault(name, now)

    def _run(self, version: str) -> None:
        deadline = self._clock() + self._max_s
        while not self._stop.is_set() and self._clock() < deadline:
            try:
                version = self._watch_once(version, max(1, int(deadline - self._clock())))
            except Exception as err:  # noqa: BLE001 - reported through .error; list again and go on
                if self._stop.is_set():
                    return
                self.error = f"watching pods of {self._namespace}: {err}"
                log.warning("%s; listing again", self.error)
                self._stop.wait(0.5)
                try:
                    version = self._list()
                except Exception as list_err:  # noqa: BLE001
                    log.warning("listing pods of %s: %s", self._namespace, list_err)

    def _watch_once(self, version: str, timeout_s: int) -> str:
        response = self._core.list_namespaced_pod(
            self._namespace, watch=True, resource_version=version, timeout_seconds=min(timeout_s, WATCH_S),
            allow_watch_bookmarks=True, _preload_content=False)
        pending = b""
        try:
            for chunk in response.stream(65536, decode_content=False):
                if self._stop.is_set():
                    break
                pending += chunk
                if b"\n" not in chunk:
                    continue
                *lines, pending = pending.split(b"\n")
                now = self._clock()
                for line in lines:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    obj = event.get("object") or {}
                    if event.get("type") == "ERROR":
                        raise RuntimeError(f"{obj.get('code')} {obj.get('message')}")
                    version = (obj.get("metadata") or {}).get("resourceVersion", version)
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        self._see(obj, now)
        finally:
            response.release_conn()
        return version
