"""Instance types with the specs the recommender needs (GPU memory, vCPU, memory) and their prices.

Reads the same CSV as ``gpufleet.core.pricing`` (``gpu-instance-prices.csv``) but keeps the columns
that catalog drops. Spot prices missing in the file are estimated as on-demand x the catalog's
median spot/on-demand ratio, as ``PriceCatalog`` does. GPU memory comes from
``gpu_memory_per_gpu_mib``, else the nominal GB column (decimal GB -> MiB); a row with neither is
kept for pricing but never recommended, since nothing proves what it holds.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

MIB_PER_GIB = 1024
GB_TO_MIB = 1e9 / 2**20


class CatalogError(ValueError):
    """A price table that cannot be read; the message lists every bad cell with its line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = tuple(problems)


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
    problems: list[str] = []
    rows: list[dict] = []
    reader = csv.DictReader(io.StringIO(text))
    missing = {"instance_type", "gpu_model", "gpu_count", "vcpu", "memory_gib", "ondemand_usd_per_hour"} - set(
        reader.fieldnames or [])
    if missing:
        raise CatalogError([f"{source}:1: missing column(s) {', '.join(sorted(missing))}"])
    for line, row in enumerate(reader, start=2):
        try:
            on_demand = _number(row.get("ondemand_usd_per_hour"))
            if on_demand is None:
                continue  # a type nobody can price is of no use here
            mib = _number(row.get("gpu_memory_per_gpu_mib"))
            if mib is None:
                gb = _number(row.get("gpu_memory_per_gpu_gb_nominal"))
                mib = gb * GB_TO_MIB if gb is not None else 0.0
            rows.append(dict(
                name=row["instance_type"].strip(), cloud=(row.get("cloud") or "").strip(),
                gpu_model=(row.get("gpu_model") or "").strip().lower(),
                gpu_count=float(row.get("gpu_count") or 0), gpu_memory_mib=mib,
                vcpu=float(row["vcpu"]), memory_gib=float(row["memory_gib"]),
                on_demand=on_demand, spot=_number(row.get("spot_usd_per_hour"))))
        except (KeyError, ValueError, TypeError) as err:
            problems.append(f"{source}:{line}: {err}")
    if problems:
        raise CatalogError(problems)
    if not rows:
        raise CatalogError([f"{source}: no priced instance types"])
    ratios = [r["spot"] / r["on_demand"] for r in rows if r["spot"] is not None and r["on_demand"] > 0]
    ratio = statistics.median(ratios) if ratios else 1.0
    types = []
    for r in rows:
        count = r.pop("gpu_count")
        spot = r.pop("spot")
        types.append(InstanceType(gpu_count=int(count) if count >= 1 else 0,
                                  spot=spot if spot is not None else r["on_demand"] * ratio,
                                  spot_estimated=spot is None, **r))
    return Catalog(tuple(types))


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


def _number(cell: str | None) -> float | None:
    if cell is None or not cell.strip():
        return None
    value = float(cell)
    if not value >= 0:
        raise ValueError(f"must be a number >= 0, got {cell!r}")
    return value
