"""Fixtures every test folder may use: the local cluster (one per session), kubectl and its kustomize,
as `kubectl apply -k` renders deploy/.

The local cluster's binaries come from ``deploy/local/build.sh``'s cache. When they are missing the
tests are skipped with the command to run, except in CI (``CI=true``), where that is a failure: CI
builds them first (``.ci/build-k8s.sh``).

kubectl is the one ``deploy/local/build.sh`` builds from the pinned Kubernetes module, next to the
control-plane binaries. Without it the tests that need it are skipped with the command to run,
except in CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpufleet.scheduler.localcluster.binaries import BUILD_HINT, default_bin_dir, missing_binaries
from gpufleet.scheduler.localcluster.cluster import ClusterInfo, ClusterOptions, LocalCluster
from gpufleet.scheduler.localcluster.processes import processes_mentioning


@pytest.fixture(scope="session")
def kubectl() -> Path:
    """The pinned kubectl (skipped without it, a failure in CI)."""
    path = default_bin_dir() / "kubectl"
    if path.is_file() and path.stat().st_mode & stat.S_IXUSR:
        return path
    message = f"kubectl missing in {path.parent}: {BUILD_HINT}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def kustomize(kubectl: Path) -> Callable[[Path], list[dict[str, Any]]]:
    """``render(directory)``: the objects `kubectl kustomize directory` prints."""

    def render(directory: Path) -> list[dict[str, Any]]:
        done = subprocess.run([str(kubectl), "kustomize", str(directory)], capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 0, f"kubectl kustomize {directory}: {done.stderr.strip()}"
        return [d for d in yaml.safe_load_all(done.stdout) if isinstance(d, dict)]

    return render


#: A small uniform cluster keeps the session fast; tests that need more nodes bring their own.
TEST_NODES = int(os.environ.get("GPUFLEET_TEST_NODES", "8"))


def _require_binaries() -> None:
    bin_dir = default_bin_dir()
    missing = missing_binaries(bin_dir)
    if not missing:
        return
    message = f"local-cluster binaries missing in {bin_dir} ({', '.join(missing)}): {BUILD_HINT}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def cluster_binaries() -> None:
    """For tests that bring up a cluster of their own: skip, or fail in CI, without the binaries."""
    _require_binaries()


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory: pytest.TempPathFactory, cluster_binaries: None) -> Iterator[ClusterInfo]:
    """A running cluster of TEST_NODES uniform 8-GPU kwok nodes; yields its ClusterInfo."""
    state_dir = tmp_path_factory.mktemp("local-cluster")
    cluster = LocalCluster(ClusterOptions(state_dir=state_dir, profile="uniform", nodes=TEST_NODES,
                                          timeout_s=180.0))
    info = cluster.up()
    try:
        yield info
    finally:
        cluster.down()
    leftovers = processes_mentioning(str(state_dir))
    assert not leftovers, f"processes left behind after cluster down: {leftovers}"


@pytest.fixture(scope="session")
def k8s_api_client(local_cluster: ClusterInfo):
    """An official ``kubernetes`` ApiClient for the local cluster (admin)."""
    from kubernetes import config

    api_client = config.new_client_from_config(config_file=local_cluster.kubeconfig)
    yield api_client
    api_client.close()
