"""The live waste ledger: the agents' samples and the informers' pods and nodes, turned into ledger samples.

Glue only (pricing, kinds and series are :mod:`gpufleet.autoscaler.cost`'s). At every decision pass,
for each node whose agent is fresh, the time from the node's previous batch to its newest one is
charged to the GPUs' holders: a whole GPU holds 1, a share of g milli (``gpufleet.io/gpu-milli``,
resource or annotation) g/1000, a MIG device its profile's fraction; GPUs no pod holds are
unallocated. Activity is the GPU's mean bucketed utilisation over the interval (no reading for a
held GPU: counted active, as no data is never idle), memory its peak. A node whose agent is silent
(older than ``agents.stale_after_s``), or whose batches skip more than that, contributes nothing for
that time: no data is not waste. Teams come from the pod's team labels, else its namespace's (keys
``cost.teamLabels``, first present wins); unlabelled pods go to ``unassigned``.

MIG devices carry no physical-GPU link in the store, so a node's MIG holdings are packed first-fit
onto GPUs after the whole ones: the unallocated total stays right, the GPU index may not.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from importlib import resources
from typing import Any

import numpy as np
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from gpufleet.autoscaler.controller.config import CostConfig
from gpufleet.autoscaler.controller.store import PodName, SampleStore
from gpufleet.autoscaler.cost import attribution
from gpufleet.autoscaler.cost.budgets import BudgetConfig
from gpufleet.autoscaler.cost.catalog import Catalog, parse_catalog
from gpufleet.autoscaler.cost.ledger import (
    Holding,
    Ledger,
    LedgerPolicy,
    LedgerSnapshot,
    NodeRef,
    PodCost,
    PodRef,
    mig_fraction,
)
from gpufleet.autoscaler.cost.sizing import (
    Usage,
    Workload,
    WorkloadRecommendation,
    needed_rate,
    recommend_workload,
)
from gpufleet.core import names
from gpufleet.core.clock import Clock
from gpufleet.core.pricing import CATALOG_FILE, PriceCatalog
from gpufleet.core.quantity import parse_quantity

log = logging.getLogger(__name__)

MIG_PREFIX = "nvidia.com/mig-"
Lookup = Callable[[str], "dict[str, Any] | None"]


@dataclass(frozen=True, slots=True)
class Held:
    """One device of a node and the pods the agent says hold it."""

    uuid: str
    pods: tuple[PodName, ...]


def share_of(pod: Mapping[str, Any] | None, gpu_model: str = "") -> tuple[float, bool]:
    """(fraction of a device the pod holds, is a MIG slice): milli / 1000 for a share, the profile's
    fraction for MIG, else 1 (a whole GPU, or a pod the informer does not know)."""
    if not pod:
        return 1.0, False
    milli = 0.0
    for container in (pod.get("spec") or {}).get("containers") or []:
        res = container.get("resources") or {}
        asked = {**(res.get("requests") or {}), **(res.get("limits") or {})}
        for key in asked:
            if key.startswith(MIG_PREFIX):
                try:
                    return mig_fraction(key.removeprefix(MIG_PREFIX), gpu_model), True
                except ValueError:
                    log.debug("pod=%s resource=%s: not a MIG profile", _key(pod), key)
        milli += _number(asked.get(names.GPU_MILLI))
    if not milli:
        milli = _number(((pod.get("metadata") or {}).get("annotations") or {}).get(names.GPU_MILLI))
    return (min(1.0, milli / 1000.0), False) if 0 < milli < 1000 else (1.0, False)


def pod_ref(namespace: str, name: str, pod: Mapping[str, Any] | None, ns: Mapping[str, Any] | None,
            team_labels: tuple[str, ...]) -> PodRef:
    """The ledger's pod: owner from the controlling ownerReference; the team labels of the pod when it
    has any of them, else its namespace's (other labels are not copied)."""
    meta = (pod or {}).get("metadata") or {}
    owners = meta.get("ownerReferences") or []
    owner = next((o for o in owners if o.get("controller")), owners[0] if owners else None)
    own = meta.get("labels") or {}
    inherited = ((ns or {}).get("metadata") or {}).get("labels") or {}
    source = own if any(own.get(k) for k in team_labels) else inherited
    labels = tuple((k, source[k]) for k in team_labels if source.get(k))
    containers = (pod or {}).get("spec", {}).get("containers") or []
    return PodRef(name=name, namespace=namespace, owner=f"{owner['kind']}/{owner['name']}" if owner else "",
                  labels=labels, container=containers[0].get("name", "") if len(containers) == 1 else "")


def node_ref(name: str, node: Mapping[str, Any] | None, devices: int) -> NodeRef:
    """The ledger's node: GPUs from capacity (``nvidia.com/gpu``), else the ``nvidia.com/gpu.count``
    label, and never fewer than the whole devices the agent reports held."""
    meta = (node or {}).get("metadata") or {}
    labels = dict(meta.get("labels") or {})
    capacity = ((node or {}).get("status") or {}).get("capacity") or {}
    gpus = int(_number(capacity.get(names.GPU_RESOURCE)) or _number(labels.get(names.GPU_COUNT_LABEL)))
    return NodeRef(name=name, gpus=max(gpus, devices), gpu_model=labels.get(names.GPU_MODEL_LABEL, ""),
                   labels=labels, annotations=dict(meta.get("annotations") or {}),
                   region=labels.get("topology.kubernetes.io/region", ""),
                   provider_id=((node or {}).get("spec") or {}).get("providerID", ""))


def holdings(node: str, node_obj: Mapping[str, Any] | None, held: list[Held], pods: Lookup, namespaces: Lookup,
             usage: Callable[[PodName, str], tuple[float, float]], team_labels: tuple[str, ...]
             ) -> tuple[NodeRef, list[Holding]]:
    """One node's ledger sample: whole and shared devices get indexes in UUID order, MIG slices are
    packed after them; ``usage(pod, uuid)`` gives (activity 0..1, peak memory bytes)."""
    model = (((node_obj or {}).get("metadata") or {}).get("labels") or {}).get(names.GPU_MODEL_LABEL, "")
    whole: list[tuple[str, list[tuple[PodRef, float, tuple[float, float]]]]] = []
    mig: list[tuple[PodRef, float, tuple[float, float]]] = []
    for device in sorted(held, key=lambda d: d.uuid):
        on_device = []
        for ns, name in device.pods:
            pod = pods(f"{ns}/{name}")
            fraction, is_mig = share_of(pod, model)
            ref = pod_ref(ns, name, pod, namespaces(ns), team_labels)
            item = (ref, fraction, usage((ns, name), device.uuid))
            (mig if is_mig else on_device).append(item)
        if on_device:
            whole.append((device.uuid, on_device))
    out = [Holding(ref, i, fraction, activity, memory)
           for i, (_, items) in enumerate(whole) for ref, fraction, (activity, memory) in items]
    free: list[float] = []  # room left on each MIG GPU, first-fit
    for ref, fraction, (activity, memory) in mig:
        slot = next((k for k, room in enumerate(free) if room >= fraction - 1e-9), None)
        if slot is None:
            free.append(1.0)
            slot = len(free) - 1
        free[slot] -= fraction
        out.append(Holding(ref, len(whole) + slot, fraction, activity, memory))
    return node_ref(node, node_obj, len(whole) + len(free)), out


def default_catalogs() -> tuple[PriceCatalog, Catalog]:
    """The packaged price table: node prices, and the instance types recommendations may name."""
    text = resources.files("gpufleet.core.data").joinpath(CATALOG_FILE).read_text(encoding="utf-8")
    return PriceCatalog.default(), parse_catalog(text, CATALOG_FILE).recommendable()


def workload_of(cost: PodCost, pod: Mapping[str, Any], spec: Catalog, instance_type: str) -> Workload:
    """The sizing input for one pod: its requests, and its running peaks as the measured use (peaks, not
    p99s: a live ledger keeps no percentiles, so the size errs on the large side)."""
    cpu = memory = 0.0
    for container in (pod.get("spec") or {}).get("containers") or []:
        asked = (container.get("resources") or {}).get("requests") or {}
        cpu += _number(asked.get("cpu")) * 1000
        memory += _number(asked.get("memory")) / 2**20
    fraction, _ = share_of(pod)
    gpus = int(sum(_number(((c.get("resources") or {}).get("limits") or {}).get(names.GPU_RESOURCE))
                   for c in (pod.get("spec") or {}).get("containers") or [])) or 1
    typ = spec.get(instance_type)
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    return Workload(cost.pod.key if not cost.pod.owner else f"{cost.pod.namespace}/{cost.pod.owner}",
                    int(cpu), int(memory), gpus, round(fraction * 1000) if gpus == 1 else 1000,
                    interruptible=annotations.get(names.INTERRUPTIBLE, "").lower() == "true",
                    source_gpu_gib=typ.gpu_memory_gib if typ is not None and typ.gpu_memory_mib > 0 else 16.0,
                    usage=Usage(cost.peak_memory_bytes / 2**30, cost.peak_activity,
                                window_s=cost.gpu_seconds / max(fraction, 1e-9) / gpus))


class CostAccounting:
    """Feeds the :class:`Ledger` from the sample store at every pass and exports it on ``registry``."""

    def __init__(self, store: SampleStore, pods: Lookup, nodes: Lookup, namespaces: Lookup, clock: Clock,
                 config: CostConfig, stale_after_s: float, registry: CollectorRegistry,
                 catalog: PriceCatalog | None = None, recommend_every_s: float = 60.0,
                 budgets: Callable[[], BudgetConfig] | None = None) -> None:
        default, self._spec = default_catalogs()
        self.ledger = Ledger(catalog if catalog is not None else default, needed_rate(self._spec), LedgerPolicy(
            idle_below=config.idle_below, team_keys=config.team_labels))
        self._recs: tuple[float, list[WorkloadRecommendation]] = (-math.inf, [])
        self._store, self._pods, self._nodes, self._namespaces = store, pods, nodes, namespaces
        self._clock = clock
        self._config = config
        self._stale_after_s = stale_after_s
        self._lock = threading.Lock()
        self._charged_to: dict[str, float] = {}  # node -> agent time charged up to
        self._observed: dict[str, float] = defaultdict(float)  # node -> seconds priced
        self._recommend_every_s = recommend_every_s
        # budgets: the config file's, or a callable read at each scrape (the GpuBudget objects in effect)
        attribution.register(registry, self.snapshot, clock.now, budgets or config.budgets, self.recommendations)
        registry.register(_ObservedCollector(self))

    def snapshot(self) -> LedgerSnapshot:
        with self._lock:
            return self.ledger.snapshot()

    def recommendations(self) -> list[WorkloadRecommendation]:
        """Per workload (pod owner, else pod) still running with measured memory: the cheapest size that
        holds its peaks (the largest pod of a workload); recomputed at most every ``recommend_every_s`` once
        there are any."""
        at, recs = self._recs
        if recs and self._clock.monotonic() - at < self._recommend_every_s:
            return recs
        snap = self.snapshot()
        best: dict[str, tuple[float, WorkloadRecommendation]] = {}
        for key, cost in sorted(snap.pods.items()):
            pod = self._pods(key)
            node = snap.node_prices.get(cost.node)
            if pod is None or node is None or cost.peak_memory_bytes <= 0:
                continue
            ref, price = node
            w = workload_of(cost, pod, self._spec, ref.instance_type)
            now = price.usd_per_gpu_hour * w.num_gpu * w.share if price.source != "unknown" else None
            rec = recommend_workload(w, self._spec, usd_per_hour_now=now)
            if w.name not in best or cost.peak_memory_bytes > best[w.name][0]:
                best[w.name] = (cost.peak_memory_bytes, rec)
        recs = [rec for _, rec in best.values()]
        self._recs = (self._clock.monotonic(), recs)
        return recs

    def observed(self) -> dict[str, float]:
        with self._lock:
            return dict(self._observed)

    def update(self) -> int:
        """Charge every fresh node up to its newest batch; returns how many nodes were charged."""
        now = self._clock.now()
        devices: dict[str, dict[str, list[PodName]]] = defaultdict(lambda: defaultdict(list))
        for pod, places in self._store.holders().items():
            for node, uuid in places:
                devices[node][uuid].append(pod)
        charged = 0
        for node, state in sorted(self._store.nodes().items()):
            last = self._charged_to.get(node)
            end = state.sample_time
            if now - state.received_at > self._stale_after_s:
                continue  # silent agent: nothing charged, and the gap is skipped when it comes back
            self._charged_to[node] = end
            if last is None or end - last > self._stale_after_s or end <= last:
                continue
            held = [Held(u, tuple(p)) for u, p in devices.get(node, {}).items()]
            ref, sample = holdings(node, self._nodes(node), held, self._pods, self._namespaces,
                                   partial(self._usage, since=last),
                                   self._config.team_labels)
            with self._lock:
                self.ledger.add_sample(ref, last, end - last, sample)
                self._observed[node] += end - last
            charged += 1
        return charged

    def _usage(self, pod: PodName, uuid: str, since: float) -> tuple[float, float]:
        series = self._store.series(pod, uuid, since)
        if not len(series):
            return 1.0, 0.0  # no reading: never idle
        memory = series.memory_used_bytes[~np.isnan(series.memory_used_bytes)]
        activity = float(np.mean(series.utilisation_percent)) / 100.0
        return min(1.0, activity), float(memory.max()) if len(memory) else 0.0


class _ObservedCollector(Collector):
    def __init__(self, costs: CostAccounting) -> None:
        self._costs = costs

    def collect(self) -> Iterator[Metric]:
        seconds = CounterMetricFamily("gpufleet_cost_node_observed_seconds",
                                      "Time of the node priced from its agent's samples (silent agents add none), s",
                                      labels=["node"])
        for node, value in sorted(self._costs.observed().items()):
            seconds.add_metric([node], value)
        yield seconds


def _number(value: object) -> float:
    if value is None or value == "":
        return 0.0
    try:
        number = float(parse_quantity(value))
    except (ValueError, ArithmeticError):
        return 0.0
    return number if math.isfinite(number) and number > 0 else 0.0


def _key(pod: Mapping[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"
