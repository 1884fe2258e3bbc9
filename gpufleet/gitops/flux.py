"""Flux in the local cluster: source-controller and kustomize-controller as local processes.

The binaries and Flux's CRDs come from ``deploy/local/build.sh`` (built from the Go modules pinned in
``deploy/local/flux/go.mod``) into their own cache folder, so the control plane's cache key does not
change. Both controllers run outside the cluster with the admin kubeconfig, on loopback ports:
source-controller serves the artifacts it fetched from Git at ``storage-addr`` and advertises that
address, kustomize-controller downloads from it and applies with server-side apply.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from gpufleet.gitops.errors import GitOpsError
from gpufleet.scheduler.localcluster.binaries import cache_root
from gpufleet.scheduler.localcluster.processes import ProcessSpec

#: Versions pinned by deploy/local/flux/go.mod (a unit test checks both agree).
PINNED: dict[str, str] = {"source-controller": "v1.9.6", "kustomize-controller": "v1.9.6"}
NAMES: tuple[str, ...] = ("source-controller", "kustomize-controller")
#: The namespace the controllers think they run in (Events and leader election would go there).
NAMESPACE = "flux-system"
BUILD_HINT = "run deploy/local/build.sh (Flux adds about 5 min on 2 cores the first time, then cached)"


class FluxMissingError(GitOpsError):
    """The Flux binaries or CRDs are not built."""


def version_key(pinned: dict[str, str] = PINNED) -> str:
    return f"flux-sc-{pinned['source-controller']}_kc-{pinned['kustomize-controller']}"


def default_flux_dir() -> Path:
    """``$GPUFLEET_FLUX_DIR`` or the build.sh cache folder for the pinned versions."""
    override = os.environ.get("GPUFLEET_FLUX_DIR")
    return Path(override) if override else cache_root() / "bin" / version_key()


@dataclass(frozen=True)
class FluxBinaries:
    directory: Path

    @property
    def source_controller(self) -> Path:
        return self.directory / "source-controller"

    @property
    def kustomize_controller(self) -> Path:
        return self.directory / "kustomize-controller"

    @property
    def crds(self) -> list[Path]:
        return sorted((self.directory / "crds").glob("*.yaml"))


def missing(directory: Path) -> list[str]:
    out = [name for name in NAMES
           if not (directory / name).is_file() or not (directory / name).stat().st_mode & stat.S_IXUSR]
    if not list((directory / "crds").glob("*.yaml")):
        out.append("crds/")
    return out


def find_flux(directory: Path | None = None) -> FluxBinaries:
    folder = (directory or default_flux_dir()).expanduser().resolve()
    gone = missing(folder)
    if gone:
        raise FluxMissingError(f"Flux missing in {folder}: {', '.join(gone)}; {BUILD_HINT}")
    return FluxBinaries(folder)


@dataclass(frozen=True)
class FluxPorts:
    storage: int
    source_metrics: int
    source_health: int
    kustomize_metrics: int
    kustomize_health: int


def _env(kubeconfig: Path) -> dict[str, str]:
    return {"KUBECONFIG": str(kubeconfig), "RUNTIME_NAMESPACE": NAMESPACE}


def source_controller(flux: FluxBinaries, state_dir: Path, kubeconfig: Path, ports: FluxPorts) -> ProcessSpec:
    storage = state_dir / "flux-artifacts"
    storage.mkdir(parents=True, exist_ok=True)
    return ProcessSpec("source-controller", [
        str(flux.source_controller),
        f"--storage-path={storage}",
        f"--storage-addr=127.0.0.1:{ports.storage}",
        f"--storage-adv-addr=127.0.0.1:{ports.storage}",
        f"--metrics-addr=127.0.0.1:{ports.source_metrics}",
        f"--health-addr=127.0.0.1:{ports.source_health}",
        "--enable-leader-election=false",
        "--watch-all-namespaces=true",
        "--log-level=info",
    ], env=_env(kubeconfig))


def kustomize_controller(flux: FluxBinaries, state_dir: Path, kubeconfig: Path, ports: FluxPorts) -> ProcessSpec:
    return ProcessSpec("kustomize-controller", [
        str(flux.kustomize_controller),
        f"--metrics-addr=127.0.0.1:{ports.kustomize_metrics}",
        f"--health-addr=127.0.0.1:{ports.kustomize_health}",
        "--enable-leader-election=false",
        "--watch-all-namespaces=true",
        "--no-remote-bases=true",
        "--log-level=info",
    ], env=_env(kubeconfig))


def health_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/readyz"
