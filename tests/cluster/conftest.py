"""The local cluster for end-to-end tests: brought up once per session, torn down at the end.

The binaries come from ``deploy/local/build.sh``'s cache. When they are missing the tests are
skipped with the command to run, except in CI (``CI=true``), where that is a failure: CI builds
them first (``.ci/build-k8s.sh``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpufleet.scheduler.localcluster.binaries import BUILD_HINT, default_bin_dir, missing_binaries
from gpufleet.scheduler.localcluster.cluster import ClusterInfo, ClusterOptions, LocalCluster

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
    leftovers = _processes_mentioning(str(state_dir))
    assert not leftovers, f"processes left behind after cluster down: {leftovers}"


def _processes_mentioning(text: str) -> dict[int, str]:
    """Live processes whose command line contains ``text`` (every component names the state folder)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found[int(entry.name)] = cmdline[:200]
    return found


@pytest.fixture(scope="session")
def k8s_api_client(local_cluster: ClusterInfo):
    """An official ``kubernetes`` ApiClient for the local cluster (admin)."""
    from kubernetes import config

    api_client = config.new_client_from_config(config_file=local_cluster.kubeconfig)
    yield api_client
    api_client.close()
