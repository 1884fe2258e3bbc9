"""List and watch one resource into a sink, on a thread of its own.

The informer contract, kept small: list everything, hand the list to the sink, remember the list's
resourceVersion, watch from there and hand every event over, moving the resourceVersion with each
event and bookmark. A watch that ends (server timeout) resumes from the last resourceVersion; 410 Gone
means that version is too old, so list again; any other failure backs off (doubling, capped, with
jitter so many replicas do not retry in step) and retries; a resource the server does not serve (404:
a CRD not installed) is logged once and looked for again every ``backoff_max_s``. ``synced`` is set once the first list is
applied.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from gpufleet.core.kube.client import ListWatch
from gpufleet.core.kube.errors import KubeAPIError, WatchExpired

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InformerConfig:
    """``watch_timeout_s``: server-side length of one watch (s, default 300); ``backoff_s`` and
    ``backoff_max_s``: the first and the longest wait after a failure (s, defaults 0.5 and 30);
    ``jitter``: each wait is scaled by a random factor in [1 - jitter, 1] (default 0.2)."""

    watch_timeout_s: int = 300
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0
    jitter: float = 0.2


class Sink(Protocol):
    def replace(self, objects: list[dict[str, Any]]) -> None:
        """The whole current list (first list and every re-list)."""

    def apply(self, kind: str, obj: dict[str, Any]) -> None:
        """One watch event: ADDED, MODIFIED or DELETED."""


class Informer:
    """One resource's list+watch loop. ``on_synced(resource)`` runs after every list is applied."""

    def __init__(self, api: ListWatch, resource: str, sink: Sink, config: InformerConfig = InformerConfig(),
                 on_synced: Callable[[str], None] | None = None, rng: random.Random | None = None) -> None:
        self.api = api
        self.resource = resource
        self.sink = sink
        self.config = config
        self.resource_version: str | None = None
        self.synced = threading.Event()
        self._on_synced = on_synced
        self._rng = rng or random.Random()
        self._backoff = config.backoff_s
        self._absent = False  # the last list answered 404
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def step(self) -> None:
        """One list (if needed) and one watch until it ends; raises KubeAPIError on failure."""
        if self.resource_version is None:
            items, version = self.api.list(self.resource)
            self.sink.replace(items)
            self.resource_version = version
            self._absent = False
            self.synced.set()
            if self._on_synced is not None:
                self._on_synced(self.resource)
            log.info("resource=%s listed=%d resourceVersion=%s", self.resource, len(items), version)
        for kind, obj in self.api.watch(self.resource, self.resource_version, self.config.watch_timeout_s):
            if self._stop.is_set():
                return
            if kind != "BOOKMARK":
                self.sink.apply(kind, obj)
            version = (obj.get("metadata") or {}).get("resourceVersion") if isinstance(obj, dict) else None
            if version:
                self.resource_version = str(version)

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
                self._backoff = self.config.backoff_s
            except WatchExpired as err:
                log.info("resource=%s watch expired (%s); listing again", self.resource, err)
                self.resource_version = None
            except KubeAPIError as err:
                if self._stop.is_set():
                    return  # stopped while a watch was open: its stream breaking is expected
                if err.status == 404:  # the type is not served (a CRD not installed): look again now and then
                    if not self._absent:
                        log.info("resource=%s is not served by the API server (%s); checking every %.0fs",
                                 self.resource, err, self.config.backoff_max_s)
                    self._absent = True
                    self._backoff = self.config.backoff_max_s
                else:
                    log.warning("resource=%s list/watch failed: %s; retrying in %.1fs", self.resource, err,
                                self._backoff)
                self._wait()
            except Exception:
                log.exception("resource=%s informer failed; listing again", self.resource)
                self.resource_version = None
                self._wait()

    def _wait(self) -> None:
        self._stop.wait(self._backoff * (1.0 - self.config.jitter * self._rng.random()))
        self._backoff = min(2 * self._backoff, self.config.backoff_max_s)

    def start(self) -> Informer:
        self._thread = threading.Thread(target=self.run, name=f"gpufleet-informer-{self.resource}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
