"""The GitOps loop end to end on a local cluster of its own (`cluster up --gitops`): Flux applies the
seeded example; a pushed PlacementPolicy change reaches the extender (status and placement) within
60 s; an invalid commit is refused by the API server, the Kustomization reports that refusal, and the
old policy keeps working; reverting the commit makes the Kustomization Ready again."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gpufleet.scheduler.localcluster.cluster import ClusterInfo, ClusterOptions, LocalCluster
from gpufleet.scheduler.localcluster.podloader import PodLoader
from tests.gitops.conftest import gpu_pod

pytestmark = pytest.mark.cluster

GROUP, VERSION = "gpufleet.io", "v1alpha1"
FLUX_KUSTOMIZE = ("kustomize.toolkit.fluxcd.io", "v1", "flux-system", "kustomizations", "gpufleet-config")


@pytest.fixture(scope="module")
def flux_binaries() -> None:
    import os

    from gpufleet.gitops.flux import BUILD_HINT, default_flux_dir, missing

    gone = missing(default_flux_dir())
    if gone:
        message = f"Flux missing in {default_flux_dir()} ({', '.join(gone)}): {BUILD_HINT}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="module")
def gitops_cluster(cluster_binaries, flux_binaries, tmp_path_factory) -> Iterator[ClusterInfo]:
    cluster = LocalCluster(ClusterOptions(state_dir=tmp_path_factory.mktemp("gitops-cluster"), nodes=2,
                                          gitops=True, timeout_s=180))
    info = cluster.up()
    try:
        yield info
    finally:
        cluster.down()


def git(work: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(work), "-c", "user.name=test", "-c", "user.email=test@localhost", *args],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


def eventually(what: str, probe: Callable[[], object], timeout_s: float) -> tuple[object, float]:
    """(first truthy value of probe, seconds it took)."""
    start = time.monotonic()
    while True:
        value = probe()
        if value:
            return value, time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(0.5)


def test_commits_reach_the_extender_invalid_ones_are_reported_and_reverts_recover(gitops_cluster, tmp_path):
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=gitops_cluster.kubeconfig)
    objects = client.CustomObjectsApi(api_client)

    def kustomization() -> dict:
        group, version, namespace, plural, name = FLUX_KUSTOMIZE
        return objects.get_namespaced_custom_object(group, version, namespace, plural, name)

    def ready(obj: dict) -> dict | None:
        return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), None)

    def training() -> dict:
        return objects.get_cluster_custom_object(GROUP, VERSION, "placementpolicies", "training")

    def applied_at(revision: str) -> Callable[[], bool]:
        def probe() -> bool:
            obj = kustomization()
            return (obj.get("status") or {}).get("lastAppliedRevision", "").endswith(revision) \
                and (ready(obj) or {}).get("status") == "True"
        return probe

    work = tmp_path / "config"
    subprocess.run(["git", "clone", "--quiet", gitops_cluster.git_url, str(work)], check=True)
    eventually("Flux applies the seeded example", applied_at(git(work, "rev-parse", "HEAD")), 120)
    first, _ = eventually("the extender reports the seeded policy", lambda: (
        (s := training().get("status") or {}).get("observedGeneration") == 1 and s), 60)
    assert {c["type"]: c["status"] for c in first["conditions"]} == {"Ready": "True"}

    # 1. a change: fgd -> spread; the extender places with it
    placement = work / "placement.yaml"
    placement.write_text(placement.read_text().replace("  policy: fgd\n", "  policy: spread\n", 1))
    git(work, "commit", "--quiet", "-am", "training namespaces spread")
    git(work, "push", "--quiet", "origin", "HEAD:main")
    pushed = time.monotonic()
    eventually("the extender applies the pushed policy", lambda: training()["spec"]["policy"] == "spread" and (
        training().get("status") or {}).get("observedGeneration") == 2, 60)
    print(f"commit to extender: {time.monotonic() - pushed:.1f} s")
    with PodLoader(gitops_cluster.kubeconfig) as loader:
        for name, gpus in (("anchor", 4), ("next", 1)):
            loader.create("ml-training", [gpu_pod(name, gpus)], ordered=True)
            eventually(f"{name} bound", lambda name=name: node_of(loader, name), 60)
        assert node_of(loader, "next") != node_of(loader, "anchor")  # spread: the emptier node

    # 2. an invalid commit: refused by the API server, reported by Flux; the old policy stays
    placement.write_text(placement.read_text().replace("  policy: spread\n", "  policy: greedy\n", 1))
    git(work, "commit", "--quiet", "-am", "a policy that does not exist")
    git(work, "push", "--quiet", "origin", "HEAD:main")
    bad = git(work, "rev-parse", "HEAD")
    condition, _ = eventually("the Kustomization reports the refusal", lambda: (
        (c := ready(kustomization())) and c["status"] == "False" and bad in (
            kustomization().get("status") or {}).get("lastAttemptedRevision", "") and c), 90)
    assert 'Unsupported value: "greedy"' in condition["message"], condition
    assert training()["spec"]["policy"] == "spread"
    assert {c["type"]: c["status"] for c in training()["status"]["conditions"]} == {"Ready": "True"}

    # 3. revert: Ready again at the new revision
    git(work, "revert", "--no-edit", "HEAD")
    git(work, "push", "--quiet", "origin", "HEAD:main")
    eventually("Ready after the revert", applied_at(git(work, "rev-parse", "HEAD")), 90)
    api_client.close()


def node_of(loader: PodLoader, name: str) -> str | None:
    for pod in loader.list_pods("ml-training"):
        if pod["metadata"]["name"] == name:
            return pod["spec"].get("nodeName")
    return None
