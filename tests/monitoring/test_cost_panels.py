"""The Cost dashboard and the budget/anomaly alerts on a real Prometheus scraping the real cost exporter
(autoscaler/cost/attribution.py, served by the agent's HTTP server) over a ledger fed a day of samples
and more while Prometheus scrapes.

The controller exports the same series live (autoscaler/controller/costs.py; the Cost dashboard on the
local cluster: test_panels_on_prometheus.py); this test covers a day of history and the budget and
anomaly alerts, which a short cluster run cannot.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from types import ModuleType

import pytest
from prometheus_client import CollectorRegistry

from gpufleet.autoscaler.agent.web import WebServer
from gpufleet.autoscaler.cost.attribution import register
from gpufleet.autoscaler.cost.budgets import Budget, BudgetConfig
from gpufleet.autoscaler.cost.ledger import Holding, Ledger, NodeRef, PodRef
from gpufleet.autoscaler.cost.sizing import Size, WorkloadRecommendation
from gpufleet.core.pricing import PriceCatalog
from gpufleet.scheduler.localcluster import prometheus
from gpufleet.scheduler.localcluster.readiness import wait_until

NODES = [NodeRef(f"gpu-node-{i}", 8, "a100", labels={"node.kubernetes.io/instance-type": "p4de.24xlarge",
                                                     "karpenter.sh/capacity-type": "spot" if i == 2 else "on-demand"},
                 region="us-east-1", provider_id=f"aws:///us-east-1a/i-{i}") for i in range(3)]
PODS = [(PodRef("trainer-0", "ml-train", "Job/trainer", (("team", "vision"),), "main"), 0, (0, 1), 0.9),
        (PodRef("notebook-0", "research", "StatefulSet/nb", (("team", "research"),), "jupyter"), 0, (2,), 0.0),
        (PodRef("infer-0", "ml-infer", "Deployment/infer", (("team", "search"),), "srv"), 1, (0,), 0.3),
        (PodRef("batch-0", "batch", "Job/batch", (), "main"), 1, (1, 2, 3), 0.0)]


def add_samples(ledger: Ledger, t: float, burst: bool, seconds: float = 600) -> None:
    """``seconds`` of every node's GPUs from ``t``; ``burst``: the third node fills up (more spend)."""
    for n, node in enumerate(NODES):
        held = [Holding(pod, gpu, 1.0, activity, 40 * 2**30) for pod, on, gpus, activity in PODS if on == n
                for gpu in gpus]
        if burst and n == 2:
            held += [Holding(PodRef(f"burst-{g}", "ml-train", "Job/burst", (("team", "vision"),)), g, 1.0, 0.8)
                     for g in range(8)]
        ledger.add_sample(node, t, seconds, held)


def _ledger(now: float) -> Ledger:
    """23 hours of 10-minute samples; the research notebook idles, the last hours spend more."""
    ledger = Ledger(PriceCatalog.default())
    for step in range(23 * 6):
        t = now - 24 * 3600 + step * 600
        add_samples(ledger, t, burst=t > now - 3 * 3600)
    return ledger


@pytest.fixture(scope="module")
def cost_exporter() -> Iterator[int]:
    """The exporter over the ledger; while it runs, each second is charged as it passes (so the
    counters grow between scrapes, as a running controller's do)."""
    now = time.time()
    ledger = _ledger(now)
    stop = threading.Event()

    def feed() -> None:
        while not stop.wait(1.0):
            add_samples(ledger, time.time() - 1, burst=True, seconds=1)
    registry = CollectorRegistry()
    recs = [WorkloadRecommendation("ml-infer/Deployment/infer", Size("a100", 1, 250), "g5.xlarge", False, 32.8,
                                   1.0, 10.0, 0.3, 86400, 144, "peak memory 10 GiB, activity 0.3")]
    register(registry, ledger.snapshot, time.time,
             BudgetConfig((Budget("vision", 20_000.0), Budget("research", 500.0))), lambda: recs)
    server = WebServer("127.0.0.1", 0, registry, lambda: True)
    server.start()
    feeder = threading.Thread(target=feed, name="ledger-feed", daemon=True)
    feeder.start()
    yield server.port
    stop.set()
    feeder.join(timeout=5)
    server.stop()


@pytest.fixture(scope="module")
def cost_prometheus(cost_exporter: int, prometheus_binary, tmp_path_factory: pytest.TempPathFactory):
    from gpufleet.scheduler.localcluster.components import free_port
    from gpufleet.scheduler.localcluster.processes import ProcessGroup

    folder = tmp_path_factory.mktemp("cost-prometheus")
    group = ProcessGroup(folder)
    port = free_port()
    target = prometheus.ScrapeTarget("gpufleet-controller", f"127.0.0.1:{cost_exporter}")
    config = prometheus.write_config(folder / "prometheus.yml", prometheus.scrape_config([target]))
    group.start(prometheus.prometheus_process(prometheus_binary, config, folder / "data", port))
    client = prometheus.PrometheusClient(f"http://127.0.0.1:{port}")
    try:
        wait_until("Prometheus ready", client.ready, 60, check_alive=lambda: group.check(prometheus.NAME))
        client.wait_until_scraped(["gpufleet-controller"], timeout_s=30, scrapes=5)
        yield client
    finally:
        group.stop_all()


def test_every_cost_panel_query_returns_series_with_its_legend_labels(cost_prometheus, panels: ModuleType) -> None:
    boards = {k: v for k, v in panels.load().items() if k == "gpufleet-cost"}
    assert boards
    end = time.time()
    problems = []
    for query in panels.queries(boards):
        expr = query.resolved(panels.all_values(boards[query.dashboard]), panels.rate_interval(2.0, 2.0))
        result = (cost_prometheus.query(expr, at=end) if query.instant
                  else cost_prometheus.query_range(expr, end - 10, end, 2.0))
        if not result:
            problems.append(f"{query.panel}: no data: {expr}")
        problems += [f"{query.panel}: {s['metric']} lacks {lb}" for s in result[:1] for lb in query.legend_labels
                     if not s["metric"].get(lb)]
    assert not problems, "\n".join(problems)


def test_the_cost_variables_list_the_ledgers_teams_and_namespaces(cost_prometheus, panels: ModuleType) -> None:
    board = panels.load()["gpufleet-cost"]
    values = {}
    for name, query in panels.variable_queries(board).items():
        expr, label = panels.variable_expr(query)
        values[name] = {s["metric"][label] for s in cost_prometheus.query(expr.replace("$cluster", ".*"))}
    assert values["team"] == {"vision", "research", "search", "unassigned"}
    assert values["namespace"] == {"ml-train", "research", "ml-infer", "batch"}


def test_cost_rates_are_positive_and_idle_waste_lands_on_the_idle_teams(cost_prometheus) -> None:
    by_kind = {s["metric"]["kind"]: float(s["value"][1]) for s in cost_prometheus.query(
        "sum by (kind) (rate(gpufleet_cost_gpu_usd_total[8s]))")}
    assert set(by_kind) == {"unallocated", "allocated-idle", "allocated-active"} and min(by_kind.values()) > 0
    idle = {s["metric"]["team"] for s in cost_prometheus.query(
        'sum by (team) (rate(gpufleet_cost_team_gpu_usd_total{kind="allocated-idle"}[8s])) > 0')}
    assert idle == {"research", "unassigned"}  # the idle notebook and the label-less batch job


def test_the_budget_panel_shows_the_research_budget_overrun(cost_prometheus) -> None:
    reached = cost_prometheus.query('gpufleet_cost_budget_alert{team="research", basis="forecast"} == 1')
    assert {s["metric"]["threshold"] for s in reached} == {"0.5", "0.8", "1"}
