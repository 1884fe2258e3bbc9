"""Workload mixes read from ConfigMaps (PlacementPolicy ``spec.workloadMix.source: ConfigMap``).

The key holds a pod list CSV, the format of ``gpufleet extender --workload-mix`` (read by the same
reader, :func:`gpufleet.scheduler.trace.read_pods`). The ConfigMaps of a namespace are watched from
the first time a policy refers to one there (one informer per namespace, so the extender needs only
a namespaced Role there, see deploy/base/rbac.yaml) until no policy refers to one there any more
(``retain``); every change calls ``on_change(namespace)``, so the policies referring to it are
evaluated again at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from gpufleet.core.config.kinds import ConfigMapKeyRef
from gpufleet.core.kube.client import ListWatch
from gpufleet.core.kube.informer import Informer, InformerConfig
from gpufleet.scheduler.trace import TraceError, read_pods
from gpufleet.scheduler.workload import WorkloadMix

log = logging.getLogger(__name__)


class MixError(ValueError):
    """A ConfigMap mix that cannot be used: not read yet, missing, or not a pod list."""


def parse_mix(source: str, text: str) -> WorkloadMix:
    """The typical pods of the pod list ``text`` (``source`` names it in errors)."""
    try:
        return WorkloadMix.from_pods(read_pods(source, text))
    except TraceError as err:
        raise MixError(str(err)) from err


def describe(ref: ConfigMapKeyRef) -> str:
    return f"ConfigMap {ref.namespace}/{ref.name} key {ref.key}"


class ConfigMapMixes:
    """The data of the watched namespaces' ConfigMaps, and their keys parsed as mixes; thread-safe."""

    def __init__(self, api: ListWatch | None, on_change: Callable[[str], None],
                 config: InformerConfig = InformerConfig()) -> None:
        self._api = api
        self._on_change = on_change
        self._config = config
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, dict[str, str]]] = {}  # namespace -> name -> data; absent: not listed
        self._parsed: dict[tuple[str, str, str], tuple[str, WorkloadMix | MixError]] = {}
        self._informers: dict[str, Informer] = {}
        self._stopped = False

    def mix(self, ref: ConfigMapKeyRef) -> WorkloadMix:
        """The mix in ``ref`` now; MixError says why there is none (and starts watching its namespace)."""
        self._watch(ref.namespace)
        with self._lock:
            listed = self._data.get(ref.namespace)
            data = None if listed is None else listed.get(ref.name)
            if listed is None:
                raise MixError(f"{describe(ref)}: not read yet (the extender needs get/list/watch on "
                               f"configmaps in namespace {ref.namespace})")
            if data is None:
                raise MixError(f"{describe(ref)}: ConfigMap {ref.name} not found in namespace {ref.namespace}")
            if ref.key not in data:
                raise MixError(f"{describe(ref)}: the ConfigMap has no key {ref.key}")
            text = data[ref.key]
            cached = self._parsed.get((ref.namespace, ref.name, ref.key))
        if cached is None or cached[0] != text:
            try:
                result: WorkloadMix | MixError = parse_mix(describe(ref), text)
            except MixError as err:
                result = err
            cached = (text, result)
            with self._lock:
                self._parsed[(ref.namespace, ref.name, ref.key)] = cached
        if isinstance(cached[1], MixError):
            raise MixError(f"not a pod list (columns name, cpu_milli, memory_mib, num_gpu, gpu_milli): "
                           f"{cached[1]}")
        return cached[1]

    def sink(self, namespace: str) -> _NamespaceConfigMaps:
        return _NamespaceConfigMaps(self, namespace)

    def _watch(self, namespace: str) -> None:
        if self._api is None:
            return
        with self._lock:
            if self._stopped or namespace in self._informers:
                return
            informer = Informer(self._api, f"/api/v1/namespaces/{namespace}/configmaps", self.sink(namespace),
                                self._config)
            self._informers[namespace] = informer
        log.info("watching ConfigMaps in namespace %s for workload mixes", namespace)
        informer.start()

    @property
    def watched(self) -> set[str]:
        """The namespaces whose ConfigMaps are watched now."""
        with self._lock:
            return set(self._informers)

    def retain(self, namespaces: set[str]) -> None:
        """Stop watching (and forget) the namespaces not in ``namespaces``: no policy refers there now."""
        with self._lock:
            gone = [(ns, self._informers.pop(ns)) for ns in set(self._informers) - namespaces]
            for namespace, _ in gone:
                self._data.pop(namespace, None)
                self._parsed = {k: v for k, v in self._parsed.items() if k[0] != namespace}
        for namespace, informer in gone:
            informer.stop()
            log.info("stopped watching ConfigMaps in namespace %s: no PlacementPolicy refers to one there",
                     namespace)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            informers = list(self._informers.values())
        for informer in informers:
            informer.stop()


class _NamespaceConfigMaps:
    """Informer sink for one namespace's ConfigMaps."""

    def __init__(self, owner: ConfigMapMixes, namespace: str) -> None:
        self._owner = owner
        self._namespace = namespace

    def replace(self, objects: list[dict[str, Any]]) -> None:
        with self._owner._lock:
            self._owner._data[self._namespace] = {_name(o): _data(o) for o in objects}
        self._owner._on_change(self._namespace)

    def apply(self, kind: str, obj: dict[str, Any]) -> None:
        with self._owner._lock:
            listed = self._owner._data.setdefault(self._namespace, {})
            if kind == "DELETED":
                listed.pop(_name(obj), None)
            else:
                listed[_name(obj)] = _data(obj)
        self._owner._on_change(self._namespace)


def _name(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _data(obj: dict[str, Any]) -> dict[str, str]:
    data = obj.get("data")
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
