"""The tests' minimal kustomize renders deploy/ the way `kubectl apply -k` would (no cluster needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .kustomize import KustomizeError, referenced_files, render

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def by_kind(objects):
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def test_the_base_gets_its_namespace_labels_and_a_hashed_config_map_the_deployment_mounts():
    objects = by_kind(render(DEPLOY / "base"))
    config_maps = [name for kind, name in objects if kind == "ConfigMap"]
    assert len(config_maps) == 1 and config_maps[0].startswith("gpufleet-scheduler-config-")
    deployment = objects[("Deployment", "gpufleet-scheduler")]
    assert deployment["metadata"]["namespace"] == "gpufleet-system"
    assert deployment["metadata"]["labels"]["app.kubernetes.io/part-of"] == "gpufleet"
    assert "app.kubernetes.io/part-of" not in deployment["spec"]["selector"]["matchLabels"]  # includeSelectors false
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == config_maps[0]
    assert "namespace" not in objects[("Namespace", "gpufleet-system")]["metadata"]
    assert "kube-scheduler-config.yaml" in objects[("ConfigMap", config_maps[0])]["data"]


@pytest.mark.parametrize("folder", ["base", "overlays/existing-scheduler", "agent"])
def test_every_kustomization_under_deploy_renders(folder):
    objects = render(DEPLOY / folder)
    assert objects and all(o.get("apiVersion") and o.get("kind") for o in objects)
    assert referenced_files(DEPLOY / folder) >= {(DEPLOY / folder / "kustomization.yaml").resolve()}


def test_a_field_the_renderer_does_not_know_fails_loudly(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("resources: []\npatches:\n  - path: p.yaml\n")
    with pytest.raises(KustomizeError, match="patches not supported"):
        render(tmp_path)


def test_images_and_common_labels_are_applied(tmp_path):
    (tmp_path / "d.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  selector: {matchLabels: {a: b}}\n"
        "  template:\n    metadata: {labels: {a: b}}\n    spec: {containers: [{name: c, image: 'ghcr.io/x/y:1'}]}\n")
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [d.yaml]\nnamespace: ns\ncommonLabels: {team: ml}\n"
        "images: [{name: ghcr.io/x/y, newTag: '2'}]\n")
    deployment = render(tmp_path)[0]
    assert deployment["metadata"]["namespace"] == "ns"
    assert deployment["spec"]["selector"]["matchLabels"] == {"a": "b", "team": "ml"}
    assert deployment["spec"]["template"]["metadata"]["labels"]["team"] == "ml"
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/x/y:2"
