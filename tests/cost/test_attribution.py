"""Prometheus series from the ledger: gpufleet_cost_* sums, teams (unassigned never dropped), OpenCost names."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from gpufleet.autoscaler.cost.attribution import register
from gpufleet.autoscaler.cost.budgets import Budget, BudgetConfig
from gpufleet.autoscaler.cost.ledger import UNASSIGNED, Holding, Ledger, NodeRef, PodRef
from gpufleet.core.pricing import PriceCatalog

PRICES = """cloud,instance_type,gpu_model,gpu_count,ondemand_usd_per_hour,spot_usd_per_hour
aws,big.4,a100,4,40.0,16.0
"""
T0 = 1_780_000_000.0


def scraped(with_teams: bool, budgets: BudgetConfig | None = None):
    ledger = Ledger(PriceCatalog.from_csv_text(PRICES))
    labels = {"node.kubernetes.io/instance-type": "big.4", "karpenter.sh/capacity-type": "spot"}
    node = NodeRef("gpu-1", 4, labels=labels, region="us-east-1", provider_id="aws:///i-1")
    team = (("team", "vision"),) if with_teams else ()
    holdings = [Holding(PodRef("a", "ml", "Job/a", team, "main"), 0, 0.25, 0.5),
                Holding(PodRef("b", "ml", "Job/b", (), "main"), 0, 0.25, 0.0),
                Holding(PodRef("c", "web", "Deployment/c", team, "srv"), 1, 1.0, 0.9)]
    ledger.add_sample(node, T0, 3600.0, holdings)
    registry = CollectorRegistry()
    register(registry, ledger.snapshot, lambda: T0 + 3600.0, budgets)
    return registry, ledger.snapshot()


def samples(registry, name):
    return [s for m in registry.collect() for s in m.samples if s.name == name]


@pytest.mark.parametrize("with_teams", [True, False])
def test_pod_and_team_series_add_up_to_the_allocated_cost(with_teams):
    registry, _ = scraped(with_teams)
    pods = samples(registry, "gpufleet_cost_pod_gpu_usd_total")
    teams = samples(registry, "gpufleet_cost_team_gpu_usd_total")
    kinds = samples(registry, "gpufleet_cost_gpu_usd_total")
    allocated = 16.0 * 1.5 / 4  # spot: 4 $/GPU-hour, 1.5 GPUs held
    assert sum(s.value for s in pods) == pytest.approx(allocated)
    assert sum(s.value for s in teams) == pytest.approx(allocated)
    assert sum(s.value for s in kinds) == pytest.approx(16.0)
    expected_teams = {"vision", UNASSIGNED} if with_teams else {UNASSIGNED}
    assert {s.labels["team"] for s in teams} == expected_teams
    assert {s.labels["pod"] for s in pods} == {"a", "b", "c"}
    assert set(pods[0].labels) == {"namespace", "pod", "owner", "team", "kind"}


def test_opencost_series_keep_opencosts_names_and_labels():
    registry, _ = scraped(True)
    (price,) = samples(registry, "node_gpu_hourly_cost")
    assert price.labels == {"instance": "gpu-1", "node": "gpu-1", "instance_type": "big.4", "region": "us-east-1",
                            "provider_id": "aws:///i-1"}
    assert price.value == pytest.approx(4.0)
    assert samples(registry, "node_gpu_count")[0].value == 4
    assert samples(registry, "kubecost_node_is_spot")[0].value == 1
    alloc = {s.labels["pod"]: s for s in samples(registry, "container_gpu_allocation")}
    assert alloc["a"].value == 0.25 and alloc["c"].value == 1.0
    assert set(alloc["a"].labels) == {"namespace", "pod", "container", "instance", "node"}


def test_budget_alerts_are_exported_per_threshold():
    registry, _ = scraped(True, BudgetConfig((Budget("vision", 12.0),)))
    alerts = {(s.labels["basis"], s.labels["threshold"]): s.value
              for s in samples(registry, "gpufleet_cost_budget_alert") if s.labels["team"] == "vision"}
    # vision spent 1 + 4 = 5 $ of 12: below 50%; at 5 $/h the month-end forecast passes every level
    assert alerts[("spent", "0.5")] == 0 and alerts[("forecast", "1")] == 1
    assert samples(registry, "gpufleet_cost_budget_usd")[0].value == 12.0


def test_each_teams_month_starts_in_its_budgets_time_zone():
    ledger = Ledger(PriceCatalog.from_csv_text(PRICES))
    node = NodeRef("gpu-1", 4, labels={"node.kubernetes.io/instance-type": "big.4"})
    holdings = [Holding(PodRef("a", "ml", "Job/a", (("team", "vision"),), "main"), 0, 1.0, 0.5),
                Holding(PodRef("b", "nlp", "Job/b", (("team", "nlp"),), "main"), 1, 1.0, 0.5)]
    late_november = 1_796_079_600.0  # 2026-11-30T23:00Z: December in UTC at 03:00Z, November in Los Angeles
    ledger.add_sample(node, late_november, 3600.0, holdings)
    registry = CollectorRegistry()
    budgets = BudgetConfig((Budget("vision", 100.0, "America/Los_Angeles"), Budget("nlp", 100.0)))
    register(registry, ledger.snapshot, lambda: late_november + 4 * 3600.0, budgets)
    spent = {s.labels["team"]: s.value for s in samples(registry, "gpufleet_cost_budget_spent_usd")}
    assert spent["vision"] == pytest.approx(10.0) and spent["nlp"] == 0.0  # 40 $/h on demand, 1 of 4 GPUs


def test_recommendations_are_exported_with_now_and_after_prices():
    from gpufleet.autoscaler.cost.catalog import parse_catalog
    from gpufleet.autoscaler.cost.sizing import Usage, Workload, recommend_workload

    spec = parse_catalog("cloud,instance_type,gpu_model,gpu_count,gpu_memory_per_gpu_mib,vcpu,memory_gib,"
                         "ondemand_usd_per_hour\naws,t4.1,t4,1,16384,8,32,0.5\n")
    rec = recommend_workload(Workload("ml/a", 1000, 1024, 1, 1000, usage=Usage(4.0, 0.1)), spec,
                             usd_per_hour_now=10.0)
    ledger = Ledger(PriceCatalog.from_csv_text(PRICES))
    registry = CollectorRegistry()
    register(registry, ledger.snapshot, lambda: T0, recommendations=lambda: [rec])
    (after,) = samples(registry, "gpufleet_cost_recommendation_after_usd_per_hour")
    assert after.labels == {"workload": "ml/a", "gpu_model": "t4", "gpu_milli": "290", "instance_type": "t4.1",
                            "capacity_type": "on-demand"}
    assert after.value == pytest.approx(0.29 * 0.5)
    assert samples(registry, "gpufleet_cost_recommendation_now_usd_per_hour")[0].value == 10.0
