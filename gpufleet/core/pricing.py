"""The GPU instance price catalog: $/hour per instance type, on-demand and spot.

Defaults ship with the package (``gpufleet/core/data/gpu-instance-prices.csv``, provenance in the
``.SOURCES.md`` next to it). Many rows have no spot price (the sources had none for AWS and Azure);
for those a spot price is estimated as on-demand x ``spot_ratio``, the median spot/on-demand ratio of
the rows that have both, and marked as an estimate. A node annotation overrides all of this (see
``nodes``). Each row also keeps the instance's size (vCPU, memory, GPU memory), which the cost
recommender sizes with. Reads only its packaged file; no other I/O.
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
GB_TO_MIB = 1e9 / 2**20


@dataclass(frozen=True)
class InstancePrice:
    """One catalog row; prices in USD per hour for the whole instance, None where unknown. The size:
    ``gpu_memory_mib`` per GPU (0 when unknown), ``vcpu`` and ``memory_gib`` (None when unknown)."""

    instance_type: str
    cloud: str
    gpu_model: str
    gpu_count: float
    on_demand: float | None
    spot: float | None
    gpu_memory_mib: float = 0.0
    vcpu: float | None = None
    memory_gib: float | None = None


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
        self.spot_ratio = spot_ratio if spot_ratio is not None else median_spot_ratio(self._by_type.values())

    @classmethod
    def from_csv_text(cls, text: str, source: str = "<text>") -> PriceCatalog:
        """Parse the catalog CSV (the packaged file's columns); raises ``CatalogError`` listing every bad cell."""
        return cls(parse_prices(text, source))

    @classmethod
    def default(cls) -> PriceCatalog:
        """The catalog shipped with gpufleet (parsed once per process)."""
        return _default_catalog()

    def __len__(self) -> int:
        return len(self._by_type)

    def get(self, instance_type: str, region: str = "") -> InstancePrice | None:
        """The row of ``instance_type`` (one per type: ``region`` is accepted and ignored)."""
        return self._by_type.get(instance_type.lower()) if instance_type else None

    def node_price(self, instance_type: str, spot: bool, region: str = "") -> NodePrice:
        """The hourly price of one node of this type and capacity type (the same in every region)."""
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


def parse_prices(text: str, source: str = "<text>") -> list[InstancePrice]:
    """Every row of the catalog CSV, in file order (row ``i`` is line ``i + 2``); raises ``CatalogError``
    listing every bad cell."""
    problems: list[str] = []
    prices = []
    for line, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
        try:
            prices.append(InstancePrice(
                instance_type=row["instance_type"].strip(),
                cloud=(row.get("cloud") or "").strip(),
                gpu_model=(row.get("gpu_model") or "").strip(),
                gpu_count=float(row.get("gpu_count") or 0),
                on_demand=_number(row.get("ondemand_usd_per_hour")),
                spot=_number(row.get("spot_usd_per_hour")),
                gpu_memory_mib=_gpu_memory_mib(row),
                vcpu=_number(row.get("vcpu")),
                memory_gib=_number(row.get("memory_gib")),
            ))
        except (KeyError, ValueError, AttributeError) as err:
            problems.append(f"{source}:{line}: {err}")
    if problems:
        raise CatalogError(problems)
    return prices


def median_spot_ratio(prices: Iterable[InstancePrice]) -> float:
    """The median spot/on-demand price ratio of the rows that have both (1.0 when none has)."""
    ratios = [p.spot / p.on_demand for p in prices if p.spot is not None and p.on_demand]
    return statistics.median(ratios) if ratios else 1.0


def _number(cell: str | None) -> float | None:
    """A non-negative number, None for an empty or absent cell."""
    if cell is None or not cell.strip():
        return None
    value = float(cell)
    if not value >= 0:
        raise ValueError(f"must be a number >= 0, got {cell!r}")
    return value


def _gpu_memory_mib(row: dict[str, str]) -> float:
    """MiB per GPU: ``gpu_memory_per_gpu_mib``, else the nominal decimal GB column; 0 when neither."""
    mib = _number(row.get("gpu_memory_per_gpu_mib"))
    if mib is not None:
        return mib
    gb = _number(row.get("gpu_memory_per_gpu_gb_nominal"))
    return gb * GB_TO_MIB if gb is not None else 0.0


@lru_cache(maxsize=1)
def _default_catalog() -> PriceCatalog:
    text = resources.files("gpufleet.core.data").joinpath(CATALOG_FILE).read_text(encoding="utf-8")
    return PriceCatalog.from_csv_text(text, CATALOG_FILE)
