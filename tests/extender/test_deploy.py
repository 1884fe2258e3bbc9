"""The extender's manifests agree with the code and with each other, and RBAC has no wildcards."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from gpufleet.cli import parse_args

REPO = Path(__file__).resolve().parents[2]
BASE = REPO / "deploy" / "base"
OVERLAY = REPO / "deploy" / "overlays" / "existing-scheduler"
SHARED = REPO / "deploy" / "scheduler" / "kube-scheduler-config.yaml"


def documents(directory: Path) -> list[dict]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        docs.extend(d for d in yaml.safe_load_all((directory / name).read_text()) if d)
    return docs


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def extender_container(docs: list[dict], deployment: str) -> dict:
    dep = next(d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == deployment)
    return next(c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "extender")


def extender_args(container: dict):
    return parse_args([*container["command"][1:], *container["args"]])


@pytest.mark.parametrize("directory", [BASE, OVERLAY])
def test_every_kustomization_input_exists_and_everything_lives_in_gpufleet_system(directory):
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    for name in kustomization["resources"]:
        assert (directory / name).is_file(), name
    for generator in kustomization.get("configMapGenerator", []):
        for name in generator["files"]:
            assert (directory / name).is_file(), name
    for doc in documents(directory):
        namespaced = doc["kind"] not in {"Namespace", "ClusterRole", "ClusterRoleBinding"}
        if namespaced and doc["metadata"].get("namespace") != "kube-system":
            assert doc["metadata"]["namespace"] == "gpufleet-system", doc["metadata"]["name"]


@pytest.mark.parametrize("directory", [BASE, OVERLAY])
def test_rbac_has_no_wildcards_and_grants_what_the_extender_calls(directory):
    docs = documents(directory)
    rules = [rule for role in of_kind(docs, "ClusterRole") + of_kind(docs, "Role") for rule in role["rules"]]
    for rule in rules:
        for field in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in rule.get(field, []), rule
    granted = {(r, v) for rule in rules if rule.get("apiGroups") == [""] and "resourceNames" not in rule
               for r in rule["resources"] for v in rule["verbs"]}
    needed = {(r, v) for r in ("nodes", "pods", "namespaces") for v in ("list", "watch")} | {("events", "create")}
    assert needed <= granted
    assert (("pods/binding", "create") in granted) == (directory == BASE)
    bindings = of_kind(docs, "ClusterRoleBinding") + of_kind(docs, "RoleBinding")
    assert all(b["roleRef"]["name"] != "cluster-admin" for b in bindings)


def test_the_sidecar_scheduler_config_matches_the_shared_one_and_the_extender_it_calls():
    shared = yaml.safe_load(SHARED.read_text())
    sidecar = yaml.safe_load((BASE / "kube-scheduler-config.yaml").read_text())
    mine, theirs = dict(sidecar["extenders"][0]), dict(shared["extenders"][0])
    url = urlparse(mine.pop("urlPrefix"))
    theirs.pop("urlPrefix")
    assert mine == theirs
    assert [p["schedulerName"] for p in sidecar["profiles"]] == ["gpufleet-scheduler"]
    assert sidecar["leaderElection"]["resourceName"] == "gpufleet-scheduler"
    args = extender_args(extender_container(documents(BASE), "gpufleet-scheduler"))
    assert args.listen == f"{url.hostname}:{url.port}" and url.hostname == "127.0.0.1"
    assert args.prefix.rstrip("/") == url.path and not args.standalone and args.kubeconfig is None


def test_the_existing_scheduler_snippet_points_at_the_overlays_service():
    snippet = yaml.safe_load((OVERLAY / "kube-scheduler-extender.yaml").read_text())
    entry = snippet["extenders"][0]
    url = urlparse(entry["urlPrefix"])
    docs = documents(OVERLAY)
    service = of_kind(docs, "Service")[0]
    assert url.hostname == f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc"
    assert url.port in {p["port"] for p in service["spec"]["ports"]}
    args = extender_args(extender_container(docs, "gpufleet-extender"))
    assert args.prefix.rstrip("/") == url.path and args.listen.endswith(f":{url.port}")
    assert "bindVerb" not in entry and entry["nodeCacheCapable"] and entry["ignorable"]
    shared_url = urlparse(yaml.safe_load(SHARED.read_text())["extenders"][0]["urlPrefix"])
    assert (shared_url.hostname, shared_url.port, shared_url.path) == (url.hostname, url.port, url.path)
