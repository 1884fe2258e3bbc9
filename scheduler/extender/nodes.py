"""A Node object -> ``NodeInfo``: the model's ``Node`` (allocatable CPU, memory, GPUs, GPU model,
price, spot) plus the labels behind them.

GPU model: ``nvidia.com/gpu.product`` (what NVIDIA's feature discovery writes, and what pods select
on), else ``gpufleet.io/gpu-model``, else the catalog's model for the instance type. Capacity type:
the first of Karpenter's, EKS's, GKE's and AKS's labels that is set. Price: the node annotation
``gpufleet.io/price-per-hour``, else the catalog for the instance type, capacity type and region
(``topology.kubernetes.io/region``; the built-in table has one price for every region). No I/O here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gpufleet.core import names
from gpufleet.core.pricing import NodePrice, PriceCatalog
from gpufleet.core.quantity import QuantityError, to_count, to_mib, to_milli
from gpufleet.scheduler.extender.errors import Problems, as_dict, as_str, str_map
from gpufleet.scheduler.model import Node

#: The widest node the model takes; more would make every node's GPU row that wide.
MAX_GPUS_PER_NODE = 128


@dataclass(frozen=True)
class NodeInfo:
    node: Node
    instance_type: str
    zone: str
    capacity_type: str  # "spot", "on-demand", "reserved" or "" (unknown: priced as on-demand)
    price_source: str  # see pricing.NodePrice.source
    unschedulable: bool
    resource_version: str
    problems: tuple[str, ...] = ()
    region: str = ""  # topology.kubernetes.io/region, "" when not labelled

    @property
    def name(self) -> str:
        return self.node.name


def parse_node(obj: object, catalog: PriceCatalog, path: str = "Node") -> NodeInfo:
    """Parse a Node; raises ``WireError`` listing every structural problem."""
    problems = Problems()
    node = as_dict(obj, path, problems)
    meta = as_dict(node.get("metadata"), f"{path}.metadata", problems)
    spec = as_dict(node.get("spec"), f"{path}.spec", problems)
    status = as_dict(node.get("status"), f"{path}.status", problems)
    name = as_str(meta.get("name"), f"{path}.metadata.name", problems)
    if not name:
        problems.add(f"{path}.metadata.name", "must be a non-empty string")
    labels = str_map(meta.get("labels"), f"{path}.metadata.labels", problems)
    annotations = str_map(meta.get("annotations"), f"{path}.metadata.annotations", problems)
    capacity = as_dict(status.get("capacity"), f"{path}.status.capacity", problems)
    allocatable = as_dict(status.get("allocatable"), f"{path}.status.allocatable", problems) or capacity
    cpu = _resource(allocatable, "cpu", to_milli, f"{path}.status.allocatable", problems)
    memory = _resource(allocatable, "memory", to_mib, f"{path}.status.allocatable", problems)
    gpus = _resource(allocatable, names.GPU_RESOURCE, to_count, f"{path}.status.allocatable", problems)
    if gpus > MAX_GPUS_PER_NODE:
        problems.add(f"{path}.status.allocatable.{names.GPU_RESOURCE}", f"more than {MAX_GPUS_PER_NODE} GPUs")
    problems.raise_if_any()

    notes: list[str] = []
    price = _annotated_price(annotations.get(names.PRICE_PER_HOUR), notes)

    instance_type = labels.get(names.INSTANCE_TYPE_LABEL) or labels.get(names.LEGACY_INSTANCE_TYPE_LABEL, "")
    kind = names.capacity_type(labels)
    spot = kind == names.SPOT
    region = labels.get(names.REGION_LABEL, "")
    row = catalog.get(instance_type, region)
    model = labels.get(names.GPU_PRODUCT_LABEL) or labels.get(names.GPU_MODEL_LABEL) or (row.gpu_model if row else "")
    if price is None:
        price = catalog.node_price(instance_type, spot, region)
    return NodeInfo(
        node=Node(name=name, cpu_milli=cpu, memory_mib=memory, gpus=gpus, gpu_model=model if gpus else "",
                  price_per_hour=price.per_hour or 0.0, spot=spot),
        instance_type=instance_type,
        zone=labels.get(names.ZONE_LABEL, ""),
        capacity_type=kind,
        price_source=price.source,
        unschedulable=bool(spec.get("unschedulable")),
        resource_version=str(meta.get("resourceVersion") or ""),
        problems=tuple(notes),
        region=region,
    )


def _resource(resources: dict, name: str, convert, path: str, problems: Problems) -> int:
    if name not in resources:
        return 0
    try:
        return min(convert(resources[name], up=False), 2**62)  # capacity: never more than advertised
    except QuantityError as err:
        problems.add(f"{path}.{name}", str(err))
        return 0


def _annotated_price(value: str | None, notes: list[str]) -> NodePrice | None:
    """The override, or None (a bad value is noted and the catalog used: the node stays schedulable)."""
    if value is None:
        return None
    try:
        price = float(value)
    except ValueError:
        price = math.nan
    if not (math.isfinite(price) and price >= 0):
        notes.append(f"{names.PRICE_PER_HOUR}={value!r} is not a non-negative number of USD per hour; using the catalog")
        return None
    return NodePrice(price, "annotation")
