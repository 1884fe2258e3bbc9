"""Mutual TLS between the real kube-scheduler and the extender (the existing-scheduler overlay's
setup) on a local cluster of its own: kube-scheduler with its client certificate gets its pods placed
and bound by the extender; a client without a certificate, or with another CA's, is refused at the
handshake and changes nothing."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from gpufleet.scheduler.extender.pki import write_pki
from gpufleet.scheduler.localcluster.cluster import ClusterOptions, LocalCluster
from gpufleet.scheduler.localcluster.podloader import PodLoader
from gpufleet.scheduler.localcluster.scrape import scrape

pytestmark = pytest.mark.cluster


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"extender exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"extender not ready at {url}: {log.read_text()[-2000:]}")


def prioritize_without(port: int, ctx: ssl.SSLContext) -> None:
    """A made-up pod through prioritize; the caller expects the handshake to fail first."""
    import http.client

    pod = {"metadata": {"name": "forged", "namespace": "default", "uid": "forged-uid",
                        "annotations": {"gpufleet.io/placement": "fgd"}},
           "spec": {"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "8"}}}]}}
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    try:
        conn.request("POST", "/v1/prioritize", body=json.dumps({"Pod": pod, "NodeNames": ["gpu-node-00000"]}),
                     headers={"Content-Type": "application/json"})
        conn.getresponse().read()
    finally:
        conn.close()


def test_kube_scheduler_with_its_certificate_works_and_others_are_refused(tmp_path: Path, cluster_binaries):
    pki = write_pki(tmp_path / "pki")
    other = write_pki(tmp_path / "other")
    port, metrics_port = free_port(), free_port()
    cluster = LocalCluster(ClusterOptions(
        state_dir=tmp_path / "cluster", profile="uniform", nodes=2, timeout_s=180.0,
        extender_url=f"https://127.0.0.1:{port}/v1",
        extender_tls=(str(pki.client_cert), str(pki.client_key), str(pki.ca))))
    info = cluster.up()
    log = tmp_path / "extender.log"
    proc = None
    try:
        with open(log, "w") as out:
            proc = subprocess.Popen([
                sys.executable, "-m", "gpufleet.cli", "-v", "extender", "--listen", f"127.0.0.1:{port}",
                "--metrics-listen", f"127.0.0.1:{metrics_port}", "--kubeconfig", info.kubeconfig, "--prefix", "/v1/",
                "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key), "--client-ca", str(pki.ca),
            ], stdout=out, stderr=subprocess.STDOUT)
        wait_ready(f"http://127.0.0.1:{metrics_port}/readyz", proc, log)

        no_cert = ssl.create_default_context(cafile=str(pki.ca))
        foreign = ssl.create_default_context(cafile=str(pki.ca))
        foreign.load_cert_chain(str(other.client_cert), str(other.client_key))
        for ctx in (no_cert, foreign):
            with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
                prioritize_without(port, ctx)
        metrics = scrape(f"http://127.0.0.1:{metrics_port}/metrics")
        assert metrics.total("gpufleet_extender_requests_total") == 0  # nothing reached a verb

        with PodLoader(info.kubeconfig) as loader:
            loader.ensure_namespace("mtls")
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": "p-0", "annotations": {"gpufleet.io/placement": "fgd"}},
                   "spec": {"schedulerName": "gpufleet-scheduler", "terminationGracePeriodSeconds": 0,
                            "automountServiceAccountToken": False,
                            "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10", "resources": {
                                "limits": {"gpufleet.io/gpu-milli": "250"}}}]}}
            loader.create("mtls", [pod])
            deadline = time.monotonic() + 60
            bound = None
            while time.monotonic() < deadline and bound is None:
                found = [p for p in loader.list_pods("mtls") if p["spec"].get("nodeName")]
                bound = found[0] if found else None
                time.sleep(0.25)
        assert bound is not None, log.read_text()[-2000:]
        assert bound["metadata"]["annotations"].get("gpufleet.io/gpu-ids")  # the extender's bind, over mTLS
        metrics = scrape(f"http://127.0.0.1:{metrics_port}/metrics")
        assert metrics.total("gpufleet_extender_binds_total", result="bound") == 1
        assert "tls handshake refused" in log.read_text()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
        cluster.down()
