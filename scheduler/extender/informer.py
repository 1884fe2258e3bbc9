"""The extender's sinks: nodes, pods and namespaces from the shared informer into the cluster state.

The list+watch loop itself is :class:`gpufleet.core.kube.informer.Informer`; a resource counts as
synced in the cluster state once its first list is applied.
"""

from __future__ import annotations

import dataclasses
import gc
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
    """Pods into the state. A pod is parsed again only when a field ``parse_pod`` reads other than
    ``spec.nodeName`` and ``status.phase`` changed (kept per UID as those fields' JSON); those two are
    copied as they are. Most pod events are the scheduler's bind and status updates (the kubelet's,
    kwok's) that leave the requests and the model rule as they were."""

    def __init__(self, state: ClusterState) -> None:
        self._state = state
        self._parsed: dict[str, tuple[bytes, PodInfo]] = {}

    def _parse(self, obj: dict[str, Any], parsed: dict[str, tuple[bytes, PodInfo]]) -> PodInfo:
        """``parse_pod(obj)``, from ``self._parsed`` when its inputs are the same; recorded in ``parsed``."""
        inputs = _parse_inputs(obj)
        if inputs is None:
            return parse_pod(obj)
        uid, fields, node_name, phase = inputs
        known = self._parsed.get(uid)
        if known is not None and known[0] == fields:
            info = known[1]
            if (info.node_name, info.phase) != (node_name, phase):
                info = dataclasses.replace(info, node_name=node_name, phase=phase)
        else:
            info = parse_pod(obj)
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


def _parse_inputs(obj: Any) -> tuple[str, bytes, str, str] | None:
    """(UID, the JSON of the fields ``parse_pod`` reads but ``spec.nodeName`` and ``status.phase``,
    nodeName, phase), or None for an object not shaped like a pod (parsed every time, so its errors
    are reported every time)."""
    if not isinstance(obj, dict):
        return None
    meta, spec, status = obj.get("metadata"), obj.get("spec"), obj.get("status")
    spec = {} if spec is None else spec
    status = {} if status is None else status
    if not isinstance(meta, dict) or not isinstance(spec, dict) or not isinstance(status, dict):
        return None
    uid, node_name, phase = meta.get("uid"), spec.get("nodeName"), status.get("phase")
    node_name = "" if node_name is None else node_name
    phase = "" if phase is None else phase
    if not isinstance(uid, str) or not uid or not isinstance(node_name, str) or not isinstance(phase, str):
        return None
    spec = {k: v for k, v in spec.items() if k != "nodeName"}
    fields = _encode((meta.get("name"), meta.get("namespace"), meta.get("annotations"), meta.get("labels"),
                      meta.get("ownerReferences"), meta.get("deletionTimestamp") is not None, spec))
    return uid, fields, node_name, phase


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
        # What was just listed lives as long as the cache: the cyclic GC's full passes need not scan it
        # again (they cost ~20 us per pod at 1,000 nodes, mostly re-scanning long-lived objects).
        # Garbage is collected first, so none of it is kept for good.
        gc.collect()
        gc.freeze()

    return [Informer(api, resource, sink, config, on_synced=synced) for resource, sink in
            (("nodes", NodeSink(state, catalog)), ("bound-pods", PodSink(state)),
             ("namespaces", NamespaceSink(state)))]
