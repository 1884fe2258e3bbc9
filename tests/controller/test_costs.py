"""The live waste ledger's glue (autoscaler/controller/costs.py): shares, MIG, teams, silent agents and gaps,
on a real SampleStore, a fake clock and a fresh registry."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from gpufleet.autoscaler.controller.config import (
    ControllerConfig,
    ControllerConfigError,
    CostConfig,
    SamplesConfig,
)
from gpufleet.autoscaler.controller.costs import CostAccounting, Held, holdings, pod_ref, share_of
from gpufleet.autoscaler.controller.store import Reading, SampleStore
from gpufleet.autoscaler.cost.ledger import ALLOCATED_ACTIVE, ALLOCATED_IDLE, UNALLOCATED
from gpufleet.core import names
from gpufleet.core.clock import FakeClock

NODE = {"metadata": {"name": "n1", "labels": {names.INSTANCE_TYPE_LABEL: "p4de.24xlarge",
                                              names.CAPACITY_TYPE_LABEL: "on-demand"}},
        "status": {"capacity": {names.GPU_RESOURCE: "8"}}}


def pod(name: str, namespace: str = "ml", labels: dict[str, str] | None = None,
        limits: dict[str, str] | None = None, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace, "labels": labels or {},
                         "annotations": annotations or {},
                         "ownerReferences": [{"kind": "Job", "name": "j", "controller": True}]},
            "spec": {"containers": [{"name": "main", "resources": {"limits": limits or {names.GPU_RESOURCE: "1"}}}]}}


@pytest.mark.parametrize(("limits", "annotations", "want"), [
    ({names.GPU_RESOURCE: "1"}, {}, (1.0, False)),
    ({names.GPU_MILLI: "250"}, {}, (0.25, False)),
    ({names.GPU_RESOURCE: "1"}, {names.GPU_MILLI: "500"}, (0.5, False)),
    ({"nvidia.com/mig-3g.40gb": "1"}, {}, (3 / 7, True)),
    ({names.GPU_MILLI: "1000"}, {}, (1.0, False)),
])
def test_a_pod_holds_its_share_of_a_device(limits: dict[str, str], annotations: dict[str, str],
                                            want: tuple[float, bool]) -> None:
    assert share_of(pod("p", limits=limits, annotations=annotations)) == pytest.approx(want)


def test_the_pods_team_labels_win_over_its_namespaces_and_unlabelled_pods_carry_none() -> None:
    ns = {"metadata": {"labels": {"team": "vision"}}}
    keys = ("team", "cost-center")
    assert pod_ref("ml", "a", pod("a", labels={"cost-center": "cc"}), ns, keys).labels == (("cost-center", "cc"),)
    assert pod_ref("ml", "b", pod("b"), ns, keys).labels == (("team", "vision"),)
    assert pod_ref("ml", "c", pod("c"), None, keys).labels == ()
    assert pod_ref("ml", "c", pod("c"), None, keys).owner == "Job/j"


def test_shares_sit_on_one_device_and_mig_slices_are_packed_after_the_whole_gpus() -> None:
    pods = {"ml/s0": pod("s0", limits={names.GPU_MILLI: "500"}), "ml/s1": pod("s1", limits={names.GPU_MILLI: "500"}),
            "ml/w": pod("w"), "ml/m0": pod("m0", limits={"nvidia.com/mig-3g.40gb": "1"}),
            "ml/m1": pod("m1", limits={"nvidia.com/mig-3g.40gb": "1"}),
            "ml/m2": pod("m2", limits={"nvidia.com/mig-3g.40gb": "1"})}
    held = [Held("u-a", (("ml", "s0"), ("ml", "s1"))), Held("u-b", (("ml", "w"),)),
            Held("m-0", (("ml", "m0"),)), Held("m-1", (("ml", "m1"),)), Held("m-2", (("ml", "m2"),))]
    node, out = holdings("n1", NODE, held, pods.get, lambda ns: None, lambda p, u: (0.5, 1e9), ("team",))
    gpu = {h.pod.name: h.gpu for h in out}
    assert gpu["s0"] == gpu["s1"] != gpu["w"]
    assert gpu["m0"] == gpu["m1"] != gpu["m2"]  # 3/7 + 3/7 fit one GPU, a third does not
    assert len({gpu["s0"], gpu["w"], gpu["m0"], gpu["m2"]}) == 4 and node.gpus == 8
    assert sum(h.fraction for h in out) == pytest.approx(2 + 9 / 7)


def _accounting(clock: FakeClock, pods: dict[str, dict[str, Any]]) -> tuple[SampleStore, CostAccounting]:
    store = SampleStore(SamplesConfig(bucket_s=1.0, history_s=600))
    costs = CostAccounting(store, pods.get, {"n1": NODE}.get, lambda ns: None, clock,
                           CostConfig(team_labels=("team",)), 5.0, CollectorRegistry())
    return store, costs


def _batch(store: SampleStore, clock: FakeClock, util: float) -> None:
    store.ingest("n1", clock.now(), clock.now(), [Reading("u-0", util, 2e9, None, 1, (("ml", "a"),)),
                                                  Reading("u-1", 0.0, 0.0, None, 0, ())])


def test_the_kinds_add_up_to_the_nodes_cost_and_a_silent_agent_adds_nothing() -> None:
    clock = FakeClock()
    store, costs = _accounting(clock, {"ml/a": pod("a", labels={"team": "nlp"})})
    for second in range(10):
        _batch(store, clock, 80.0 if second < 5 else 0.0)
        costs.update()
        clock.advance(1.0)
    snap = costs.snapshot()
    per_gpu = snap.node_prices["n1"][1].usd_per_gpu_hour
    assert snap.total_usd == pytest.approx(per_gpu * 8 * 9 / 3600)
    assert snap.by_kind[UNALLOCATED] == pytest.approx(per_gpu * 7 * 9 / 3600)
    assert snap.by_kind[ALLOCATED_ACTIVE] > 0 and snap.by_kind[ALLOCATED_IDLE] > 0
    assert snap.pods["ml/a"].team == "nlp"
    clock.advance(30.0)  # the agent is silent: nothing is charged
    assert costs.update() == 0
    assert costs.snapshot().total_usd == pytest.approx(snap.total_usd)
    _batch(store, clock, 50.0)  # it comes back: the gap is not charged either
    costs.update()
    assert costs.snapshot().total_usd == pytest.approx(snap.total_usd)
    assert costs.observed() == {"n1": pytest.approx(9.0)}


def test_the_cost_and_budget_settings_are_read_from_the_controller_config_with_paths() -> None:
    config = ControllerConfig.from_dict({"budgets": [{"team": "nlp", "monthlyUSD": 100}],
                                         "cost": {"teamLabels": ["squad"], "budgetThresholds": [0.9]}})
    assert config.cost.team_labels == ("squad",)
    assert config.cost.budgets.for_team("nlp").monthly_usd == 100.0
    assert config.cost.budgets.thresholds == (0.9,)
    with pytest.raises(ControllerConfigError) as err:
        ControllerConfig.from_dict({"budgets": [{"team": "", "monthlyUSD": -1}],
                                    "cost": {"teamLabels": [], "idleBelow": 2, "extra": 1}})
    text = str(err.value)
    for path in ("budgets[0].team", "budgets[0].monthlyUSD", "cost.teamLabels", "cost.idleBelow", "cost.extra"):
        assert path in text


def test_budgets_given_as_a_callable_are_read_at_every_scrape() -> None:
    from gpufleet.autoscaler.cost.budgets import Budget, BudgetConfig

    current = [BudgetConfig((Budget("nlp", 100.0),))]
    registry = CollectorRegistry()
    CostAccounting(SampleStore(SamplesConfig()), {}.get, {}.get, lambda ns: None, FakeClock(), CostConfig(), 5.0,
                   registry, budgets=lambda: current[0])
    assert registry.get_sample_value("gpufleet_cost_budget_usd", {"team": "nlp"}) == 100.0
    current[0] = BudgetConfig((Budget("vision", 7.0),))
    assert registry.get_sample_value("gpufleet_cost_budget_usd", {"team": "nlp"}) is None
    assert registry.get_sample_value("gpufleet_cost_budget_usd", {"team": "vision"}) == 7.0
