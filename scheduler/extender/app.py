"""Wiring: the state, scorer, verbs, HTTP servers, informers and event recorder of one extender.

``ExtenderApp.build`` takes a ``KubeAPI`` (None for standalone mode) and a config, and returns an app
whose ``start`` warms the numba kernels before the server reports ready, so the first real request
does not pay the JIT.
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from gpufleet.core.clock import Clock, SystemClock
from gpufleet.core.kube.client import KubeAPI
from gpufleet.core.kube.informer import Informer, InformerConfig
from gpufleet.core.pricing import PriceCatalog
from gpufleet.scheduler.extender.events import EventConfig, EventRecorder
from gpufleet.scheduler.extender.informer import informers
from gpufleet.scheduler.extender.metrics import ExtenderMetrics
from gpufleet.scheduler.extender.nodes import NodeInfo
from gpufleet.scheduler.extender.placementconfig import RESOURCE as PLACEMENT_RESOURCE
from gpufleet.scheduler.extender.placementconfig import PlacementPolicies
from gpufleet.scheduler.extender.pods import ANY_MODEL, PodInfo
from gpufleet.scheduler.extender.pricecatalogs import RESOURCE as PRICES_RESOURCE
from gpufleet.scheduler.extender.pricecatalogs import CatalogOverlay, PriceCatalogs
from gpufleet.scheduler.extender.scoring import SCORED_POLICIES, Scorer, ScoringConfig
from gpufleet.scheduler.extender.server import ExtenderServer, ServerConfig
from gpufleet.scheduler.extender.service import BindBacklog, Extender
from gpufleet.scheduler.extender.state import RESOURCES, ClusterState, StateConfig
from gpufleet.scheduler.model import Node, PodRequest
from gpufleet.scheduler.workload import WorkloadMix

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtenderConfig:
    server: ServerConfig = field(default_factory=ServerConfig)
    state: StateConfig = field(default_factory=StateConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    events: EventConfig = field(default_factory=EventConfig)
    informer: InformerConfig = field(default_factory=InformerConfig)
    #: Binds waiting on the API server before filter holds the next pod (``BindBacklog``; 0: never).
    bind_backlog: int = 32


class ExtenderApp:
    def __init__(self, extender: Extender, server: ExtenderServer, metrics_server: ExtenderServer | None,
                 watchers: list[Informer], events: EventRecorder | None) -> None:
        self.extender = extender
        self.server = server
        self.metrics_server = metrics_server
        self.informers = watchers
        self.events = events
        self.prices: PriceCatalogs | None = None

    @classmethod
    def build(cls, host: str, port: int, api: KubeAPI | None, config: ExtenderConfig = ExtenderConfig(), *,
              metrics_address: tuple[str, int] | None = None, registry: CollectorRegistry | None = None,
              clock: Clock | None = None, catalog: PriceCatalog | None = None,
              mix: WorkloadMix | None = None) -> ExtenderApp:
        clock = clock or SystemClock()
        catalog = CatalogOverlay(catalog or PriceCatalog.default())  # + PriceCatalog objects, when watched
        standalone = api is None
        state = ClusterState(config.state, clock, resources=("nodes",) if standalone else RESOURCES)
        metrics = ExtenderMetrics(registry)
        scorer = Scorer(config.scoring, mix)
        metrics.watch_state(state, lambda: scorer.fragmentation(state))
        events = None
        if api is not None and config.events.rate_per_s > 0:
            events = EventRecorder(api, clock, metrics, config.events)
        placements = PlacementPolicies(patcher=api, api=api, informer=config.informer) if api is not None else None
        prices = PriceCatalogs(state, catalog, patcher=api) if api is not None else None
        extender = Extender(state, scorer, metrics, catalog=catalog, binder=api, events=events,
                            standalone=standalone, placements=placements, backlog=BindBacklog(config.bind_backlog))
        server = ExtenderServer(extender, metrics, host, port, config.server)
        metrics_server = None
        if metrics_address is not None:
            metrics_config = ServerConfig(prefix=config.server.prefix, verbs=False)
            metrics_server = ExtenderServer(extender, metrics, *metrics_address, metrics_config)
        watchers = informers(api, state, catalog, metrics, config.informer) if api is not None else []
        if placements is not None:  # PlacementPolicy objects, hot (without the CRD: retried, flags apply)
            watchers += [Informer(api, PLACEMENT_RESOURCE, placements, config.informer),
                         Informer(api, "namespaces", placements.namespaces, config.informer)]
        if prices is not None:
            watchers.append(Informer(api, PRICES_RESOURCE, prices, config.informer))
        app = cls(extender, server, metrics_server, watchers, events)
        app.prices = prices
        return app

    def start(self) -> None:
        started = time.perf_counter()
        warm_up()
        gc.collect()
        gc.freeze()  # modules and compiled kernels live as long as the process (see ``informers``)
        log.info("kernels warm in %.2fs", time.perf_counter() - started)
        if self.events is not None:
            self.events.start()
        if self.extender.placements is not None:
            self.extender.placements.start()
        if self.prices is not None:
            self.prices.start()
        for informer in self.informers:
            informer.start()
        self.server.start()
        if self.metrics_server is not None:
            self.metrics_server.start()

    def stop(self) -> None:
        for informer in self.informers:
            informer.stop()
        if self.extender.placements is not None:
            self.extender.placements.stop()
        if self.prices is not None:
            self.prices.stop()
        self.server.stop()
        if self.metrics_server is not None:
            self.metrics_server.stop()
        if self.events is not None:
            self.events.stop()

    def wait_synced(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.extender.ready():
                return True
            time.sleep(0.05)
        return self.extender.ready()


def warm_up() -> None:
    """Score a tiny cluster with every policy and pod kind so numba compiles (or loads) its kernels."""
    state = ClusterState(clock=SystemClock(), resources=())
    state.replace_nodes([NodeInfo(Node(f"warm-{i}", 64_000, 262_144, 8, "warm", 10.0, i == 1), "", "", "", "", False, "")
                         for i in range(2)])
    scorer = Scorer()
    for request in (PodRequest(1000, 1024, 1, 500), PodRequest(1000, 1024, 2, 1000)):
        pod = PodInfo("warm", "warm", "warm", "", "Pending", False, request, None, False, None, ANY_MODEL)
        for policy in SCORED_POLICIES:
            scorer.rank(state, pod, policy, ["warm-0", "warm-1", "unknown"])
    scorer.fragmentation(state)
