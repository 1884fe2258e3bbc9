"""deploy/device-plugin: its arguments are the CLI's, it mounts the kubelet's device-plugins folder, and
its RBAC is only what the plugin calls (pods: get, list, patch)."""

from __future__ import annotations

from pathlib import Path

import yaml

from gpufleet.cli import parse_args

DIR = Path(__file__).resolve().parents[2] / "deploy" / "device-plugin"


def documents() -> list[dict]:
    kustomization = yaml.safe_load((DIR / "kustomization.yaml").read_text())
    return [d for name in kustomization["resources"] for d in yaml.safe_load_all((DIR / name).read_text()) if d]


def test_the_daemonset_runs_the_device_plugin_on_the_kubelets_socket_folder():
    (ds,) = [d for d in documents() if d["kind"] == "DaemonSet"]
    pod = ds["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = parse_args([*container["command"][1:], *container["args"]])
    mount = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}["device-plugins"]
    assert args.socket_dir == mount == "/var/lib/kubelet/device-plugins"
    assert {v["name"]: v["hostPath"]["path"] for v in pod["volumes"]}["device-plugins"] == mount
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert pod["serviceAccountName"] == "gpufleet-device-plugin"


def test_rbac_grants_reading_and_marking_pods_only():
    (role,) = [d for d in documents() if d["kind"] == "ClusterRole"]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "patch"]}]
