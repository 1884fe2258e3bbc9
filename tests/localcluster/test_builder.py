"""Missing control-plane binaries are built with build.sh's output streamed; Go is found where its
installers put it; a missing Go or a failing build is a clear error."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gpufleet.scheduler.localcluster.binaries import NAMES
from gpufleet.scheduler.localcluster.builder import BUILD_SCRIPT, BuildError, ensure_binaries


def _executable(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture()
def fresh_machine(tmp_path, monkeypatch) -> Path:
    """A repo with a fake build.sh, no binaries, and a PATH and HOME without Go."""
    monkeypatch.setenv("GPUFLEET_BIN_DIR", str(tmp_path / "bin"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setattr("gpufleet.scheduler.localcluster.builder.SYSTEM_GO_DIRS", ())
    repo = tmp_path / "repo"
    makes = " ".join(f'"$GPUFLEET_BIN_DIR/{n}"' for n in NAMES)
    _executable(repo / BUILD_SCRIPT, f'#!/bin/sh\necho "building etcd"\nmkdir -p "$GPUFLEET_BIN_DIR"\n'
                                     f'for f in {makes}; do printf "#!/bin/sh\\n" > "$f"; chmod +x "$f"; done\n'
                                     'echo "built"\n')
    return repo


def test_binaries_already_there_are_used_without_building(fresh_machine, tmp_path):
    for name in NAMES:
        _executable(tmp_path / "bin" / name, "#!/bin/sh\n")
    lines = []
    assert ensure_binaries(fresh_machine, lines.append).directory == (tmp_path / "bin").resolve()
    assert lines == []


def test_without_go_the_error_says_how_to_install_it(fresh_machine, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    with pytest.raises(BuildError, match="needs Go"):
        ensure_binaries(fresh_machine, lambda line: None)


def test_go_in_its_installer_folder_is_found_and_the_build_is_streamed(fresh_machine, tmp_path):
    _executable(tmp_path / "home" / "go" / "bin" / "go", "#!/bin/sh\n")
    lines = []
    binaries = ensure_binaries(fresh_machine, lines.append)
    assert binaries.kube_scheduler == (tmp_path / "bin" / "kube-scheduler").resolve()
    assert any("building etcd" in line for line in lines) and "binaries built in" in lines[-1]


def test_a_failing_build_is_an_error_with_its_exit_code(fresh_machine, tmp_path):
    _executable(tmp_path / "home" / "go" / "bin" / "go", "#!/bin/sh\n")
    _executable(fresh_machine / BUILD_SCRIPT, "#!/bin/sh\necho 'go: module lookup disabled'\nexit 7\n")
    lines = []
    with pytest.raises(BuildError, match="exit 7"):
        ensure_binaries(fresh_machine, lines.append)
    assert any("module lookup disabled" in line for line in lines)


def test_a_build_that_hangs_is_stopped_at_its_deadline(fresh_machine, tmp_path):
    _executable(tmp_path / "home" / "go" / "bin" / "go", "#!/bin/sh\n")
    _executable(fresh_machine / BUILD_SCRIPT, "#!/bin/sh\nsleep 60\necho never\n")
    with pytest.raises(BuildError, match="took more than"):
        ensure_binaries(fresh_machine, lambda line: None, timeout_s=0.5, heartbeat_s=0.1)
