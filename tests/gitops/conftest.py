"""Fixtures for the config-from-Git tests: a validation API server shared by a module's tests.
(``cluster_binaries`` and ``local_cluster`` come from tests/conftest.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dry_run_server(cluster_binaries: None) -> Iterator:
    from gpufleet.validate.apiserver import DryRunServer

    with DryRunServer() as server:
        yield server
