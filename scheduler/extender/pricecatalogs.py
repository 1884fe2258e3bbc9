"""PriceCatalog objects, applied while the extender runs: the built-in prices with the objects' on top.

:class:`CatalogOverlay` answers like :class:`gpufleet.core.pricing.PriceCatalog` (``get``,
``node_price``), so node parsing uses it unchanged; :class:`PriceCatalogs` is the informer sink that
parses each object, rebuilds the overrides and re-prices the nodes already in the cluster state
(nodes priced by their own ``gpufleet.io/price-per-hour`` annotation keep it). Entries for every
region (``region: "*"``) apply; region-specific entries are listed in the status as not applied (the
extender does not know a node's region yet). Objects are layered by creation time, then name: a
later object's entry wins. An object whose spec does not parse is ``Stalled`` and its last good
entries stay in effect.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from typing import Any

from gpufleet.core.config import status as kstatus
from gpufleet.core.config.kinds import API_VERSION, PriceCatalogSpec
from gpufleet.core.config.schema import SpecError, parse
from gpufleet.core.pricing import UNKNOWN, InstancePrice, NodePrice, PriceCatalog
from gpufleet.scheduler.extender.placementconfig import COMPONENT, StatusPatcher, StatusWriter
from gpufleet.scheduler.extender.state import ClusterState

log = logging.getLogger(__name__)

RESOURCE = f"/apis/{API_VERSION}/pricecatalogs"
ANNOTATION_SOURCE = "annotation"
ALL_REGIONS = "*"


class CatalogOverlay:
    """The base catalog with overriding rows (instance type -> price); thread-safe reads."""

    def __init__(self, base: PriceCatalog) -> None:
        self.base = base
        self.spot_ratio = base.spot_ratio
        self._overrides: dict[str, InstancePrice] = {}

    def set_overrides(self, rows: dict[str, InstancePrice]) -> None:
        self._overrides = {k.lower(): v for k, v in rows.items()}  # one assignment: readers see old or new

    def __len__(self) -> int:
        return len(self.base) + sum(1 for k in self._overrides if self.base.get(k) is None)

    def get(self, instance_type: str) -> InstancePrice | None:
        row = self._overrides.get(instance_type.lower()) if instance_type else None
        return row or self.base.get(instance_type)

    def node_price(self, instance_type: str, spot: bool) -> NodePrice:
        row = self._overrides.get(instance_type.lower()) if instance_type else None
        if row is None:
            return self.base.node_price(instance_type, spot)
        if not spot:
            return NodePrice(row.on_demand, "pricecatalog") if row.on_demand is not None \
                else self.base.node_price(instance_type, spot)
        if row.spot is not None:
            return NodePrice(row.spot, "pricecatalog")
        if row.on_demand is not None:
            return NodePrice(row.on_demand * self.spot_ratio, "pricecatalog-spot-estimate")
        return UNKNOWN


def rows_of(spec: PriceCatalogSpec) -> tuple[dict[str, InstancePrice], int]:
    """The every-region rows of a spec, and how many region-specific entries it has."""
    rows = {}
    regional = 0
    for entry in spec.instances:
        if entry.region != ALL_REGIONS:
            regional += 1
            continue
        rows[entry.instance_type.lower()] = InstancePrice(
            entry.instance_type, entry.cloud or "", entry.gpu_model or "", float(entry.gpu_count or 0),
            entry.on_demand_per_hour, entry.spot_per_hour)
    return rows, regional


def reprice(state: ClusterState, catalog: CatalogOverlay) -> int:
    """Re-price the nodes in ``state`` from ``catalog`` (annotated prices kept); returns how many changed."""
    changed = 0
    with state.lock:
        for info in state.node_infos():
            if info.price_source == ANNOTATION_SOURCE:
                continue
            price = catalog.node_price(info.instance_type, info.node.spot)
            per_hour = price.per_hour or 0.0
            if per_hour == info.node.price_per_hour and price.source == info.price_source:
                continue
            state.upsert_node(replace(info, node=replace(info.node, price_per_hour=per_hour),
                                      price_source=price.source))
            changed += 1
    return changed


class PriceCatalogs:
    """Informer sink for PriceCatalog objects."""

    def __init__(self, state: ClusterState, catalog: CatalogOverlay, patcher: StatusPatcher | None = None,
                 identity: str = COMPONENT) -> None:
        self._state = state
        self._catalog = catalog
        self._identity = identity
        self._lock = threading.Lock()
        #: name -> ((created, name), rows) of the last good generation
        self._good: dict[str, tuple[tuple[str, str], dict[str, InstancePrice]]] = {}
        self._seen: dict[str, tuple[int, Any]] = {}
        self._writer = StatusWriter(patcher, RESOURCE)

    def replace(self, objects: list[dict[str, Any]]) -> None:
        names = {str((o.get("metadata") or {}).get("name") or "") for o in objects}
        with self._lock:
            for gone in set(self._good) - names:
                del self._good[gone]
            for gone in set(self._seen) - names:
                del self._seen[gone]
        for obj in objects:
            self._evaluate(obj)
        self._rebuild()

    def apply(self, kind: str, obj: dict[str, Any]) -> None:
        name = str((obj.get("metadata") or {}).get("name") or "")
        if kind == "DELETED":
            with self._lock:
                self._good.pop(name, None)
                self._seen.pop(name, None)
        elif not self._evaluate(obj):
            return
        self._rebuild()

    def _evaluate(self, obj: dict[str, Any]) -> bool:
        """Parse a new generation; whether anything changed."""
        meta = obj.get("metadata") or {}
        name, generation = str(meta.get("name") or ""), int(meta.get("generation") or 0)
        with self._lock:
            if self._seen.get(name) == (generation, obj.get("spec")):
                return False
            self._seen[name] = (generation, obj.get("spec"))
        try:
            spec = parse(PriceCatalogSpec, obj.get("spec"))
        except SpecError as err:
            with self._lock:
                kept = name in self._good
            message = "; ".join(err.errors) + ("; the last good generation keeps running" if kept else "")
            log.warning("pricecatalog=%s generation=%d stalled: %s", name, generation, message)
            self._write(name, kstatus.stalled(obj.get("status"), generation, "InvalidSpec", message,
                                              applied_by=self._identity))
            return False
        rows, regional = rows_of(spec)
        with self._lock:
            self._good[name] = ((str(meta.get("creationTimestamp") or ""), name), rows)
        message = f"{len(rows)} instance prices in effect"
        if regional:
            message += f"; {regional} region-specific entries not applied (node regions are not read yet)"
        log.info("pricecatalog=%s generation=%d applied rows=%d regional=%d", name, generation, len(rows), regional)
        self._write(name, kstatus.applied(obj.get("status"), generation, message, applied_by=self._identity))
        return True

    def _rebuild(self) -> None:
        with self._lock:
            layers = sorted(self._good.values(), key=lambda item: item[0])
        merged: dict[str, InstancePrice] = {}
        for _, rows in layers:
            merged.update(rows)
        self._catalog.set_overrides(merged)
        changed = reprice(self._state, self._catalog)
        if changed:
            log.info("nodes re-priced=%d overrides=%d", changed, len(merged))

    def _write(self, name: str, new_status: dict[str, Any]) -> None:
        self._writer.submit(name, new_status)

    def start(self) -> None:
        self._writer.start()

    def stop(self) -> None:
        self._writer.stop()
