"""ReclaimPolicy and GpuBudget objects in the controller: mapping onto the typed config, who selects a pod,
Stalled keeps the last good generation, only the leader writes status, per-policy budgets."""

from __future__ import annotations

from typing import Any

import pytest

from gpufleet.autoscaler.controller.budget import Entry
from gpufleet.autoscaler.controller.gate import Mode
from gpufleet.autoscaler.controller.policies import (
    BUDGET_RESOURCE,
    RECLAIM_RESOURCE,
    GpuBudgets,
    ReclaimPolicies,
    StatusWriter,
    evaluate_budgets,
    evaluate_reclaim,
)
from gpufleet.autoscaler.cost.budgets import Budget, BudgetConfig
from gpufleet.autoscaler.reclaim import ReclaimConfig
from gpufleet.core import names
from gpufleet.core.config import status as kstatus
from gpufleet.core.kube.errors import KubeAPIError


class Patcher:
    """Records status patches; objects not in ``existing`` answer 404; ``fail_next`` raises once."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.existing: set[str] = set()
        self.status: dict[str, dict] = {}
        self.errors: list[Exception] = []

    def fail_next(self, error: Exception) -> None:
        self.errors.append(error)

    def patch(self, path: str, body: Any, patch_type: str = "merge") -> dict[str, Any]:
        self.calls.append((path, body))
        if self.errors:
            raise self.errors.pop(0)
        name = path.removesuffix("/status").rsplit("/", 1)[-1]
        if name not in self.existing:
            raise KubeAPIError(f"PATCH {path}: 404", 404)
        self.status[name] = body["status"]
        return body

BASE = ReclaimConfig()
TEAM_A = {"matchLabels": {"team": "a"}}


def policy(name: str, spec: dict[str, Any], generation: int = 1, created: str = "2026-01-01T00:00:00Z") -> dict:
    return {"apiVersion": "gpufleet.io/v1alpha1", "kind": "ReclaimPolicy",
            "metadata": {"name": name, "generation": generation, "creationTimestamp": created},
            "spec": {"namespaceSelector": TEAM_A, **spec}}


def budget(name: str, spec: dict[str, Any], generation: int = 1, created: str = "2026-01-01T00:00:00Z") -> dict:
    return {"apiVersion": "gpufleet.io/v1alpha1", "kind": "GpuBudget",
            "metadata": {"name": name, "generation": generation, "creationTimestamp": created}, "spec": spec}


def ns(name: str, labels: dict[str, str] | None = None, mode: str | None = None) -> dict:
    return {"metadata": {"name": name, "labels": labels or {},
                         "annotations": {names.RECLAIM: mode} if mode else {}}}


def pod(namespace: str, labels: dict[str, str] | None = None, mode: str | None = None) -> dict:
    return {"metadata": {"name": "p", "namespace": namespace, "labels": labels or {},
                         "annotations": {names.RECLAIM: mode} if mode else {}}}


def patcher(leader: bool = True) -> tuple[Patcher, StatusWriter, list[bool]]:
    api = Patcher()
    state = [leader]
    return api, StatusWriter(api, RECLAIM_RESOURCE, lambda: state[0]), state


def written(api: Patcher, name: str) -> list[dict]:
    return [body["status"] for path, body in api.calls if path == f"{RECLAIM_RESOURCE}/{name}/status"
            and api.status.get(name) is not None]


def store(api: Patcher, obj: dict) -> None:
    api.existing.add(obj["metadata"]["name"])


# ---- mapping --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("spec", "check"), [
    ({"detection": "window", "window": "45m"}, lambda c: c.policy == "window" and c.window.window_s == 2700),
    ({"detection": "forecast"}, lambda c: c.policy == "forecast" and c.window == BASE.window),
    ({"thresholdPercent": 2.5}, lambda c: c.detection.threshold_percent == 2.5),
    ({"notice": "1h30m", "grace": "90s"}, lambda c: c.notice_s == 5400 and c.grace_s == 90),
    ({}, lambda c: c.forecast == BASE.forecast and c.detection.max_gap_s == BASE.detection.max_gap_s),
])
def test_a_policy_is_laid_over_the_configured_reclaim_settings(spec: dict, check: Any) -> None:
    verdict = evaluate_reclaim(policy("p", spec), BASE)
    assert verdict.applied is not None, verdict.message
    assert check(verdict.applied.reclaim)


@pytest.mark.parametrize(("mode", "expected"), [("Off", Mode.OFF), ("DryRun", Mode.REPORT),
                                                ("Notify", Mode.NOTIFY), ("Reclaim", Mode.SCALE_TO_ZERO)])
def test_the_crd_modes_map_onto_the_controller_modes(mode: str, expected: Mode) -> None:
    assert evaluate_reclaim(policy("p", {"mode": mode}), BASE).applied.mode is expected


@pytest.mark.parametrize(("spec", "reason", "fragment"), [
    ({"budgets": [{"maxPods": 1, "schedule": "@daily", "duration": "1h", "timeZone": "Mars/Olympus"}]},
     "InvalidSpec", "spec.budgets[0].timeZone: unknown IANA time zone 'Mars/Olympus'"),
    ({"budgets": [{"maxPods": 1, "schedule": "99 * * * *", "duration": "1h"}]}, "InvalidSpec",
     "spec.budgets[0].schedule"),
    ({"mode": "Sometimes"}, "InvalidSpec", "spec.mode"),
    ({"namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                                                  "values": ["a"]}]}}, "SelectsKubeSystem", "kube-system"),
])
def test_a_policy_that_cannot_be_applied_says_why(spec: dict, reason: str, fragment: str) -> None:
    verdict = evaluate_reclaim(policy("p", spec), BASE)
    assert verdict.applied is None
    assert verdict.reason == reason and fragment in verdict.message


# ---- precedence -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("pod_mode", "ns_mode", "ns_labels", "expected", "source"), [
    ("evict", "report", {"team": "a"}, Mode.EVICT, "pod"),  # the pod's own annotation first
    (None, "report", {"team": "a"}, Mode.REPORT, "namespace"),  # then its namespace's
    (None, None, {"team": "a"}, Mode.NOTIFY, "ReclaimPolicy/p"),  # then a policy selecting the namespace
    (None, None, {"team": "b"}, Mode.OFF, "default"),  # else off
    ("off", None, {"team": "a"}, Mode.OFF, "pod"),  # a pod opts out of its policy
    ("bogus", None, {"team": "a"}, Mode.OFF, "pod"),  # a typo never opts in
])
def test_annotations_win_over_policies_and_nothing_means_off(pod_mode: str | None, ns_mode: str | None,
                                                              ns_labels: dict, expected: Mode, source: str) -> None:
    policies = ReclaimPolicies(BASE)
    policies.apply("ADDED", policy("p", {"mode": "Notify", "notice": "5m"}))
    selection = policies.select(pod("ml", mode=pod_mode), ns("ml", ns_labels, ns_mode))
    assert (selection.mode, selection.source) == (expected, source)


def test_a_pod_in_a_selected_namespace_takes_the_policys_settings_even_when_annotated() -> None:
    policies = ReclaimPolicies(BASE)
    policies.apply("ADDED", policy("p", {"mode": "Notify", "notice": "5m"}))
    assert policies.select(pod("ml", mode="evict"), ns("ml", {"team": "a"})).reclaim.notice_s == 300
    assert policies.select(pod("ml", mode="evict"), ns("ml", {"team": "b"})).reclaim == BASE


def test_kube_system_is_never_selected_whatever_the_selector_says() -> None:
    policies = ReclaimPolicies(BASE)
    policies.apply("ADDED", policy("p", {"mode": "Reclaim", "namespaceSelector": {
        "matchExpressions": [{"key": "team", "operator": "Exists"}]}}))
    assert policies.select(pod("kube-system"), ns("kube-system", {"team": "a"})).mode is Mode.OFF
    assert policies.select(pod("ml"), ns("ml", {"team": "a"})).mode is Mode.SCALE_TO_ZERO


def test_the_oldest_matching_policy_wins_and_pod_selectors_narrow_it() -> None:
    policies = ReclaimPolicies(BASE)
    policies.apply("ADDED", policy("young", {"mode": "DryRun"}, created="2026-02-01T00:00:00Z"))
    policies.apply("ADDED", policy("old", {"mode": "Notify", "podSelector": {"matchLabels": {"app": "nb"}}},
                                   created="2026-01-01T00:00:00Z"))
    assert policies.select(pod("ml", {"app": "nb"}), ns("ml", {"team": "a"})).source == "ReclaimPolicy/old"
    assert policies.select(pod("ml", {"app": "x"}), ns("ml", {"team": "a"})).source == "ReclaimPolicy/young"


# ---- status and the last good generation ----------------------------------------------------------

def test_a_stalled_generation_keeps_the_last_good_one_running_until_fixed() -> None:
    api, writer, _ = patcher()
    policies = ReclaimPolicies(BASE, writer, identity="c1")
    good = policy("p", {"mode": "Notify", "notice": "5m"})
    store(api, good)
    policies.apply("ADDED", good)
    writer.flush()
    assert kstatus.is_ready({**good, "status": written(api, "p")[-1]})

    bad = policy("p", {"mode": "DryRun", "budgets": [{"maxPods": 1, "schedule": "@daily", "duration": "1h",
                                                      "timeZone": "Mars/Olympus"}]}, generation=2)
    policies.apply("MODIFIED", bad)
    writer.flush()
    status = written(api, "p")[-1]
    stalled = {c["type"]: c for c in status["conditions"]}
    assert status["observedGeneration"] == 2
    assert stalled["Stalled"]["status"] == "True" and stalled["Ready"]["status"] == "False"
    assert "Mars/Olympus" in stalled["Stalled"]["message"] and "generation 1 keeps running" in stalled["Stalled"][
        "message"]
    assert policies.select(pod("ml"), ns("ml", {"team": "a"})).mode is Mode.NOTIFY  # generation 1 still

    policies.apply("MODIFIED", policy("p", {"mode": "DryRun"}, generation=3))
    writer.flush()
    assert kstatus.is_ready({**policy("p", {}, generation=3), "status": written(api, "p")[-1]})
    assert policies.select(pod("ml"), ns("ml", {"team": "a"})).mode is Mode.REPORT


def test_a_status_write_coming_back_as_an_event_is_not_written_again() -> None:
    api, writer, _ = patcher()
    policies = ReclaimPolicies(BASE, writer)
    obj = policy("p", {})
    store(api, obj)
    policies.apply("ADDED", obj)
    writer.flush()
    policies.apply("MODIFIED", {**obj, "status": written(api, "p")[-1]})
    policies.replace([obj])
    writer.flush()
    assert len(written(api, "p")) == 1


def test_only_the_leader_writes_status_and_a_new_leader_writes_it_all() -> None:
    api, writer, leading = patcher(leader=False)
    policies = ReclaimPolicies(BASE, writer)
    for name in ("p", "q"):
        store(api, policy(name, {}))
        policies.apply("ADDED", policy(name, {}))
    assert writer.flush() == 0 and not written(api, "p")
    leading[0] = True
    assert writer.flush() == 2
    leading[0] = False
    writer.flush()
    leading[0] = True
    assert writer.flush() == 2  # leadership lost and won again: written again


def test_a_failed_status_write_is_retried_and_a_deleted_object_is_dropped() -> None:
    api, writer, _ = patcher()
    policies = ReclaimPolicies(BASE, writer)
    store(api, policy("p", {}))
    policies.apply("ADDED", policy("p", {}))
    policies.apply("ADDED", policy("gone", {}))  # not in the API: 404
    api.fail_next(KubeAPIError("PATCH: 500", 500))
    assert writer.flush() == 0  # p failed (500), gone answered 404
    assert writer.flush() == 1 and api.status["p"]["observedGeneration"] == 1
    assert writer.flush() == 0


def test_a_deleted_policy_stops_selecting() -> None:
    policies = ReclaimPolicies(BASE)
    obj = policy("p", {"mode": "Notify"})
    policies.apply("ADDED", obj)
    policies.apply("DELETED", obj)
    assert policies.select(pod("ml"), ns("ml", {"team": "a"})).mode is Mode.OFF
    policies.replace([obj])
    policies.replace([])
    assert policies.applied() == {}


# ---- budgets --------------------------------------------------------------------------------------

def test_a_policy_budget_caps_actions_in_the_namespaces_it_selects() -> None:
    policies = ReclaimPolicies(BASE)
    policies.apply("ADDED", policy("p", {"budgets": [{"maxPods": 2}, {"maxPods": 0, "schedule": "0 9 * * *",
                                                                      "duration": "8h"}]}))
    applied = policies.applied()["p"]
    labels = {"ml": {"team": "a"}, "other": {"team": "b"}}.get
    at_3am, at_10am = 1_767_236_400.0 + 3 * 3600, 1_767_236_400.0 + 10 * 3600  # 2026-01-01 (UTC)
    entries = [Entry(at_3am - 60, 1, "k1", "ml/Deployment/a"), Entry(at_3am - 60, 1, "k2", "other/Deployment/b")]
    assert policies.allows(applied, entries, 3600, lambda n: labels(n) or {}, at_3am) == (True, "")
    ok, why = policies.allows(applied, [*entries, Entry(at_3am - 30, 1, "k3", "ml/Pod/c")], 3600,
                              lambda n: labels(n) or {}, at_3am)
    assert not ok and "maxPods 2" in why
    assert not policies.allows(applied, [], 3600, lambda n: labels(n) or {}, at_10am)[0]  # the 0 window
    assert policies.allows(None, entries * 5, 3600, lambda n: {}, at_3am)[0]


def test_gpu_budgets_become_the_cost_budget_config() -> None:
    budgets = GpuBudgets(BudgetConfig((Budget("from-file", 1.0),)))
    assert budgets.config().budgets == (Budget("from-file", 1.0),)  # no objects: the file's
    budgets.replace([budget("a", {"team": "vision", "monthlyUsd": 12000, "alertThresholdsPercent": [50, 90]}),
                     budget("b", {"team": "nlp", "monthlyUsd": 500}, created="2026-02-01T00:00:00Z")])
    config = budgets.config()
    assert config.budgets == (Budget("vision", 12000.0), Budget("nlp", 500.0))
    assert config.thresholds == (0.5, 0.8, 0.9, 1.0)
    assert budgets.thresholds_for("vision") == (0.5, 0.9)
    assert budgets.thresholds_for("nlp") == (0.5, 0.8, 1.0)


def test_a_gpu_budget_in_another_time_zone_is_ready_with_its_zone() -> None:
    api = Patcher()
    writer = StatusWriter(api, BUDGET_RESOURCE, lambda: True)
    budgets = GpuBudgets(writer=writer)
    api.existing |= {"berlin", "la"}
    budgets.replace([budget("berlin", {"team": "vision", "monthlyUsd": 100, "timeZone": "Europe/Berlin"}),
                     budget("la", {"team": "nlp", "monthlyUsd": 50, "timeZone": "America/Los_Angeles"},
                            created="2026-03-01T00:00:00Z")])
    writer.flush()
    for name in ("berlin", "la"):
        assert kstatus.is_ready({**budget(name, {}), "status": api.status[name]}), api.status[name]
    assert "months in Europe/Berlin" in api.status["berlin"]["conditions"][0]["message"]
    assert budgets.config().budgets == (Budget("vision", 100.0, "Europe/Berlin"),
                                        Budget("nlp", 50.0, "America/Los_Angeles"))


def test_an_unknown_budget_time_zone_is_stalled_with_the_reason() -> None:
    verdict = evaluate_budgets([budget("x", {"team": "nlp", "monthlyUsd": 1, "timeZone": "Mars/Olympus"})])["x"]
    assert verdict.applied is None and verdict.reason == "InvalidSpec"
    assert verdict.message == "spec.timeZone: unknown IANA time zone 'Mars/Olympus' (e.g. UTC, Europe/Berlin)"


@pytest.mark.parametrize(("second", "reason"), [
    ({"team": "vision", "monthlyUsd": 1}, "DuplicateTeam"),
    ({"team": "nlp", "monthlyUsd": 1, "timeZone": "Mars/Olympus"}, "InvalidSpec"),
    ({"team": "nlp"}, "InvalidSpec"),
])
def test_a_gpu_budget_that_cannot_be_applied_is_stalled(second: dict, reason: str) -> None:
    api = Patcher()
    writer = StatusWriter(api, BUDGET_RESOURCE, lambda: True)
    budgets = GpuBudgets(writer=writer)
    first = budget("first", {"team": "vision", "monthlyUsd": 100})
    later = budget("later", second, created="2026-03-01T00:00:00Z")
    api.existing |= {"first", "later"}
    budgets.replace([first, later])
    writer.flush()
    status = api.status["later"]
    assert {c["type"]: c["reason"] for c in status["conditions"]} == {"Ready": reason, "Stalled": reason}
    assert kstatus.is_ready({**first, "status": api.status["first"]})
    assert budgets.config().budgets == (Budget("vision", 100.0),)
