"""Instance types with the specs the recommender needs (GPU memory, vCPU, memory) and their prices.

Built on ``gpufleet.core.pricing``, which parses the CSV (``gpu-instance-prices.csv``): this module
keeps the priced rows, requires their vCPU and memory, and fills in missing spot prices as on-demand x
the median spot/on-demand ratio, as ``PriceCatalog`` does. GPU memory comes from
``gpu_memory_per_gpu_mib``, else the nominal GB column (decimal GB -> MiB); a row with neither is
kept for pricing but never recommended, since nothing proves what it holds.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gpufleet.core.pricing import GB_TO_MIB, CatalogError, InstancePrice, median_spot_ratio, parse_prices

__all__ = ["GB_TO_MIB", "MIB_PER_GIB", "Catalog", "CatalogError", "InstanceType", "cheapest", "load_catalog",
           "models_by_memory", "parse_catalog"]

MIB_PER_GIB = 1024
REQUIRED_COLUMNS = frozenset({"instance_type", "gpu_model", "gpu_count", "vcpu", "memory_gib",
                              "ondemand_usd_per_hour"})


@dataclass(frozen=True)
class InstanceType:
    """One catalog row. Prices in USD per hour for the whole instance."""

    name: str
    cloud: str
    gpu_model: str
    gpu_count: int
    gpu_memory_mib: float  # per GPU; 0 when unknown
    vcpu: float
    memory_gib: float
    on_demand: float
    spot: float
    spot_estimated: bool = False

    @property
    def cpu_milli(self) -> int:
        return int(round(self.vcpu * 1000))

    @property
    def memory_mib(self) -> int:
        return int(self.memory_gib * MIB_PER_GIB)

    @property
    def gpu_class(self) -> str:
        """GPU model and memory ("a100@40960"): types of one model with different memory (p4d's 40 GB and
        p4de's 80 GB A100s) are different classes for sizing and packing."""
        return f"{self.gpu_model}@{int(round(self.gpu_memory_mib))}"

    @property
    def gpu_memory_gib(self) -> float:
        return self.gpu_memory_mib / MIB_PER_GIB

    def price(self, spot: bool = False) -> float:
        return self.spot if spot else self.on_demand

    def gpu_hour_price(self, spot: bool = False) -> float:
        """USD per GPU-hour: the whole instance's price over its GPUs (the ledger's unit)."""
        return self.price(spot) / self.gpu_count if self.gpu_count else 0.0


@dataclass(frozen=True)
class Catalog:
    """Instance types of one or more clouds, searchable by name and GPU model."""

    types: tuple[InstanceType, ...]

    def get(self, name: str) -> InstanceType | None:
        low = name.lower()
        return next((t for t in self.types if t.name.lower() == low), None)

    def cloud(self, cloud: str) -> Catalog:
        return Catalog(tuple(t for t in self.types if t.cloud == cloud))

    def recommendable(self) -> Catalog:
        """Types with whole GPUs and a known GPU memory (fractional-GPU types advertise no GPU)."""
        return Catalog(tuple(t for t in self.types if t.gpu_count >= 1 and t.gpu_memory_mib > 0))

    @property
    def gpu_models(self) -> tuple[str, ...]:
        return tuple(sorted({t.gpu_model for t in self.types if t.gpu_model}))

    def of_model(self, model: str) -> tuple[InstanceType, ...]:
        return tuple(t for t in self.types if t.gpu_model == model)

    @property
    def gpu_classes(self) -> tuple[str, ...]:
        return tuple(sorted({t.gpu_class for t in self.types if t.gpu_model}))

    def classes_of(self, models: tuple[str, ...]) -> tuple[str, ...]:
        """The GPU classes of some models (every class when ``models`` is empty)."""
        return tuple(sorted({t.gpu_class for t in self.types if t.gpu_model and (not models or t.gpu_model in models)}))

    def of_class(self, gpu_class: str) -> tuple[InstanceType, ...]:
        return tuple(t for t in self.types if t.gpu_class == gpu_class)

    def __len__(self) -> int:
        return len(self.types)


def parse_catalog(text: str, source: str = "<text>") -> Catalog:
    """Parse the price CSV; raises ``CatalogError`` listing every bad cell."""
    missing = REQUIRED_COLUMNS - set(next(csv.reader(io.StringIO(text)), []))
    if missing:
        raise CatalogError([f"{source}:1: missing column(s) {', '.join(sorted(missing))}"])
    # a type nobody can price is of no use here
    priced = [(line, p) for line, p in enumerate(parse_prices(text, source), start=2) if p.on_demand is not None]
    problems = [f"{source}:{line}: vcpu and memory_gib are required for a priced type" for line, p in priced
                if p.vcpu is None or p.memory_gib is None]
    if problems:
        raise CatalogError(problems)
    if not priced:
        raise CatalogError([f"{source}: no priced instance types"])
    ratio = median_spot_ratio(p for _, p in priced)
    return Catalog(tuple(_instance_type(p, ratio) for _, p in priced))


def _instance_type(price: InstancePrice, spot_ratio: float) -> InstanceType:
    assert price.on_demand is not None and price.vcpu is not None and price.memory_gib is not None
    return InstanceType(
        name=price.instance_type, cloud=price.cloud, gpu_model=price.gpu_model.lower(),
        gpu_count=int(price.gpu_count) if price.gpu_count >= 1 else 0, gpu_memory_mib=price.gpu_memory_mib,
        vcpu=price.vcpu, memory_gib=price.memory_gib, on_demand=price.on_demand,
        spot=price.spot if price.spot is not None else price.on_demand * spot_ratio,
        spot_estimated=price.spot is None)


def load_catalog(path: str | Path) -> Catalog:
    """Read a price table from ``path``; errors name the file and what to do."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise CatalogError([f"reading price table {path}: {err.strerror}; pass --prices with the catalog CSV "
                            "(gpu-instance-prices.csv)"]) from err
    return parse_catalog(text, str(path))


def cheapest(types: Iterable[InstanceType], spot: bool = False) -> InstanceType | None:
    """The lowest-priced type (ties: fewer GPUs, then name), or None."""
    return min(types, key=lambda t: (t.price(spot), t.gpu_count, t.name), default=None)


def models_by_memory(catalog: Catalog) -> Sequence[tuple[str, float]]:
    """(GPU model, GiB per GPU) for every model, smallest memory first."""
    seen: dict[str, float] = {}
    for t in catalog.types:
        if t.gpu_memory_mib > 0:
            seen[t.gpu_model] = max(seen.get(t.gpu_model, 0.0), t.gpu_memory_gib)
    return sorted(seen.items(), key=lambda kv: (kv[1], kv[0]))
