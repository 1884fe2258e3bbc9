"""``gpufleet extender`` starts, serves, and stops on SIGTERM; bad options and credentials fail fast."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpufleet.cli import parse_args

from . import payloads as P
from .conftest import Client

REPO = Path(__file__).resolve().parents[2]


def test_the_extender_subcommand_is_registered_with_the_local_cluster_contract():
    args = parse_args(["extender", "--listen", "127.0.0.1:9", "--kubeconfig", "/k"])
    assert (args.listen, args.kubeconfig, args.prefix, args.standalone) == ("127.0.0.1:9", "/k", "/v1/", False)


def test_a_standalone_extender_serves_full_node_requests_and_stops_on_sigterm(tmp_path):
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen([sys.executable, "-m", "gpufleet.cli", "extender", "--standalone", "--listen",
                             "127.0.0.1:0", "--ready-file", str(ready)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (ready.exists() and ready.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()
            time.sleep(0.05)
        client = Client(json.loads(ready.read_text())["port"])
        try:
            assert client.request("GET", "/readyz")[0] == 200
            pod = P.pod(gpus=1, annotations={"gpufleet.io/placement": "fgd"})
            status, reply = client.post("prioritize", P.nodes_args(pod, [P.node("a"), P.node("b")]))
            assert status == 200 and sorted(h["Score"] for h in reply) == [9, 10]
            status, reply = client.post("bind", P.binding_args(pod, "a"))
            assert status == 200 and "standalone" in reply["Error"]
        finally:
            client.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


@pytest.mark.parametrize(("argv", "code", "message"), [
    (["--listen", "nonsense"], 2, "expected HOST:PORT"),
    (["--standalone", "--kubeconfig", "/x"], 2, "exclude each other"),
    (["--assume-ttl", "0", "--standalone"], 2, "must be > 0"),
    (["--kubeconfig", "/nonexistent/kubeconfig"], 3, "loading Kubernetes credentials"),
    (["--standalone", "--workload-mix", "/nonexistent/pods.csv"], 2, "--workload-mix"),
])
def test_bad_options_and_missing_credentials_exit_with_a_message(argv, code, message, capsys):
    from gpufleet.cli import main

    assert main(["extender", "--listen", "127.0.0.1:0", *argv] if "--listen" not in argv else
                ["extender", *argv]) == code
    assert message in capsys.readouterr().err
