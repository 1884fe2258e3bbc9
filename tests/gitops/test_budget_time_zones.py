"""GpuBudget timeZone without an API server: any IANA zone passes `gpufleet validate`'s rules (the
controller counts the budget's months in it); a name outside the IANA database is reported."""

from __future__ import annotations

from pathlib import Path

from gpufleet.validate.documents import read
from gpufleet.validate.rules import check
from tests.gitops.conftest import FIXTURES

BUDGET = """apiVersion: gpufleet.io/v1alpha1
kind: GpuBudget
metadata:
  name: research
spec:
  team: research
  monthlyUsd: 100
  timeZone: {zone}
---
apiVersion: v1
kind: Namespace
metadata:
  name: research
  labels: {{team: research, cost-center: cc-1}}
"""


def test_the_good_fixtures_hold_a_non_utc_budget_and_the_rules_accept_it():
    docs = list(read(FIXTURES / "good/edge-cases.yaml"))
    zones = [d.obj["spec"].get("timeZone", "UTC") for d in docs if d.kind == "GpuBudget"]
    assert "Asia/Kolkata" in zones
    assert [f.text() for f in check(docs)] == []


def test_a_budget_zone_outside_the_iana_database_is_reported(tmp_path: Path):
    for zone, expected in (("America/Los_Angeles", []), ("Mars/Olympus", [
            ("spec.timeZone", "schedule", "time zone 'Mars/Olympus' is not in the IANA database")])):
        path = tmp_path / "budget.yaml"
        path.write_text(BUDGET.format(zone=zone))
        found = [(f.field, f.rule, f.message.split(" (")[0]) for f in check(read(path))]
        assert found == expected, zone
