"""Fixtures for the config-from-Git tests: a validation API server shared by a module's tests.
(``cluster_binaries`` and ``local_cluster`` come from tests/conftest.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[2]


def gpu_pod(name: str, gpus: int) -> dict:
    """A pause pod for gpufleet-scheduler asking ``gpus`` whole GPUs (1 CPU, 1 GiB)."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"schedulerName": "gpufleet-scheduler", "terminationGracePeriodSeconds": 0,
                     "automountServiceAccountToken": False,
                     "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10", "resources": {
                         "requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"nvidia.com/gpu": str(gpus)}}}]}}


@pytest.fixture(scope="module")
def dry_run_server(cluster_binaries: None) -> Iterator:
    from gpufleet.validate.apiserver import DryRunServer

    with DryRunServer() as server:
        yield server
