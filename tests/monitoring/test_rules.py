"""The recording and alert rules: valid for promtool, and their unit tests (input series -> alerts) pass."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

RULES = Path(__file__).resolve().parents[2] / "deploy" / "monitoring" / "rules"


def _run(promtool: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(promtool), *args], capture_output=True, text=True, timeout=120, cwd=RULES)


def test_promtool_accepts_the_rule_file(promtool: Path) -> None:
    result = _run(promtool, "check", "rules", "gpufleet.rules.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_unit_tests_pass(promtool: Path) -> None:
    result = _run(promtool, "test", "rules", "gpufleet.rules.test.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    rules = yaml.safe_load((RULES / "gpufleet.rules.yaml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((RULES / "gpufleet.rules.test.yaml").read_text())
    fired = {case["alertname"] for t in tests["tests"] for case in t.get("alert_rule_test", [])
             if case.get("exp_alerts")}
    untested = alerts - fired
    assert not untested, f"alerts without a firing unit test: {sorted(untested)}"


def test_a_wrong_expectation_fails_promtool(promtool: Path, tmp_path: Path) -> None:
    """The unit tests can fail: the same file expecting the idle hint for the opted-in pod does."""
    text = (RULES / "gpufleet.rules.test.yaml").read_text().replace("pod: idle-0, hostname", "pod: opted-0, hostname")
    broken = tmp_path / "broken.test.yaml"
    broken.write_text(text.replace("  - gpufleet.rules.yaml", f"  - {RULES / 'gpufleet.rules.yaml'}"))
    result = _run(promtool, "test", "rules", str(broken))
    assert result.returncode != 0 and "GpufleetGpuIdleWithoutOptIn" in result.stdout + result.stderr
