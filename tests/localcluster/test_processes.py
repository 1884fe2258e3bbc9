"""Processes: started in their own group, recorded in pid files, and stopped with everything they forked."""

import os
import time

import pytest

from gpufleet.scheduler.localcluster.processes import ProcessError, ProcessGroup, ProcessSpec, group_members


def test_stop_all_leaves_no_process_behind_including_forked_children(tmp_path):
    group = ProcessGroup(tmp_path)
    child = group.start(ProcessSpec("forker", ["bash", "-c", "sleep 300 & sleep 300 & wait"]))
    deadline = time.monotonic() + 5
    while len(group_members(child.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(group_members(child.pid)) == 3
    assert group.stop_all(timeout=5) == ["forker"]
    assert group_members(child.pid) == []
    assert not (tmp_path / "pids" / "forker.pid").exists()


def test_another_process_group_object_can_stop_what_a_first_one_started(tmp_path):
    first = ProcessGroup(tmp_path)
    child = first.start(ProcessSpec("sleeper", ["sleep", "300"]))
    second = ProcessGroup(tmp_path)
    assert second.running("sleeper")
    second.stop("sleeper", timeout=5)
    child.wait(timeout=5)  # reap it: it was this test's child
    assert not first.running("sleeper")


def test_a_stale_pid_file_is_not_mistaken_for_a_running_process(tmp_path):
    group = ProcessGroup(tmp_path)
    (tmp_path / "pids").mkdir()
    (tmp_path / "pids" / "ghost.pid").write_text(f"{os.getpid()} 1\n")  # our pid, wrong start time
    assert not group.running("ghost")
    group.stop_all(timeout=1)
    assert group.names() == []


def test_a_process_that_dies_at_start_is_reported_with_its_log(tmp_path):
    group = ProcessGroup(tmp_path)
    child = group.start(ProcessSpec("crasher", ["bash", "-c", "echo 'bad flag --foo'; exit 3"]))
    child.wait(timeout=5)
    with pytest.raises(ProcessError, match="(?s)exit code 3.*bad flag --foo"):
        group.check("crasher")
    group.stop_all()


def test_starting_a_name_that_still_runs_is_refused(tmp_path):
    group = ProcessGroup(tmp_path)
    group.start(ProcessSpec("once", ["sleep", "300"]))
    try:
        with pytest.raises(ProcessError, match="already running"):
            group.start(ProcessSpec("once", ["sleep", "300"]))
    finally:
        group.stop_all(timeout=5)
