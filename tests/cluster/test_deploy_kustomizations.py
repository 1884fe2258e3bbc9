"""Every kustomization under deploy/ passes `kubectl apply -k --dry-run=server` against the real API
server (gpufleet's CRDs installed first; where it holds objects of a third-party operator's CRDs, its
`kubectl kustomize` render less those goes through `kubectl apply --dry-run=server`), and every manifest file next to one is either part of the render or a
component config that is not applied."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.cluster

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KUSTOMIZATIONS = sorted(p.parent.relative_to(DEPLOY).as_posix() for p in DEPLOY.rglob("kustomization.yaml"))
#: Component configuration files (read by a binary, not applied to the API server) and build inputs.
NOT_APPLIED_KINDS = {"KubeSchedulerConfiguration", "KwokConfiguration", "Stage", "Kustomization"}
#: API groups whose CRDs come with an operator the test cluster does not run.
THIRD_PARTY_GROUPS = {"monitoring.coreos.com": "the Prometheus Operator"}


def test_the_kustomizations_under_deploy_are_the_ones_this_test_knows():
    assert {"base", "overlays/existing-scheduler", "agent", "scheduler", "crds"} <= set(KUSTOMIZATIONS)


def _kubectl(kubectl: Path, kubeconfig: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(kubectl), f"--kubeconfig={kubeconfig}", *args], input=stdin, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def gpufleet_crds(kubectl, local_cluster) -> None:
    """deploy/crds applied for real (the examples' objects need their kinds), and established."""
    done = _kubectl(kubectl, local_cluster.kubeconfig, "apply", "-k", str(DEPLOY / "crds"), "-o", "name")
    assert done.returncode == 0, done.stderr
    done = _kubectl(kubectl, local_cluster.kubeconfig, "wait", "--for=condition=Established", "--timeout=60s",
                    *done.stdout.split())
    assert done.returncode == 0, done.stderr


def _group(obj: dict) -> str:
    return obj["apiVersion"].rpartition("/")[0]


@pytest.mark.parametrize("folder", KUSTOMIZATIONS)
def test_a_kustomization_passes_a_server_side_dry_run(kubectl, kustomize, local_cluster, gpufleet_crds, folder):
    rendered = kustomize(DEPLOY / folder)
    objects = [o for o in rendered if _group(o) not in THIRD_PARTY_GROUPS]
    # A dry run creates nothing, so the namespaces the objects go to are created for real first.
    namespaces = [o for o in objects if o["kind"] == "Namespace"]
    namespaces += [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
                   for name in {o["metadata"].get("namespace") for o in objects} - {None}]
    if namespaces:
        created = _kubectl(kubectl, local_cluster.kubeconfig, "apply", "-f", "-",
                           stdin=yaml.safe_dump_all(namespaces))
        assert created.returncode == 0, created.stderr
    assert objects, f"{folder} has only objects of {', '.join(THIRD_PARTY_GROUPS.values())}: nothing to dry-run"
    if len(objects) == len(rendered):
        done = _kubectl(kubectl, local_cluster.kubeconfig, "apply", "-k", str(DEPLOY / folder), "--dry-run=server",
                        "-o", "name")
    else:  # the same render, less the third-party objects
        done = _kubectl(kubectl, local_cluster.kubeconfig, "apply", "-f", "-", "--dry-run=server", "-o", "name",
                        stdin=yaml.safe_dump_all(objects))
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.split()) == len(objects), done.stdout


@pytest.mark.parametrize("folder", KUSTOMIZATIONS)
def test_every_manifest_next_to_a_kustomization_is_rendered_by_it_or_is_a_component_config(kustomize, folder):
    directory = DEPLOY / folder
    rendered = {(o["kind"], o["metadata"]["name"]) for o in kustomize(directory)}
    stray = []
    for path in sorted(directory.glob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict) or "apiVersion" not in doc or doc.get("kind") in NOT_APPLIED_KINDS:
                continue  # not a Kubernetes object (a Prometheus config), or a component config
            if (doc.get("kind"), (doc.get("metadata") or {}).get("name")) not in rendered:
                stray.append(f"{path.relative_to(DEPLOY)} ({doc.get('kind')})")
    assert not stray, f"not rendered by {folder}/kustomization.yaml and not a component config: {stray}"
