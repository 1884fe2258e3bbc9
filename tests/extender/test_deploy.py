"""The extender's manifests, as `kubectl kustomize` renders them, agree with the code and with each
other; RBAC has no wildcards; the KubeSchedulerConfigurations follow the one source."""

from __future__ import annotations

import copy
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from gpufleet.cli import parse_args

REPO = Path(__file__).resolve().parents[2]
BASE = REPO / "deploy" / "base"
OVERLAY = REPO / "deploy" / "overlays" / "existing-scheduler"
SCHEDULER = REPO / "deploy" / "scheduler"
CONFIG_KEY = "kube-scheduler-config.yaml"
#: Kinds without a namespace among the ones deploy/ uses.
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def extender_container(docs: list[dict], deployment: str) -> dict:
    dep = next(d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == deployment)
    return next(c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "extender")


def extender_args(container: dict):
    return parse_args([*container["command"][1:], *container["args"]])


def scheduler_config(docs: list[dict]) -> dict:
    """The KubeSchedulerConfiguration in the one generated ConfigMap of a rendered kustomization."""
    (config_map,) = of_kind(docs, "ConfigMap")
    return yaml.safe_load(config_map["data"][CONFIG_KEY])


def as_second_scheduler(shared: dict) -> dict:
    """The source as deploy/base runs it next to the cluster's own scheduler: its profile only, a lease
    of its own, and the extender as a sidecar on loopback."""
    config = copy.deepcopy(shared)
    config["leaderElection"].update(resourceNamespace="gpufleet-system", resourceName="gpufleet-scheduler")
    config["profiles"] = [p for p in config["profiles"] if p["schedulerName"] == "gpufleet-scheduler"]
    config["extenders"][0]["urlPrefix"] = "http://127.0.0.1:8888/v1"
    return config


def as_extender_snippet(shared: dict) -> dict:
    """The source's `extenders` entry as deploy/overlays/existing-scheduler hands it out: no bindVerb,
    and mutual TLS (https, kube-scheduler's client certificate in tlsConfig)."""
    entry = {k: v for k, v in shared["extenders"][0].items() if k != "bindVerb"}
    entry["urlPrefix"] = entry["urlPrefix"].replace("http://", "https://", 1)
    folder = "/etc/kubernetes/pki/gpufleet-extender"
    entry["tlsConfig"] = {"certFile": f"{folder}/client.crt", "keyFile": f"{folder}/client.key",
                          "caFile": f"{folder}/ca.crt"}
    return {"apiVersion": shared["apiVersion"], "kind": shared["kind"], "extenders": [entry]}


@pytest.mark.parametrize("directory", [BASE, OVERLAY])
def test_everything_a_kustomization_renders_lives_in_gpufleet_system(kustomize, directory):
    for doc in kustomize(directory):
        if doc["kind"] not in CLUSTER_SCOPED:
            assert doc["metadata"]["namespace"] == "gpufleet-system", doc["metadata"]["name"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "gpufleet", doc["metadata"]["name"]


@pytest.mark.parametrize("directory", [BASE, OVERLAY])
def test_rbac_has_no_wildcards_and_grants_what_the_extender_calls(kustomize, directory):
    docs = kustomize(directory)
    rules = [rule for role in of_kind(docs, "ClusterRole") + of_kind(docs, "Role") for rule in role["rules"]]
    for rule in rules:
        for field in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in rule.get(field, []), rule
    granted = {(r, v) for rule in rules if rule.get("apiGroups") == [""] and "resourceNames" not in rule
               for r in rule["resources"] for v in rule["verbs"]}
    needed = {(r, v) for r in ("nodes", "pods", "namespaces") for v in ("list", "watch")} | {("events", "create")}
    assert needed <= granted
    assert (("pods/binding", "create") in granted) == (directory == BASE)
    # ConfigMap workload mixes: read in gpufleet-system by a Role, never cluster-wide
    mix_reads = [(role["kind"], role["metadata"].get("namespace")) for role in of_kind(docs, "ClusterRole")
                 + of_kind(docs, "Role") for rule in role["rules"] if "configmaps" in rule["resources"]]
    assert mix_reads == [("Role", "gpufleet-system")]
    assert {("configmaps", v) for v in ("get", "list", "watch")} <= granted
    bindings = of_kind(docs, "ClusterRoleBinding") + of_kind(docs, "RoleBinding")
    assert all(b["roleRef"]["name"] != "cluster-admin" for b in bindings)


def test_the_base_mounts_its_generated_config_map_and_calls_its_sidecar_extender(kustomize):
    docs = kustomize(BASE)
    (config_map,) = of_kind(docs, "ConfigMap")
    deployment = next(d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == "gpufleet-scheduler")
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == config_map["metadata"]["name"]  # the hashed name
    scheduler = next(c for c in pod["containers"] if c["name"] == "kube-scheduler")
    mount = next(m for m in scheduler["volumeMounts"] if m["name"] == "config")
    assert f"--config={mount['mountPath']}/{CONFIG_KEY}" in scheduler["command"]
    url = urlparse(scheduler_config(docs)["extenders"][0]["urlPrefix"])
    args = extender_args(extender_container(docs, "gpufleet-scheduler"))
    assert args.listen == f"{url.hostname}:{url.port}" and url.hostname == "127.0.0.1"
    assert args.prefix.rstrip("/") == url.path and not args.standalone and args.kubeconfig is None


def test_the_base_scheduler_config_is_the_source_with_only_the_second_scheduler_changes(kustomize):
    shared = scheduler_config(kustomize(SCHEDULER))
    assert shared == yaml.safe_load((SCHEDULER / CONFIG_KEY).read_text())
    assert scheduler_config(kustomize(BASE)) == as_second_scheduler(shared)


def test_the_existing_scheduler_snippet_is_the_sources_extender_entry_without_bind():
    shared = yaml.safe_load((SCHEDULER / CONFIG_KEY).read_text())
    snippet = yaml.safe_load((OVERLAY / "kube-scheduler-extender.yaml").read_text())
    assert snippet == as_extender_snippet(shared)


def test_the_existing_scheduler_snippet_points_at_the_overlays_service(kustomize):
    entry = yaml.safe_load((OVERLAY / "kube-scheduler-extender.yaml").read_text())["extenders"][0]
    url = urlparse(entry["urlPrefix"])
    docs = kustomize(OVERLAY)
    service = of_kind(docs, "Service")[0]
    assert url.hostname == f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc"
    assert url.port in {p["port"] for p in service["spec"]["ports"]}
    args = extender_args(extender_container(docs, "gpufleet-extender"))
    assert args.prefix.rstrip("/") == url.path and args.listen.endswith(f":{url.port}")
    assert "bindVerb" not in entry and entry["nodeCacheCapable"] and entry["ignorable"]
