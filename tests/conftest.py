"""Fixtures every test folder may use: kubectl and its kustomize, as `kubectl apply -k` renders deploy/.

kubectl is the one ``deploy/local/build.sh`` builds from the pinned Kubernetes module, next to the
control-plane binaries. Without it the tests that need it are skipped with the command to run,
except in CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpufleet.scheduler.localcluster.binaries import BUILD_HINT, default_bin_dir


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
