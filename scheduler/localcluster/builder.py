"""Building the control-plane binaries when they are missing: run ``deploy/local/build.sh`` with
its output streamed, the elapsed time, and a heartbeat while Go compiles in silence.

Go is looked for on PATH, then where its installers put it (/usr/local/go/bin, ~/go/bin, ~/sdk/go*/bin).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from gpufleet.scheduler.localcluster.binaries import (
    Binaries,
    BinariesMissingError,
    default_bin_dir,
    find_binaries,
)
from gpufleet.scheduler.localcluster.progress import format_seconds

BUILD_SCRIPT = Path("deploy/local/build.sh")
#: Expected first-build time on 2 cores, for the heartbeat (measured: 9-11 min).
FIRST_BUILD_S = 600.0
#: Where Go's own installer puts it (besides ~/go/bin and ~/sdk/go*/bin).
SYSTEM_GO_DIRS: tuple[str, ...] = ("/usr/local/go/bin",)


class BuildError(RuntimeError):
    """The binaries could not be built; the message says why and what to do."""


def go_path_dirs() -> list[str]:
    """Folders where Go installers put the ``go`` command."""
    home = Path.home()
    dirs = [*SYSTEM_GO_DIRS, str(home / "go" / "bin")]
    dirs += sorted(str(p / "bin") for p in (home / "sdk").glob("go*"))
    return dirs


def environment() -> dict[str, str]:
    """This process's environment with the Go folders appended to PATH."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([env.get("PATH", ""), *go_path_dirs()])
    return env


def ensure_binaries(repo_root: Path, emit: Callable[[str], None], timeout_s: float = 3600.0,
                    heartbeat_s: float = 30.0) -> Binaries:
    """The binaries of the pinned versions, built first if any is missing."""
    try:
        return find_binaries()
    except BinariesMissingError as err:
        emit(f"{err}")
    script = repo_root / BUILD_SCRIPT
    if not script.is_file():
        raise BuildError(f"{script} is missing; run from a gpufleet checkout")
    env = environment()
    if shutil.which("go", path=env["PATH"]) is None:
        raise BuildError("building the local cluster needs Go >= 1.26 and the Go module proxy: install it "
                         "(Debian: apt-get install golang-go, or the toolchain from go.dev), then run again")
    emit(f"building kube-apiserver, kube-controller-manager, kube-scheduler, etcd and kwok into {default_bin_dir()} "
         f"(first build about {FIRST_BUILD_S / 60:.0f} min on 2 cores, then cached)")
    started = time.monotonic()
    done = threading.Event()
    timed_out = threading.Event()

    def watchdog(process: subprocess.Popen) -> None:
        """A heartbeat while Go compiles in silence; kills the build after ``timeout_s``."""
        while not done.wait(min(heartbeat_s, timeout_s)):
            elapsed = time.monotonic() - started
            if elapsed > timeout_s:
                timed_out.set()
                try:
                    os.killpg(process.pid, signal.SIGKILL)  # build.sh and the go processes it started
                except ProcessLookupError:
                    pass
                return
            left = max(0.0, FIRST_BUILD_S - elapsed)
            emit(f"  still building: {format_seconds(elapsed)} so far"
                 + (f", about {format_seconds(left)} left on a first build" if left else ""))

    with subprocess.Popen(["bash", str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                          cwd=repo_root, text=True, start_new_session=True) as process:
        threading.Thread(target=watchdog, args=(process,), name="gpufleet-build-watchdog", daemon=True).start()
        try:
            assert process.stdout is not None
            for line in process.stdout:
                emit(f"  [{format_seconds(time.monotonic() - started):>10}] {line.rstrip()}")
            code = process.wait()
        finally:
            done.set()
    if timed_out.is_set():
        raise BuildError(f"building the binaries took more than {format_seconds(timeout_s)}; stopped it")
    if code != 0:
        raise BuildError(f"{script} failed (exit {code}); its output is above")
    emit(f"binaries built in {format_seconds(time.monotonic() - started)}")
    try:
        return find_binaries()
    except BinariesMissingError as err:
        raise BuildError(f"{script} succeeded but {err}") from err
