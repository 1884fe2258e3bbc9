"""The extender's sinks: nodes, pods and namespaces from the shared informer into the cluster state.

The list+watch loop itself is :class:`gpufleet.core.kube.informer.Informer`; a resource counts as
synced in the cluster state once its first list is applied.
"""

from __future__ import annotations

import logging
from typing import Any

from gpufleet.core.kube.client import KubeAPI
from gpufleet.core.kube.informer import Informer, InformerConfig
from gpufleet.core.pricing import PriceCatalog
from gpufleet.scheduler.extender.errors import WireError
from gpufleet.scheduler.extender.metrics import ExtenderMetrics
from gpufleet.scheduler.extender.nodes import parse_node
from gpufleet.scheduler.extender.pods import PLACEMENT_ANNOTATION, parse_pod
from gpufleet.scheduler.extender.state import ClusterState

log = logging.getLogger(__name__)


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


def informers(api: KubeAPI, state: ClusterState, catalog: PriceCatalog, metrics: ExtenderMetrics,
              config: InformerConfig = InformerConfig()) -> list[Informer]:
    """The three informers the extender runs."""

    def synced(resource: str) -> None:
        state.mark_synced(resource)
        metrics.relists.labels(resource).inc()

    return [Informer(api, resource, sink, config, on_synced=synced) for resource, sink in
            (("nodes", NodeSink(state, catalog)), ("pods", PodSink(state)), ("namespaces", NamespaceSink(state)))]
