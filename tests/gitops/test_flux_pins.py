"""The Flux versions the Python side looks for are the ones deploy/local/flux/go.mod pins, and the
Flux objects in deploy/gitops/ point at what the local cluster serves."""

from __future__ import annotations

import re

import yaml

from gpufleet.gitops import flux
from gpufleet.gitops.local import flux_objects
from tests.gitops.conftest import REPO


def test_pinned_versions_match_the_go_module():
    gomod = (REPO / "deploy/local/flux/go.mod").read_text()
    for name, version in flux.PINNED.items():
        assert re.search(rf"^\s*github.com/fluxcd/{name} {re.escape(version)}$", gomod, re.M), name
    build = (REPO / "deploy/local/build.sh").read_text()
    assert 'flux_dir="$cache_root/bin/flux-sc-${sc_version}_kc-${kc_version}"' in build
    assert flux.version_key() == f"flux-sc-{flux.PINNED['source-controller']}_kc-{flux.PINNED['kustomize-controller']}"


def test_the_flux_objects_are_pointed_at_the_local_git_server():
    objects = flux_objects(REPO, "http://127.0.0.1:1234/fleet-config.git")
    kinds = {o["kind"]: o for o in objects}
    assert kinds["GitRepository"]["spec"]["url"] == "http://127.0.0.1:1234/fleet-config.git"
    assert kinds["Kustomization"]["spec"]["sourceRef"] == {"kind": "GitRepository", "name": "gpufleet-config"}
    argo = yaml.safe_load((REPO / "deploy/gitops/argocd/application.yaml").read_text())
    assert "ServerSideApply=true" in argo["spec"]["syncPolicy"]["syncOptions"]
