"""Status of gpufleet.io objects written by the leader only: the newest status per object, on a thread of
its own, so informer callbacks never wait on the API; a new leader writes them all again."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from gpufleet.core.kube.errors import KubeAPIError

log = logging.getLogger(__name__)


class StatusPatcher(Protocol):
    def patch(self, path: str, body: Any, patch_type: str = "merge") -> dict[str, Any]: ...


class StatusWriter:
    """Writes the newest status per object of ``resource`` while ``is_leader()`` holds, on a thread of its
    own; a failed write is retried on the next wake (every ``retry_s``). A new leader writes them all."""

    def __init__(self, patcher: StatusPatcher, resource: str, is_leader: Callable[[], bool],
                 retry_s: float = 1.0) -> None:
        self._patcher = patcher
        self._resource = resource
        self._is_leader = is_leader
        self._retry_s = retry_s
        self._desired: dict[str, dict[str, Any]] = {}
        self._written: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def submit(self, name: str, status: dict[str, Any]) -> None:
        with self._lock:
            self._desired[name] = status
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"gpufleet-status-{self._resource.rsplit('/', 1)[-1]}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._retry_s)
            self._wake.clear()
            self.flush()

    def flush(self) -> int:
        """Write what the leader has not written yet; the number written."""
        if not self._is_leader():
            with self._lock:
                self._written.clear()  # whoever leads next writes everything again
            return 0
        with self._lock:
            todo = {n: s for n, s in self._desired.items() if self._written.get(n) is not s}
        done = 0
        for name, status in todo.items():
            try:
                self._patcher.patch(f"{self._resource}/{name}/status", {"status": status})
            except KubeAPIError as err:
                if err.status == 404:  # the object is gone
                    with self._lock:
                        if self._desired.get(name) is status:
                            self._desired.pop(name, None)
                    continue
                log.warning("object=%s/%s status write failed: %s; retrying", self._resource, name, err)
                continue
            except (OSError, ValueError) as err:
                log.warning("object=%s/%s status write failed: %s; retrying", self._resource, name, err)
                continue
            with self._lock:
                self._written[name] = status
            done += 1
        return done
