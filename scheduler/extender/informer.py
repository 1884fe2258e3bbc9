"""The extender's sinks: nodes, pods and namespaces from the shared informer into the cluster state.

The list+watch loop itself is :class:`gpufleet.core.kube.informer.Informer`; a resource counts as
synced in the cluster state once its first list is applied.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from gpufleet.core.kube.client import KubeAPI
from gpufleet.core.kube.informer import Informer, InformerConfig
from gpufleet.core.pricing import PriceCatalog
from gpufleet.scheduler.extender.errors import WireError
from gpufleet.scheduler.extender.metrics import ExtenderMetrics
from gpufleet.scheduler.extender.nodes import parse_node
from gpufleet.scheduler.extender.pods import PLACEMENT_ANNOTATION, PodInfo, parse_pod
from gpufleet.scheduler.extender.state import ClusterState

log = logging.getLogger(__name__)
_encode = msgspec.json.Encoder().encode


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
    """Pods into the state. A pod is parsed again only when a field ``parse_pod`` reads changed (kept
    per UID as those fields' JSON): most pod events are status updates (the kubelet's, kwok's) that
    leave the node, the requests and the annotations as they were."""

    def __init__(self, state: ClusterState) -> None:
        self._state = state
        self._parsed: dict[str, tuple[bytes, PodInfo]] = {}

    def _parse(self, obj: dict[str, Any], parsed: dict[str, tuple[bytes, PodInfo]]) -> PodInfo:
        """``parse_pod(obj)``, from ``self._parsed`` when its inputs are the same; recorded in ``parsed``."""
        inputs = _parse_inputs(obj)
        if inputs is not None:
            uid, fields = inputs
            known = self._parsed.get(uid)
            if known is not None and known[0] == fields:
                parsed[uid] = known
                return known[1]
        info = parse_pod(obj)
        if inputs is not None:
            parsed[uid] = (fields, info)
        return info

    def replace(self, objects: list[dict[str, Any]]) -> None:
        infos = []
        parsed: dict[str, tuple[bytes, PodInfo]] = {}
        for obj in objects:
            try:
                infos.append(self._parse(obj, parsed))
            except WireError as err:
                log.warning("pod skipped: %s", err)
        self._parsed = parsed
        self._state.replace_pods(infos)

    def apply(self, kind: str, obj: dict[str, Any]) -> None:
        try:
            info = self._parse(obj, self._parsed)
        except WireError as err:
            log.warning("pod event skipped: %s", err)
            return
        if kind == "DELETED":
            self._parsed.pop(info.uid, None)
            self._state.delete_pod(info.uid)
        else:
            self._state.upsert_pod(info)


def _parse_inputs(obj: Any) -> tuple[str, bytes] | None:
    """(UID, the JSON of every field ``parse_pod`` reads), or None for an object not shaped like a
    pod (parsed every time, so its errors are reported every time)."""
    if not isinstance(obj, dict):
        return None
    meta, status = obj.get("metadata"), obj.get("status")
    status = {} if status is None else status
    if not isinstance(meta, dict) or not isinstance(status, dict):
        return None
    uid = meta.get("uid")
    if not isinstance(uid, str) or not uid:
        return None
    return uid, _encode((meta.get("name"), meta.get("namespace"), meta.get("annotations"),
                         meta.get("deletionTimestamp") is not None, obj.get("spec"), status.get("phase")))


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
