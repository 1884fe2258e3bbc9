"""Starting and stopping the cluster's processes so that none outlives ``cluster down``.

Each process runs in a session and process group of its own (so a signal reaches whatever it
forks), writes its output to ``<state>/logs/<name>.log``, and is recorded in
``<state>/pids/<name>.pid`` as ``pid start-time``. The start time (psutil) guards against
signalling an unrelated process that got the same pid after a reboot or a crash.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

#: Children of this Python process by pid, whichever ProcessGroup started them, so any group
#: object can reap them (no zombies, no "still running" warnings when a Popen is collected).
_CHILDREN: dict[int, subprocess.Popen] = {}


class ProcessError(RuntimeError):
    """A process could not be started, or died while the cluster was coming up."""


@dataclass(frozen=True)
class ProcessSpec:
    """What to run: a name (for files and messages), the argv and extra environment."""

    name: str
    argv: Sequence[str]
    env: dict[str, str] = field(default_factory=dict)


def _start_time(pid: int) -> str | None:
    """The process's start time (seconds since the epoch, as text), or None when no such process
    lives (zombies count as gone)."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return f"{process.create_time():.2f}"
    except psutil.Error:
        return None


def group_members(pgid: int) -> list[psutil.Process]:
    """Live (non-zombie) processes in process group ``pgid``."""
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process)
        except (psutil.Error, OSError):
            continue
    return members


def processes_mentioning(text: str) -> dict[int, str]:
    """Live processes whose command line contains ``text`` (every component names its state folder)."""
    found = {}
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(process.info["cmdline"] or ())
        if text in cmdline and process.info["status"] != psutil.STATUS_ZOMBIE:
            found[process.pid] = cmdline[:200]
    return found


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.rstrip().splitlines()[-lines:])


class ProcessGroup:
    """The processes of one cluster, tracked through pid files in ``state_dir``."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.pid_dir = state_dir / "pids"
        self.log_dir = state_dir / "logs"

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(self, spec: ProcessSpec) -> subprocess.Popen:
        """Start ``spec`` in its own session; fail if a recorded process of that name still runs."""
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.running(spec.name):
            raise ProcessError(f"{spec.name} is already running (pid file {self._pid_file(spec.name)}); "
                               "run `gpufleet cluster down` first")
        with open(self.log_path(spec.name), "wb") as log_file:  # a fresh log per start
            try:
                child = subprocess.Popen(
                    list(spec.argv), stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                    env={**os.environ, **spec.env}, start_new_session=True, close_fds=True,
                )
            except OSError as err:
                raise ProcessError(f"starting {spec.name} ({spec.argv[0]}): {err}") from err
        start_time = _start_time(child.pid) or "0"
        self._pid_file(spec.name).write_text(f"{child.pid} {start_time}\n")
        _CHILDREN[child.pid] = child
        log.info("started name=%s pid=%d log=%s", spec.name, child.pid, self.log_path(spec.name))
        return child

    def _pid_file(self, name: str) -> Path:
        return self.pid_dir / f"{name}.pid"

    def _recorded(self, name: str) -> tuple[int, str] | None:
        try:
            pid_text, start_text = self._pid_file(name).read_text().split()
            return int(pid_text), start_text
        except (OSError, ValueError):
            return None

    def pid(self, name: str) -> int | None:
        """The pid recorded under ``name`` while that process runs, else None."""
        recorded = self._recorded(name)
        return recorded[0] if recorded is not None and self.running(name) else None

    def names(self) -> list[str]:
        """Names with a pid file, oldest first."""
        if not self.pid_dir.is_dir():
            return []
        files = sorted(self.pid_dir.glob("*.pid"), key=lambda p: p.stat().st_mtime_ns)
        return [p.stem for p in files]

    def _child(self, name: str) -> subprocess.Popen | None:
        recorded = self._recorded(name)
        return None if recorded is None else _CHILDREN.get(recorded[0])

    def running(self, name: str) -> bool:
        """Whether the process recorded under ``name`` is alive (and is the one we started)."""
        child = self._child(name)
        if child is not None and child.poll() is not None:
            return False
        recorded = self._recorded(name)
        if recorded is None:
            return False
        pid, start_time = recorded
        return _start_time(pid) == start_time

    def check(self, name: str) -> None:
        """Raise with the end of its log if the process has exited."""
        if not self.running(name):
            child = self._child(name)
            code = f" with exit code {child.returncode}" if child is not None else ""
            raise ProcessError(
                f"{name} exited{code}; end of {self.log_path(name)}:\n{tail(self.log_path(name))}"
            )

    def stop(self, name: str, timeout: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``timeout`` s, remove the pid file.

        Also reaps stragglers: members of the group whose leader already died."""
        recorded = self._recorded(name)
        if recorded is not None:
            pid = recorded[0]
            if self.running(name) or (_start_time(pid) is None and group_members(pid)):
                self._signal_group(pid, signal.SIGTERM)
                deadline = time.monotonic() + timeout
                while self._group_alive(name, pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if self._group_alive(name, pid):
                    log.warning("killing name=%s pid=%d reason=no exit %.0f s after SIGTERM", name, pid, timeout)
                    self._signal_group(pid, signal.SIGKILL)
                    while self._group_alive(name, pid):
                        time.sleep(0.05)
                log.info("stopped name=%s pid=%d", name, pid)
        if recorded is not None:
            child = _CHILDREN.pop(recorded[0], None)
            if child is not None:
                child.poll()
        self._pid_file(name).unlink(missing_ok=True)

    def _group_alive(self, name: str, pid: int) -> bool:
        return self._alive(name, pid) or bool(group_members(pid))

    def _alive(self, name: str, pid: int) -> bool:
        child = _CHILDREN.get(pid)
        if child is not None:
            return child.poll() is None
        return _start_time(pid) is not None

    @staticmethod
    def _signal_group(pid: int, sig: signal.Signals) -> None:
        # The child leads its own process group (start_new_session), so its pgid is its pid.
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass

    def rss_mib(self, name: str) -> float:
        """Resident memory of the process group recorded under ``name``, in MiB (0 if not running)."""
        recorded = self._recorded(name)
        if recorded is None or not self.running(name):
            return 0.0
        total = 0
        for process in group_members(recorded[0]):
            try:
                total += process.memory_info().rss
            except psutil.Error:
                continue
        return total / 2**20

    def stop_all(self, timeout: float = 10.0) -> list[str]:
        """Stop every recorded process, newest first (kwok and the scheduler before etcd)."""
        names = list(reversed(self.names()))
        for name in names:
            self.stop(name, timeout)
        return names
