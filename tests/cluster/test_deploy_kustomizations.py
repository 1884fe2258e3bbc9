"""Every kustomization under deploy/ goes through `kubectl apply -k --dry-run=server` against the real
API server, and every manifest file next to one is either part of what `kubectl kustomize` renders
or a component config that is not applied."""

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


def test_the_kustomizations_under_deploy_are_the_ones_this_test_knows():
    assert {"base", "overlays/existing-scheduler", "agent", "scheduler", "crds"} <= set(KUSTOMIZATIONS)


def _kubectl(kubectl: Path, kubeconfig: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(kubectl), f"--kubeconfig={kubeconfig}", *args], input=stdin, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.mark.parametrize("folder", KUSTOMIZATIONS)
def test_a_kustomization_passes_kubectl_apply_k_with_a_server_side_dry_run(kubectl, kustomize, local_cluster,
                                                                           folder):
    # A dry run creates nothing, so the namespaces the objects go to are created for real first.
    namespaces = [o for o in kustomize(DEPLOY / folder) if o["kind"] == "Namespace"]
    if namespaces:
        created = _kubectl(kubectl, local_cluster.kubeconfig, "apply", "-f", "-",
                           stdin=yaml.safe_dump_all(namespaces))
        assert created.returncode == 0, created.stderr
    done = _kubectl(kubectl, local_cluster.kubeconfig, "apply", "-k", str(DEPLOY / folder), "--dry-run=server",
                    "-o", "name")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip(), f"kubectl apply -k {folder} applied nothing"


@pytest.mark.parametrize("folder", KUSTOMIZATIONS)
def test_every_manifest_next_to_a_kustomization_is_rendered_by_it_or_is_a_component_config(kustomize, folder):
    directory = DEPLOY / folder
    rendered = {(o["kind"], o["metadata"]["name"]) for o in kustomize(directory)}
    stray = []
    for path in sorted(directory.glob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict) or doc.get("kind") in NOT_APPLIED_KINDS:
                continue
            if (doc.get("kind"), (doc.get("metadata") or {}).get("name")) not in rendered:
                stray.append(f"{path.relative_to(DEPLOY)} ({doc.get('kind')})")
    assert not stray, f"not rendered by {folder}/kustomization.yaml and not a component config: {stray}"
