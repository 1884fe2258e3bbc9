"""Every kustomization under deploy/, rendered as `kubectl apply -k` would, is accepted by the real
API server (server-side dry run), and every manifest file next to one is either part of it or a
component config snippet that is not applied."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from .kustomize import referenced_files, render

pytestmark = pytest.mark.cluster

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KUSTOMIZATIONS = sorted(p.parent.relative_to(DEPLOY).as_posix() for p in DEPLOY.rglob("kustomization.yaml"))
#: Component configuration files (read by a binary, not applied to the API server).
NOT_APPLIED_KINDS = {"KubeSchedulerConfiguration", "KwokConfiguration", "Stage"}


def test_the_kustomizations_under_deploy_are_the_ones_this_test_knows():
    assert {"base", "overlays/existing-scheduler", "agent"} <= set(KUSTOMIZATIONS)


def _dry_run(k8s_api_client, objects: list[dict]) -> list[str]:
    from kubernetes import dynamic
    from kubernetes.client.exceptions import ApiException

    dyn = dynamic.DynamicClient(k8s_api_client)
    failures = []
    namespaces = [o for o in objects if o["kind"] == "Namespace"]
    for label, dry_run, batch in (("create", None, namespaces),
                                  ("dry-run", "All", [o for o in objects if o["kind"] != "Namespace"])):
        for obj in batch:
            name = f"{obj['kind']}/{obj['metadata'].get('name')}"
            try:
                resource = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
                namespace = obj["metadata"].get("namespace", "default") if resource.namespaced else None
                resource.create(body=obj, namespace=namespace, dry_run=dry_run)
            except ApiException as err:
                if err.status == 409 and dry_run is None:
                    continue
                try:
                    message = json.loads(err.body)["message"]
                except (TypeError, ValueError, KeyError):
                    message = err.body
                failures.append(f"{name} ({label}): {err.status} {message}")
            except Exception as err:  # noqa: BLE001 - an unknown kind is reported with the others
                failures.append(f"{name} ({label}): {type(err).__name__}: {err}")
        if namespaces and dry_run is None:
            time.sleep(0.5)
    return failures


@pytest.mark.parametrize("folder", KUSTOMIZATIONS)
def test_a_rendered_kustomization_passes_a_server_side_dry_run(k8s_api_client, folder):
    objects = render(DEPLOY / folder)
    failures = _dry_run(k8s_api_client, objects)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("folder", KUSTOMIZATIONS)
def test_every_manifest_next_to_a_kustomization_is_applied_by_it_or_is_a_component_config(folder):
    directory = DEPLOY / folder
    used = referenced_files(directory)
    stray = []
    for path in sorted(directory.glob("*.y*ml")):
        if path.resolve() in used:
            continue
        kinds = {d.get("kind") for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)}
        if not kinds <= NOT_APPLIED_KINDS:
            stray.append(f"{path.relative_to(DEPLOY)} ({', '.join(sorted(map(str, kinds)))})")
    assert not stray, f"not in {folder}/kustomization.yaml and not a component config: {stray}"
