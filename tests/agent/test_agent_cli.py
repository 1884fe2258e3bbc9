"""``gpufleet agent``: argument handling, exit statuses, and one real process end to end."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pynvml
import pytest
import yaml

from gpufleet.autoscaler.agent import cli
from gpufleet.autoscaler.gpu.script import parse_scenario
from gpufleet.proto.gpufleet.v1 import agent_pb2, agent_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_simulate_takes_an_optional_script() -> None:
    assert parse().simulate is None
    assert parse("--simulate").simulate == "<builtin>"
    assert parse("--simulate", "--listen", "127.0.0.1:0").simulate == "<builtin>"
    assert parse("--simulate", "gpus.yaml").simulate == "gpus.yaml"


def test_the_agent_is_registered_as_a_gpufleet_subcommand() -> None:
    from gpufleet.cli import SUBCOMMANDS

    assert SUBCOMMANDS["agent"][0] == "gpufleet.autoscaler.agent.cli"


def test_without_a_driver_and_without_simulate_the_agent_exits_3_saying_why(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_library() -> None:
        raise pynvml.NVMLError_LibraryNotFound()

    monkeypatch.setattr(pynvml, "nvmlInit", no_library)
    assert cli.run(parse("--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0")) == 3
    err = capsys.readouterr().err
    assert "initialising NVML" in err and "--simulate" in err


def test_an_invalid_script_exits_2_listing_every_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "bad.yaml"
    script.write_text(yaml.safe_dump({"gpus": [{"preset": "nope"}, {"phases": [{"seconds": 0}]}]}))
    assert cli.run(parse("--simulate", str(script))) == 2
    err = capsys.readouterr().err
    assert "gpus[0].preset: must be one of" in err and "gpus[1].phases[0].seconds: must be > 0" in err


@pytest.mark.parametrize(
    "argv",
    [("--listen", "nowhere"), ("--metrics-listen", "1.2.3.4:99999"), ("--interval", "0"), ("--history", "0")],
)
def test_invalid_settings_exit_2(argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(parse("--simulate", *argv)) == 2
    assert "invalid settings" in capsys.readouterr().err


def test_a_port_in_use_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert cli.run(parse("--simulate", "--listen", "127.0.0.1:0", "--metrics-listen", f"127.0.0.1:{port}")) == 2
    assert "listening for HTTP" in capsys.readouterr().err


def test_the_builtin_script_can_be_printed_and_played_back(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(parse("--print-builtin-script")) == 0
    assert len(parse_scenario(yaml.safe_load(capsys.readouterr().out)).gpus) == 8


def test_a_real_agent_process_streams_samples_serves_metrics_and_stops_on_sigterm(tmp_path: Path) -> None:
    script = tmp_path / "two.yaml"
    script.write_text(yaml.safe_dump({
        "gpus": [{"preset": "busy", "model": "NVIDIA H100 80GB HBM3"}, {"preset": "held-idle"}],
        "pods": [{"namespace": "ml", "pod": "p", "gpus": [1]}],
    }))
    ready = tmp_path / "ready.json"
    log = (tmp_path / "agent.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpufleet.autoscaler.agent", "--simulate", str(script), "--listen", "127.0.0.1:0",
         "--metrics-listen", "127.0.0.1:0", "--interval", "0.05", "--node-name", "proc-node",
         "--ready-file", str(ready)],
        cwd=ROOT, stderr=log, env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() or not ready.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "agent.log").read_text()
            time.sleep(0.05)
        ports = json.loads(ready.read_text())
        with grpc.insecure_channel(f"127.0.0.1:{ports['grpc_port']}") as channel:
            stream = agent_pb2_grpc.GpuAgentStub(channel).StreamSamples(agent_pb2.StreamSamplesRequest(), timeout=10)
            batch = next(stream)
            stream.cancel()
        assert batch.node_name == "proc-node" and [g.index for g in batch.gpus] == [0, 1]
        assert [p.pod for p in batch.gpus[1].pods] == ["p"]
        text = urllib.request.urlopen(f"http://127.0.0.1:{ports['metrics_port']}/metrics", timeout=5).read().decode()
        assert 'modelName="NVIDIA H100 80GB HBM3"' in text
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(15)
        log.close()
    assert code == 0, (tmp_path / "agent.log").read_text()
