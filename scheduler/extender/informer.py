"""List and watch nodes, pods and namespaces into the cluster state (one thread per resource).

The informer contract, kept small: list everything, hand the list to the sink, remember the list's
resourceVersion, watch from there and hand every event over, moving the resourceVersion with each
event and bookmark. A watch that ends (server timeout) resumes from the last resourceVersion; 410 Gone
means that version is too old, so list again; any other failure backs off (doubling, capped) and
retries. A resource counts as synced once its first list is applied.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from gpufleet.scheduler.extender.errors import KubeAPIError, WatchExpired, WireError
from gpufleet.scheduler.extender.kubeapi import KubeAPI
from gpufleet.scheduler.extender.metrics import ExtenderMetrics
from gpufleet.scheduler.extender.nodes import parse_node
from gpufleet.scheduler.extender.pods import PLACEMENT_ANNOTATION, parse_pod
from gpufleet.core.pricing import PriceCatalog
from gpufleet.scheduler.extender.state import ClusterState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InformerConfig:
    """``watch_timeout_s``: server-side length of one watch (s, default 300); ``backoff_s`` and
    ``backoff_max_s``: the first and the longest wait after a failure (s, defaults 0.5 and 30)."""

    watch_timeout_s: int = 300
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0


class Sink(Protocol):
    def replace(self, objects: list[dict[str, Any]]) -> None: ...

    def apply(self, kind: str, obj: dict[str, Any]) -> None: ...


class NodeSink:
    def __init__(self, state: ClusterState, catalog: PriceCatalog) -> None:
        self._state = state
        self._catalog = catalog

    def _parse(self, obj: dict[str, Any]):
        try:
            info = parse_node(obj, self._catalog)
        except WireError as err:
            log.warning("node skipped: %s", err)
            return None
        for problem in info.problems:
            log.warning("node=%s %s", info.name, problem)
        return info

    def replace(self, objects: list[dict[str, Any]]) -> None:
        self._state.replace_nodes([i for i in map(self._parse, objects) if i is not None])

    def apply(self, kind: str, obj: dict[str, Any]) -> None:
        if kind == "DELETED":
            self._state.delete_node(_name(obj))
            return
        info = self._parse(obj)
        if info is not None:
            self._state.upsert_node(info)


class PodSink:
    def __init__(self, state: ClusterState) -> None:
        self._state = state

    def replace(self, objects: list[dict[str, Any]]) -> None:
        infos = []
        for obj in objects:
            try:
                infos.append(parse_pod(obj))
            except WireError as err:
                log.warning("pod skipped: %s", err)
        self._state.replace_pods(infos)

    def apply(self, kind: str, obj: dict[str, Any]) -> None:
        try:
            info = parse_pod(obj)
        except WireError as err:
            log.warning("pod event skipped: %s", err)
            return
        if kind == "DELETED":
            self._state.delete_pod(info.uid)
        else:
            self._state.upsert_pod(info)


class NamespaceSink:
    def __init__(self, state: ClusterState) -> None:
        self._state = state

    def replace(self, objects: list[dict[str, Any]]) -> None:
        self._state.replace_namespaces({_name(o): _placement(o) for o in objects})

    def apply(self, kind: str, obj: dict[str, Any]) -> None:
        self._state.set_namespace(_name(obj), None if kind == "DELETED" else _placement(obj))


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    return meta if isinstance(meta, dict) else {}


def _name(obj: dict[str, Any]) -> str:
    return str(_meta(obj).get("name") or "")


def _placement(obj: dict[str, Any]) -> str | None:
    annotations = _meta(obj).get("annotations")
    return annotations.get(PLACEMENT_ANNOTATION) if isinstance(annotations, dict) else None


class Informer:
    def __init__(self, api: KubeAPI, resource: str, sink: Sink, state: ClusterState, metrics: ExtenderMetrics,
                 config: InformerConfig = InformerConfig()) -> None:
        self.api = api
        self.resource = resource
        self.sink = sink
        self.state = state
        self.metrics = metrics
        self.config = config
        self.resource_version: str | None = None
        self._backoff = config.backoff_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def step(self) -> None:
        """One list (if needed) and one watch until it ends; raises KubeAPIError on failure."""
        if self.resource_version is None:
            items, version = self.api.list(self.resource)
            self.sink.replace(items)
            self.resource_version = version
            self.state.mark_synced(self.resource)
            self.metrics.relists.labels(self.resource).inc()
            log.info("resource=%s listed=%d resourceVersion=%s", self.resource, len(items), version)
        for kind, obj in self.api.watch(self.resource, self.resource_version, self.config.watch_timeout_s):
            if self._stop.is_set():
                return
            if kind != "BOOKMARK":
                self.sink.apply(kind, obj)
            version = _meta(obj).get("resourceVersion")
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
                log.warning("resource=%s list/watch failed: %s; retrying in %.1fs", self.resource, err,
                            self._backoff)
                self._stop.wait(self._backoff)
                self._backoff = min(2 * self._backoff, self.config.backoff_max_s)
            except Exception:
                log.exception("resource=%s informer failed; listing again", self.resource)
                self.resource_version = None
                self._stop.wait(self._backoff)
                self._backoff = min(2 * self._backoff, self.config.backoff_max_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"gpufleet-informer-{self.resource}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


def informers(api: KubeAPI, state: ClusterState, catalog: PriceCatalog, metrics: ExtenderMetrics,
              config: InformerConfig = InformerConfig()) -> list[Informer]:
    """The three informers the extender runs."""
    return [
        Informer(api, "nodes", NodeSink(state, catalog), state, metrics, config),
        Informer(api, "pods", PodSink(state), state, metrics, config),
        Informer(api, "namespaces", NamespaceSink(state), state, metrics, config),
    ]
