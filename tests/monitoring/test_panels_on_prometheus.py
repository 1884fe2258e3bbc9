"""The proof: on a local cluster with the extender, simulated agents and a short workload, scraped by
a real Prometheus, every panel's query (variables at "All", $__rate_interval substituted) returns series
carrying the labels its legend names, every variable has values, and the main queries of DCGM's
dashboard 12239 return data from the agents."""

from __future__ import annotations

import time
from types import ModuleType

import pytest

from gpufleet.scheduler.localcluster.cluster import ClusterInfo
from gpufleet.scheduler.localcluster.prometheus import SCRAPE_INTERVAL_S, PrometheusClient

pytestmark = pytest.mark.cluster
#: Dashboards no component of the local cluster feeds (none: the controller exports the cost series).
NOT_ON_THE_CLUSTER: set[str] = set()

#: Range queries cover the last RANGE_S seconds at STEP_S, as a panel of that width would.
RANGE_S, STEP_S = 30.0, 5.0
#: DCGM's dashboard 12239 (grafana/dcgm-exporter-dashboard.json): panel -> query, with its
#: $instance/$gpu variables at "All".
DCGM_12239 = {
    "GPU Temperature": 'DCGM_FI_DEV_GPU_TEMP{instance=~".*", gpu=~".*"}',
    "GPU Avg. Temp": 'avg(DCGM_FI_DEV_GPU_TEMP{instance=~".*", gpu=~".*"})',
    "GPU Power Usage": 'DCGM_FI_DEV_POWER_USAGE{instance=~".*", gpu=~".*"}',
    "GPU Power Total": 'sum(DCGM_FI_DEV_POWER_USAGE{instance=~".*", gpu=~".*"})',
    "GPU Utilization": 'DCGM_FI_DEV_GPU_UTIL{instance=~".*", gpu=~".*"}',
    "GPU Framebuffer Mem Used": 'DCGM_FI_DEV_FB_USED{instance=~".*", gpu=~".*"}',
    "GPU SM Clocks": 'DCGM_FI_DEV_SM_CLOCK{instance=~".*", gpu=~".*"} * 1000000',
}
#: Its panel the agent cannot feed: profiling counters (DCGM_FI_PROF_*) need DCGM's profiling, not NVML.
DCGM_12239_NOT_EXPORTED = {
    "Tensor Core Utilization": 'DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{instance=~".*", gpu=~".*"}',
}


@pytest.fixture(scope="module")
def client(monitored_cluster: ClusterInfo) -> PrometheusClient:
    return PrometheusClient(monitored_cluster.prometheus_url)


def test_every_panel_query_returns_series_with_its_legend_labels(client: PrometheusClient,
                                                                 panels: ModuleType) -> None:
    boards = {k: v for k, v in panels.load().items() if k not in NOT_ON_THE_CLUSTER}
    end = time.time()
    empty, unlabelled, checked = [], [], 0
    for query in panels.queries(boards):
        variables = panels.all_values(boards[query.dashboard])
        if query.instant:
            expr = query.resolved(variables, panels.rate_interval(SCRAPE_INTERVAL_S, STEP_S))
            result = client.query(expr, at=end)
        else:
            expr = query.resolved(variables, panels.rate_interval(SCRAPE_INTERVAL_S, STEP_S))
            result = client.query_range(expr, end - RANGE_S, end, STEP_S)
        checked += 1
        where = f"{query.dashboard} / {query.panel}: {expr}"
        if not result:
            empty.append(where)
            continue
        for series in result:
            missing = [label for label in query.legend_labels if not series["metric"].get(label)]
            if missing:
                unlabelled.append(f"{where} -> {series['metric']} lacks {missing}")
                break
    assert checked >= 30
    assert not empty, "queries without data:\n" + "\n".join(empty)
    assert not unlabelled, "series without their legend's labels:\n" + "\n".join(unlabelled)


def test_every_variable_has_values(client: PrometheusClient, panels: ModuleType) -> None:
    boards = {k: v for k, v in panels.load().items() if k not in NOT_ON_THE_CLUSTER}
    for stem, board in boards.items():
        all_values = panels.all_values(board)
        for name, query in panels.variable_queries(board).items():
            expr, label = panels.variable_expr(query)
            values = {s["metric"].get(label) for s in client.query(expr.replace("$cluster", all_values["cluster"]))}
            assert values - {None, ""}, f"{stem}: variable {name} has no values ({expr})"


def test_the_node_variable_lists_every_agents_node_and_the_namespace_variable_the_workload(
        client: PrometheusClient, panels: ModuleType, monitored_cluster: ClusterInfo) -> None:
    board = panels.load()["gpufleet-fleet"]
    queries = panels.variable_queries(board)
    nodes = {s["metric"]["hostname"] for s in client.query(panels.variable_expr(queries["node"])[0]
                                                           .replace("$cluster", ".*"))}
    namespaces = {s["metric"]["namespace"] for s in client.query(panels.variable_expr(queries["namespace"])[0]
                                                                 .replace("$cluster", ".*"))}
    assert nodes == set(monitored_cluster.agent_metrics_ports) and monitored_cluster.controller_metrics_port
    assert namespaces == {"ml-train", "ml-infer"}


def test_the_per_pod_panel_names_the_workloads_pods(client: PrometheusClient, panels: ModuleType) -> None:
    query = next(q for q in panels.queries(panels.load()) if q.panel == "GPU utilisation per pod")
    series = client.query(query.resolved({"cluster": ".*", "node": ".*", "namespace": "ml-train"}, "8s"))
    pods = {s["metric"]["pod"] for s in series}
    assert {"trainer-0", "trainer-1", "trainer-2", "trainer-3", "packed-0"} <= pods
    assert all(s["metric"]["namespace"] == "ml-train" for s in series)


def test_the_main_queries_of_dcgm_dashboard_12239_return_agent_data(client: PrometheusClient) -> None:
    empty = [title for title, expr in DCGM_12239.items() if not client.query(expr)]
    assert not empty, f"DCGM 12239 panels without data: {empty}"
    per_gpu = client.query(DCGM_12239["GPU Utilization"])
    assert {s["metric"]["gpu"] for s in per_gpu} >= {"0", "1", "2", "3"}
    assert all(s["metric"].get("hostname") and s["metric"].get("instance") for s in per_gpu)


def test_dcgm_12239_panels_the_agent_cannot_feed_are_the_known_ones(client: PrometheusClient) -> None:
    """DCGM_FI_PROF_* is not read by the agent (NVML has no profiling counters): that panel stays empty."""
    assert [title for title, expr in DCGM_12239_NOT_EXPORTED.items() if client.query(expr)] == []


def test_the_dashboards_render_to_png_without_grafana(client: PrometheusClient, tmp_path) -> None:
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "deploy" / "monitoring" / "render.py"
    spec = importlib.util.spec_from_file_location("gpufleet_monitoring_render", path)
    render = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = render
    spec.loader.exec_module(render)
    written = render.render(client.url, tmp_path, minutes=1, dpi=40, only=("gpufleet-placement",))
    assert [p.name for p in written] == ["dashboard-placement.png"]  # the others: same code, more time
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5_000 for p in written)


def test_choosing_a_node_keeps_only_that_hosts_series(client: PrometheusClient, panels: ModuleType,
                                                      monitored_cluster: ClusterInfo) -> None:
    node = sorted(monitored_cluster.agent_metrics_ports)[-1]
    boards = {k: v for k, v in panels.load().items() if k not in NOT_ON_THE_CLUSTER}
    seen = 0
    for query in panels.queries(boards):
        if "$node" not in query.expr or "hostname" not in query.legend_labels:
            continue
        variables = panels.all_values(boards[query.dashboard]) | {"node": node}
        series = client.query(query.resolved(variables, panels.rate_interval(SCRAPE_INTERVAL_S, STEP_S)))
        hosts = {s["metric"].get("hostname") for s in series}
        assert hosts <= {node}, f"{query.dashboard} / {query.panel}: {hosts}"
        seen += bool(series)
    assert seen >= 10
