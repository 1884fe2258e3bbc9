"""Bringing a cluster up with binaries that fail: a clear error, and nothing left running."""

import os
import stat
import sys
from pathlib import Path

import pytest

from gpufleet.scheduler.localcluster import extender
from gpufleet.scheduler.localcluster.binaries import NAMES
from gpufleet.scheduler.localcluster.cluster import ClusterError, ClusterOptions, LocalCluster
from gpufleet.scheduler.localcluster.processes import ProcessError, ProcessGroup, ProcessSpec


def _fake_binaries(directory: Path, script: str) -> Path:
    directory.mkdir()
    for name in NAMES:
        path = directory / name
        path.write_text(f"#!/bin/sh\n{script}\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return directory


def test_a_component_that_dies_at_start_fails_up_with_its_log_and_leaves_nothing(tmp_path):
    bin_dir = _fake_binaries(tmp_path / "bin", 'echo "unknown flag: --frobnicate"; exit 3')
    cluster = LocalCluster(ClusterOptions(state_dir=tmp_path / "state", bin_dir=bin_dir, nodes=1, timeout_s=5))
    with pytest.raises(ProcessError, match="(?s)etcd exited.*unknown flag: --frobnicate"):
        cluster.up()
    assert ProcessGroup(tmp_path / "state").names() == []


def test_a_component_that_never_gets_ready_times_out_and_is_stopped(tmp_path):
    bin_dir = _fake_binaries(tmp_path / "bin", "exec sleep 300")
    cluster = LocalCluster(ClusterOptions(state_dir=tmp_path / "state", bin_dir=bin_dir, nodes=1, timeout_s=0.5))
    with pytest.raises(TimeoutError, match="etcd /health"):
        cluster.up()
    assert ProcessGroup(tmp_path / "state").names() == []


def test_up_refuses_to_start_over_a_running_cluster(tmp_path):
    bin_dir = _fake_binaries(tmp_path / "bin", "exec sleep 300")
    group = ProcessGroup(tmp_path / "state")
    group.start(ProcessSpec("etcd", ["sleep", "300"]))
    try:
        cluster = LocalCluster(ClusterOptions(state_dir=tmp_path / "state", bin_dir=bin_dir, nodes=1))
        with pytest.raises(ClusterError, match="already running.*cluster down"):
            cluster.up()
    finally:
        group.stop_all(timeout=5)


def test_down_without_a_cluster_stops_nothing(tmp_path):
    assert LocalCluster(ClusterOptions(state_dir=tmp_path / "none")).down() == []


def test_unknown_profile_is_refused_with_the_choices(tmp_path):
    cluster = LocalCluster(ClusterOptions(state_dir=tmp_path, profile="huge"))
    with pytest.raises(ClusterError, match="openb or uniform"):
        cluster.node_specs(tmp_path)


def test_the_extender_seam_runs_gpufleet_extender_on_loopback(tmp_path):
    spec = extender.extender_process(18888, tmp_path / "admin.kubeconfig")
    assert spec.argv[:5] == [sys.executable, "-m", "gpufleet.cli", "-v", "extender"]
    assert spec.argv[5:] == ["--listen", "127.0.0.1:18888", "--kubeconfig", str(tmp_path / "admin.kubeconfig"),
                            "--prefix", "/v1/"]
    assert extender.extender_url(18888) == "http://127.0.0.1:18888/v1"
    more = extender.extender_process(18888, tmp_path / "k", ["--workload-mix", "/pods.csv"])
    assert more.argv[-2:] == ["--workload-mix", "/pods.csv"]
    from gpufleet.cli import SUBCOMMANDS

    assert extender.extender_available() == ("extender" in SUBCOMMANDS)


def test_cli_down_reports_nothing_running(tmp_path, capsys):
    from gpufleet.cli import main

    assert main(["cluster", "down", "--state-dir", str(tmp_path)]) == 0
    assert "nothing was running" in capsys.readouterr().out
    assert not os.listdir(tmp_path)
