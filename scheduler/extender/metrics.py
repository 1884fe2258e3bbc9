"""The extender's Prometheus metrics, built against an injected ``CollectorRegistry``.

Request-path series (latency per verb, requests by verb and HTTP code, decisions by policy, binds by
result, events sent and dropped, relists) are updated as things happen. Cluster series (free GPUs,
expected fragmentation, assumed placements, cache age) are computed at scrape time from the state by
``ClusterCollector``, per GPU model with the DCGM label name ``modelName``, so no stale label sets
are left behind when a model disappears.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gpufleet.scheduler.extender.state import ClusterState
from gpufleet.scheduler.model import GPU_MILLI

#: Sub-millisecond resolution where the latency budget lives, up to kube-scheduler's timeouts.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01,
                   0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ExtenderMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.request_duration = Histogram(
            "gpufleet_extender_request_duration_seconds", "Time to answer one extender call, by verb.",
            ["verb"], registry=r, buckets=LATENCY_BUCKETS)
        self.requests = Counter(
            "gpufleet_extender_requests_total", "Extender calls answered, by verb and HTTP status code.",
            ["verb", "code"], registry=r)
        self.decisions = Counter(
            "gpufleet_extender_decisions_total",
            "Placement decisions (filter or prioritize answers) by policy (off: neutral scores for pods that did "
            "not opt in).",
            ["policy"], registry=r)
        self.binds = Counter(
            "gpufleet_extender_binds_total", "Bind calls by result (bound, already_bound, error).",
            ["result"], registry=r)
        self.expired = Counter(
            "gpufleet_extender_assumptions_expired_total",
            "Decisions released because the pod was not seen bound before their deadline.", registry=r)
        self.cpu = Counter(
            "gpufleet_extender_cpu_seconds_total",
            "CPU seconds of the threads serving kube-scheduler, by part: one verb (from its request read to "
            "its reply written, the API call of bind included) or connection (accepting it, reading request "
            "headers, waiting for the next request). The rest of the process's CPU is the watches and scrapes.",
            ["part"], registry=r)
        self.backpressure = Counter(
            "gpufleet_extender_backpressure_seconds_total",
            "Seconds filter held kube-scheduler's next pod because too many binds waited on the API server.",
            registry=r)
        self.events = Counter(
            "gpufleet_extender_events_total", "Kubernetes Events by outcome (sent, dropped, failed).",
            ["outcome"], registry=r)
        self.relists = Counter(
            "gpufleet_extender_relists_total", "Full lists of a resource (start, 410 Gone, errors).",
            ["resource"], registry=r)

    def watch_state(self, state: ClusterState, fragmentation: Callable[[], np.ndarray]) -> None:
        """Add the scrape-time cluster series for ``state``."""
        self.registry.register(ClusterCollector(state, fragmentation))


class ClusterCollector(Collector):
    def __init__(self, state: ClusterState, fragmentation: Callable[[], np.ndarray]) -> None:
        self._state = state
        self._fragmentation = fragmentation

    def describe(self) -> list:
        return []  # collected lazily; nothing to check at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = self._state
        free = GaugeMetricFamily("gpufleet_extender_cluster_free_gpus",
                                 "Unallocated GPU capacity in GPUs (shares count as fractions).",
                                 labels=["modelName"])
        total = GaugeMetricFamily("gpufleet_extender_cluster_gpus", "GPUs in the model.", labels=["modelName"])
        frag = GaugeMetricFamily(
            "gpufleet_extender_cluster_fragmentation_gpus",
            "Expected free GPU capacity the workload mix cannot use (FGD's F), in GPUs.", labels=["modelName"])
        with state.lock:
            cluster = state.cluster
            assumed = state.ledger.assumed_count
            placements = len(state.ledger)
            nodes = state.node_count()
            age = None if state.last_update is None else state.clock.monotonic() - state.last_update
            if cluster is not None:
                f = self._fragmentation()
                live = cluster.gpu_count > 0
                models = cluster.gpu_model
                for m, name in enumerate(cluster.model_names):
                    rows = live & (models == m)
                    if not rows.any():
                        continue
                    free.add_metric([name], float(np.clip(cluster.gpu_free[rows], 0, GPU_MILLI).sum()) / GPU_MILLI)
                    total.add_metric([name], float(cluster.gpu_count[rows].sum()))
                    frag.add_metric([name], float(f[rows].sum()) / GPU_MILLI)
        yield free
        yield total
        yield frag
        yield GaugeMetricFamily("gpufleet_extender_assumed_placements",
                                "Decisions not yet confirmed by the pod watch.", value=assumed)
        yield GaugeMetricFamily("gpufleet_extender_placements", "Pods accounted in the model.", value=placements)
        yield GaugeMetricFamily("gpufleet_extender_nodes", "Nodes in the model.", value=nodes)
        yield GaugeMetricFamily("gpufleet_extender_cache_synced", "1 once every watch has listed.",
                                value=1.0 if state.synced else 0.0)
        if age is not None:
            yield GaugeMetricFamily("gpufleet_extender_cache_age_seconds",
                                    "Seconds since the last change from a watch (or a request, standalone).",
                                    value=age)
