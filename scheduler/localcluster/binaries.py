"""Where the control-plane binaries are: the cache that ``deploy/local/build.sh`` fills.

The cache key is made of the versions pinned in ``deploy/local/*/go.mod``; ``PINNED`` repeats them
here (a unit test checks that both agree), so an installed package finds the binaries without the
Go modules.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

#: Versions pinned by deploy/local/{kubernetes,etcd,kwok}/go.mod.
PINNED: dict[str, str] = {"kubernetes": "v1.37.2", "etcd": "v3.6.16", "kwok": "v0.8.0"}

#: Every binary that `gpufleet cluster up` starts.
NAMES: tuple[str, ...] = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")

BUILD_HINT = "run deploy/local/build.sh (about 10 min the first time on 2 cores, then cached)"


class BinariesMissingError(RuntimeError):
    """The control-plane binaries are not built (or not executable)."""


def cache_root() -> Path:
    """``$GPUFLEET_CACHE`` or ``~/.cache/gpufleet``: the same root build.sh uses."""
    return Path(os.environ.get("GPUFLEET_CACHE") or Path.home() / ".cache" / "gpufleet")


def version_key(pinned: dict[str, str] = PINNED) -> str:
    """The cache folder name for a set of versions, as build.sh names it."""
    return f"k8s-{pinned['kubernetes']}_etcd-{pinned['etcd']}_kwok-{pinned['kwok']}"


def default_bin_dir() -> Path:
    """``$GPUFLEET_BIN_DIR`` if set, else the cache folder of the pinned versions."""
    override = os.environ.get("GPUFLEET_BIN_DIR")
    if override:
        return Path(override)
    return cache_root() / "bin" / version_key()


@dataclass(frozen=True)
class Binaries:
    """Absolute paths of the five binaries."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kwok: Path

    @property
    def directory(self) -> Path:
        return self.etcd.parent


def missing_binaries(bin_dir: Path) -> list[str]:
    """Names of the binaries that are absent or not executable in ``bin_dir``."""
    missing = []
    for name in NAMES:
        path = bin_dir / name
        if not path.is_file() or not path.stat().st_mode & stat.S_IXUSR:
            missing.append(name)
    return missing


def find_binaries(bin_dir: Path | None = None) -> Binaries:
    """The binaries in ``bin_dir`` (default: :func:`default_bin_dir`), or a clear error."""
    directory = (bin_dir or default_bin_dir()).expanduser().resolve()
    missing = missing_binaries(directory)
    if missing:
        raise BinariesMissingError(
            f"control-plane binaries missing in {directory}: {', '.join(missing)}; {BUILD_HINT}"
            " or point GPUFLEET_BIN_DIR at a folder that has them"
        )
    return Binaries(
        etcd=directory / "etcd",
        kube_apiserver=directory / "kube-apiserver",
        kube_controller_manager=directory / "kube-controller-manager",
        kube_scheduler=directory / "kube-scheduler",
        kwok=directory / "kwok",
    )
