"""The typed specs: the committed CRDs are what the specs generate, objects parse into frozen
dataclasses with every error reported by path, and status follows kstatus."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import yaml

from gpufleet.core.config import crd, kinds, status
from gpufleet.core.config.schema import SpecError, parse
from tests.gitops.conftest import REPO


def test_committed_crds_are_exactly_what_the_specs_generate():
    assert crd.differences(REPO / "deploy" / "crds") == [], \
        "run: python -m gpufleet.core.config.crd deploy/crds"


def test_the_check_mode_fails_when_a_committed_crd_was_edited_by_hand(tmp_path):
    assert crd.main([str(tmp_path)]) == 0
    assert crd.main([str(tmp_path), "--check"]) == 0
    target = tmp_path / "gpufleet.io_gpubudgets.yaml"
    target.write_text(target.read_text().replace("maximum: 1000000000.0", "maximum: 5"))
    assert crd.main([str(tmp_path), "--check"]) == 1


def test_every_crd_is_structural_with_status_subresource_and_ready_column():
    for kind in crd.KINDS:
        doc = yaml.safe_load(crd.render(kind))
        version = doc["spec"]["versions"][0]
        assert version["subresources"] == {"status": {}}
        columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
        assert columns["Ready"] == '.status.conditions[?(@.type=="Ready")].status'
        status_schema = version["schema"]["openAPIV3Schema"]["properties"]["status"]
        assert {"observedGeneration", "conditions"} <= set(status_schema["properties"])
        assert status_schema["properties"]["conditions"]["x-kubernetes-list-map-keys"] == ["type"]


def test_the_example_objects_parse_into_typed_specs_with_defaults():
    docs = {d["metadata"]["name"]: d for f in (REPO / "deploy/gitops/example").glob("*.yaml")
            for d in yaml.safe_load_all(f.read_text()) if d and d.get("apiVersion") == kinds.API_VERSION}
    placement = parse(kinds.PlacementPolicySpec, docs["inference"]["spec"])
    assert placement.policy == "cost" and placement.weights.fragmentation == 1.5
    assert placement.workload_mix.source == "Learned"  # default
    reclaim = parse(kinds.ReclaimPolicySpec, docs["research-idle"]["spec"])
    assert kinds.seconds(reclaim.window) == 45 * 60 and reclaim.budgets[0].time_zone == "Europe/Berlin"
    prices = parse(kinds.PriceCatalogSpec, docs["negotiated"]["spec"])
    assert prices.instances[1].region == "*" and prices.instances[0].spot_per_hour == 9.8
    budget = parse(kinds.GpuBudgetSpec, docs["ml"]["spec"])
    assert budget.alert_thresholds_percent == (50, 80, 100)


def test_parse_reports_every_error_with_its_path():
    with pytest.raises(SpecError) as caught:
        parse(kinds.PlacementPolicySpec, {"policy": "greedy", "weights": {"fragmentation": -1, "x": 1},
                                          "interruptionPenaltyGpuHours": "high"})
    assert sorted(caught.value.errors) == sorted([
        "spec.namespaceSelector: required",
        "spec.policy: must be one of fgd, fgd-strand, binpack, spread, cost, off (got 'greedy')",
        "spec.weights.fragmentation: must be >= 0",
        "spec.weights.x: unknown field",
        "spec.interruptionPenaltyGpuHours: must be a number",
    ])


@pytest.mark.parametrize(("labels", "selector", "selected"), [
    ({"team": "ml"}, {"matchLabels": {"team": "ml"}}, True),
    ({"team": "ml"}, {"matchLabels": {"team": "cv"}}, False),
    ({"tier": "gpu"}, {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["gpu", "x"]}]}, True),
    ({"tier": "gpu"}, {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["gpu"]}]}, False),
    ({}, {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["gpu"]}]}, True),
    ({}, {"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, False),
    ({"a": "1"}, {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, True),
])
def test_label_selectors_follow_kubernetes_semantics(labels, selector, selected):
    assert parse(kinds.LabelSelector, selector).matches(labels) is selected


@pytest.mark.parametrize(("text", "expected"), [("90s", 90), ("30m", 1800), ("1h30m", 5400), ("250ms", 0.25)])
def test_durations_are_go_durations(text, expected):
    assert kinds.seconds(text) == expected


def test_stalled_then_applied_status_is_kstatus_correct():
    t0, t1 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    bad = status.stalled(None, 3, "InvalidSpec", "spec.policy: unknown", now=t0)
    obj = {"metadata": {"generation": 3}, "status": bad}
    assert not status.is_ready(obj)
    assert {c["type"]: c["status"] for c in bad["conditions"]} == {"Ready": "False", "Stalled": "True"}
    good = status.applied(bad, 4, "in effect", now=t1)
    assert {c["type"] for c in good["conditions"]} == {"Ready"}  # Stalled removed, not left False
    assert not status.is_ready({"metadata": {"generation": 5}, "status": good})  # not observed yet
    assert status.is_ready({"metadata": {"generation": 4}, "status": good})
    again = status.applied(good, 5, "in effect", now=datetime(2026, 1, 3, tzinfo=UTC))
    assert again["conditions"][0]["lastTransitionTime"] == "2026-01-02T00:00:00Z"  # no transition
