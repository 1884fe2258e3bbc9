"""The GPU instance price catalog: $/hour per instance type, on-demand and spot.

Defaults ship with the package (``gpufleet/core/data/gpu-instance-prices.csv``, provenance in the
``.SOURCES.md`` next to it). Many rows have no spot price (the sources had none for AWS and Azure);
for those a spot price is estimated as on-demand x ``spot_ratio``, the median spot/on-demand ratio of
the rows that have both, and marked as an estimate. A node annotation overrides all of this (see
``nodes``). Reads only its packaged file; no other I/O.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources


class CatalogError(ValueError):
    """A price catalog that cannot be read; ``problems`` lists ``file:line: message`` strings."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems[:10]) + (" ..." if len(self.problems) > 10 else ""))


CATALOG_FILE = "gpu-instance-prices.csv"


@dataclass(frozen=True)
class InstancePrice:
    """One catalog row; prices in USD per hour for the whole instance, None where unknown."""

    instance_type: str
    cloud: str
    gpu_model: str
    gpu_count: float
    on_demand: float | None
    spot: float | None


@dataclass(frozen=True)
class NodePrice:
    """A node's price: USD per hour for the node (None if unknown) and where it came from
    (``annotation``, ``catalog``, ``catalog-spot-estimate`` or ``unknown``)."""

    per_hour: float | None
    source: str


UNKNOWN = NodePrice(None, "unknown")


class PriceCatalog:
    def __init__(self, prices: Iterable[InstancePrice], spot_ratio: float | None = None) -> None:
        self._by_type = {p.instance_type.lower(): p for p in prices}
        ratios = [p.spot / p.on_demand for p in self._by_type.values()
                  if p.spot is not None and p.on_demand]
        self.spot_ratio = spot_ratio if spot_ratio is not None else (statistics.median(ratios) if ratios else 1.0)

    @classmethod
    def from_csv_text(cls, text: str, source: str = "<text>") -> PriceCatalog:
        """Parse the catalog CSV (the packaged file's columns); raises ``CatalogError`` listing every bad cell."""
        problems: list[str] = []
        prices = []
        for line, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
            try:
                prices.append(InstancePrice(
                    instance_type=row["instance_type"].strip(),
                    cloud=row.get("cloud", "").strip(),
                    gpu_model=row.get("gpu_model", "").strip(),
                    gpu_count=float(row.get("gpu_count") or 0),
                    on_demand=_price(row.get("ondemand_usd_per_hour")),
                    spot=_price(row.get("spot_usd_per_hour")),
                ))
            except (KeyError, ValueError, AttributeError) as err:
                problems.append(f"{source}:{line}: {err}")
        if problems:
            raise CatalogError(problems)
        return cls(prices)

    @classmethod
    def default(cls) -> PriceCatalog:
        """The catalog shipped with gpufleet (parsed once per process)."""
        return _default_catalog()

    def __len__(self) -> int:
        return len(self._by_type)

    def get(self, instance_type: str) -> InstancePrice | None:
        return self._by_type.get(instance_type.lower()) if instance_type else None

    def node_price(self, instance_type: str, spot: bool) -> NodePrice:
        """The hourly price of one node of this type and capacity type."""
        row = self.get(instance_type)
        if row is None:
            return UNKNOWN
        if not spot:
            return NodePrice(row.on_demand, "catalog") if row.on_demand is not None else UNKNOWN
        if row.spot is not None:
            return NodePrice(row.spot, "catalog")
        if row.on_demand is not None:
            return NodePrice(row.on_demand * self.spot_ratio, "catalog-spot-estimate")
        return UNKNOWN


def _price(cell: str | None) -> float | None:
    if cell is None or not cell.strip():
        return None
    value = float(cell)
    if not value >= 0:
        raise ValueError(f"price must be >= 0, got {cell!r}")
    return value


@lru_cache(maxsize=1)
def _default_catalog() -> PriceCatalog:
    text = resources.files("gpufleet.core.data").joinpath(CATALOG_FILE).read_text(encoding="utf-8")
    return PriceCatalog.from_csv_text(text, CATALOG_FILE)
