"""The committed dashboards and PrometheusRule are exactly what deploy/monitoring/generate.py makes,
and the kustomization ships them as ConfigMaps Grafana's sidecar picks up."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"


def load_generate():
    spec = importlib.util.spec_from_file_location("gpufleet_monitoring_generate", MONITORING / "generate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module



def test_committed_dashboards_and_prometheus_rule_match_the_generator() -> None:
    import grafana_foundation_sdk  # noqa: F401 - a dev dependency: missing is a failure, never a skip
    generate = load_generate()
    outputs = generate.outputs()
    assert {p.name for p in outputs} >= {f"{stem}.json" for stem in generate.DASHBOARDS}
    stale = [str(path.relative_to(MONITORING)) for path, text in outputs.items()
             if not path.is_file() or path.read_text() != text]
    assert not stale, f"regenerate with `python deploy/monitoring/generate.py`: {stale}"
    assert {p.stem for p in (MONITORING / "dashboards").glob("*.json")} == set(generate.DASHBOARDS)


def test_prometheus_rule_holds_the_plain_rule_files_groups() -> None:
    plain = yaml.safe_load((MONITORING / "rules" / "gpufleet.rules.yaml").read_text())
    operator = yaml.safe_load((MONITORING / "rules" / "prometheusrule.yaml").read_text())
    assert operator["kind"] == "PrometheusRule" and operator["spec"]["groups"] == plain["groups"]


@pytest.mark.parametrize("stem", ["gpufleet-placement", "gpufleet-fleet", "gpufleet-agents", "gpufleet-cost"])
def test_every_panel_has_a_unit_a_legend_and_uses_the_dashboard_variables(stem: str) -> None:
    board = json.loads((MONITORING / "dashboards" / f"{stem}.json").read_text())
    variables = {v["name"] for v in board["templating"]["list"] if v["type"] == "query"}
    assert "cluster" in variables
    for panel in board["panels"]:
        assert panel["fieldConfig"]["defaults"].get("unit"), panel["title"]
        for target in panel["targets"]:
            assert target["legendFormat"], (panel["title"], target["expr"])
            assert target["datasource"]["uid"] == "${datasource}"
            assert "$cluster" in target["expr"], (panel["title"], target["expr"])
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["includeAll"] and variable["allValue"] == ".*" and variable["current"]["value"] == "$__all"


def test_the_kustomization_renders_dashboard_configmaps_for_the_sidecar_and_the_operator_objects(
        kubectl_binary: Path) -> None:
    rendered = subprocess.run([str(kubectl_binary), "kustomize", str(MONITORING)], capture_output=True, text=True,
                              timeout=60, check=True).stdout
    objects = list(yaml.safe_load_all(rendered))
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == ["ConfigMap", "ConfigMap", "ConfigMap", "ConfigMap", "PodMonitor", "PrometheusRule", "ServiceMonitor",
                     "ServiceMonitor"]
    for cm in (o for o in objects if o["kind"] == "ConfigMap"):
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        (name, text), = cm["data"].items()
        committed = (MONITORING / "dashboards" / name).read_text()
        assert json.loads(text) == json.loads(committed)
    pod_monitor = next(o for o in objects if o["kind"] == "PodMonitor")
    assert pod_monitor["spec"]["podMetricsEndpoints"][0]["honorLabels"] is True


def test_the_plain_scrape_config_and_the_monitors_name_the_jobs_the_dashboards_and_alerts_use() -> None:
    """(Debian's promtool has no Kubernetes discovery, so the plain config is checked by structure.)"""
    plain = yaml.safe_load((MONITORING / "scrape-config.yaml").read_text())["scrape_configs"]
    assert {j["job_name"] for j in plain} == {"gpufleet-extender", "gpufleet-agent", "gpufleet-controller"}
    assert [j.get("honor_labels", False) for j in plain if j["job_name"] == "gpufleet-agent"] == [True]
    monitors = [*yaml.safe_load_all((MONITORING / "servicemonitor.yaml").read_text()),
                yaml.safe_load((MONITORING / "podmonitor.yaml").read_text())]
    jobs = {m["metadata"]["name"]: [r["replacement"] for e in m["spec"].get("endpoints", [])
                                    + m["spec"].get("podMetricsEndpoints", []) for r in e["relabelings"]
                                    if r["targetLabel"] == "job"] for m in monitors}
    assert jobs == {"gpufleet-extender": ["gpufleet-extender"], "gpufleet-agent": ["gpufleet-agent"],
                    "gpufleet-controller": ["gpufleet-controller"]}
    rules = (MONITORING / "rules" / "gpufleet.rules.yaml").read_text()
    assert 'job="gpufleet-extender"' in rules and 'job="gpufleet-agent"' in rules
