"""PriceCatalog objects, applied while the extender runs: the built-in prices with the objects' on top.

:class:`CatalogOverlay` answers like :class:`gpufleet.core.pricing.PriceCatalog` (``get``,
``node_price``), so node parsing uses it unchanged; :class:`PriceCatalogs` is the informer sink that
parses each object, rebuilds the overrides and re-prices the nodes already in the cluster state
(nodes priced by their own ``gpufleet.io/price-per-hour`` annotation keep it). A node labelled
``topology.kubernetes.io/region`` takes its region's entry for its instance type over the every-region
one (``region: "*"``); a node without the label takes the every-region one. Objects are layered by
creation time, then name: for the same instance type and region a later object's entry wins (a
region's entry beats the every-region one whichever object each comes from). An object whose spec
does not parse is ``Stalled`` and its last good entries stay in effect.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from typing import Any

from gpufleet.core import names
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
    """The base catalog with overriding rows ((instance type, region) -> price; region ``*``: every
    region); thread-safe reads."""

    def __init__(self, base: PriceCatalog) -> None:
        self.base = base
        self.spot_ratio = base.spot_ratio
        self._overrides: dict[tuple[str, str], InstancePrice] = {}

    def set_overrides(self, rows: dict[tuple[str, str], InstancePrice]) -> None:
        # one assignment: readers see old or new
        self._overrides = {(kind.lower(), region.lower()): v for (kind, region), v in rows.items()}

    def __len__(self) -> int:
        kinds = {kind for kind, _ in self._overrides}
        return len(self.base) + sum(1 for kind in kinds if self.base.get(kind) is None)

    def rows(self, instance_type: str, region: str) -> list[InstancePrice]:
        """The overriding rows for a node, most specific first: its region's, then every region's."""
        if not instance_type:
            return []
        overrides, kind = self._overrides, instance_type.lower()
        regional = overrides.get((kind, region.lower())) if region and region != ALL_REGIONS else None
        return [row for row in (regional, overrides.get((kind, ALL_REGIONS))) if row is not None]

    def get(self, instance_type: str, region: str = "") -> InstancePrice | None:
        rows = self.rows(instance_type, region)
        return rows[0] if rows else self.base.get(instance_type)

    def node_price(self, instance_type: str, spot: bool, region: str = "") -> NodePrice:
        """The first price the node's rows give (its region's row, then every region's); a spot node
        takes a given spot price before an estimate from an on-demand one."""
        rows = self.rows(instance_type, region)
        on_demand = next((row.on_demand for row in rows if row.on_demand is not None), None)
        if not spot:
            return NodePrice(on_demand, "pricecatalog") if on_demand is not None \
                else self.base.node_price(instance_type, spot)
        spot_price = next((row.spot for row in rows if row.spot is not None), None)
        if spot_price is not None:
            return NodePrice(spot_price, "pricecatalog")
        if on_demand is not None:
            return NodePrice(on_demand * self.spot_ratio, "pricecatalog-spot-estimate")
        return UNKNOWN if rows else self.base.node_price(instance_type, spot)


def rows_of(spec: PriceCatalogSpec) -> dict[tuple[str, str], InstancePrice]:
    """The rows of a spec by (instance type, region)."""
    return {(entry.instance_type.lower(), entry.region.lower()): InstancePrice(
                entry.instance_type, entry.cloud or "", entry.gpu_model or "", float(entry.gpu_count or 0),
                entry.on_demand_per_hour, entry.spot_per_hour)
            for entry in spec.instances}


def reprice(state: ClusterState, catalog: CatalogOverlay) -> int:
    """Re-price the nodes in ``state`` from ``catalog`` (annotated prices kept); returns how many changed."""
    changed = 0
    with state.lock:
        for info in state.node_infos():
            if info.price_source == ANNOTATION_SOURCE:
                continue
            price = catalog.node_price(info.instance_type, info.node.spot, info.region)
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
        self._good: dict[str, tuple[tuple[str, str], dict[tuple[str, str], InstancePrice]]] = {}
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
        rows = rows_of(spec)
        regional = sum(1 for _, region in rows if region != ALL_REGIONS)
        with self._lock:
            self._good[name] = ((str(meta.get("creationTimestamp") or ""), name), rows)
        message = f"{len(rows) - regional} instance prices in effect"
        if regional:
            message += (f"; {regional} region-specific entries in effect (for nodes labelled "
                        f"{names.REGION_LABEL} with their region)")
        log.info("pricecatalog=%s generation=%d applied rows=%d regional=%d", name, generation, len(rows), regional)
        self._write(name, kstatus.applied(obj.get("status"), generation, message, applied_by=self._identity))
        return True

    def _rebuild(self) -> None:
        with self._lock:
            layers = sorted(self._good.values(), key=lambda item: item[0])
        merged: dict[tuple[str, str], InstancePrice] = {}
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
