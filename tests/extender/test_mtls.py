"""Mutual TLS on the verbs: only clients with a certificate from the configured CA get an answer; the
others are refused at the handshake, before any request is read or any state changes."""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpufleet.cli import main as cli_main
from gpufleet.scheduler.extender.pki import PkiOptions, write_pki
from gpufleet.scheduler.extender.server import ExtenderServer, ServerConfig, ServerError, TLSFiles

from . import payloads as P
from .conftest import Rig, eight_gpu_nodes, make_rig

FGD = {"gpufleet.io/placement": "fgd"}
NAMES = ["gpu-000", "gpu-001"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return write_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory):
    return write_pki(tmp_path_factory.mktemp("other"))


@pytest.fixture
def served(pki) -> Iterator[tuple[Rig, int]]:
    rig = make_rig(eight_gpu_nodes(2))
    tls = TLSFiles(str(pki.server_cert), str(pki.server_key), str(pki.ca))
    server = ExtenderServer(rig.extender, rig.metrics, "127.0.0.1", 0, ServerConfig(tls=tls, handshake_timeout_s=5))
    server.start()
    try:
        yield rig, server.port
    finally:
        server.stop()


def context(pki, client=None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if client is not None:
        ctx.load_cert_chain(str(client.client_cert), str(client.client_key))
    return ctx


def prioritize(port: int, ctx: ssl.SSLContext) -> tuple[int, object]:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    try:
        body = json.dumps(P.names_args(P.pod("p-0", gpus=1, annotations=FGD), NAMES)).encode()
        conn.request("POST", "/v1/prioritize", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_a_client_with_a_certificate_from_the_ca_is_answered(served, pki):
    rig, port = served
    status, scores = prioritize(port, context(pki, client=pki))
    assert status == 200 and {h["Host"] for h in scores} == set(NAMES)
    assert rig.state.ledger.assumed_count == 1


@pytest.mark.parametrize("who", ["no certificate", "another CA's certificate"])
def test_other_clients_are_refused_before_any_state_changes(served, pki, other_pki, who):
    rig, port = served
    ctx = context(pki, client=None if who == "no certificate" else other_pki)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        prioritize(port, ctx)
    assert rig.state.ledger.assumed_count == 0 and len(rig.state.ledger) == 0


def test_plain_http_is_refused(served):
    rig, port = served
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
        conn.request("POST", "/v1/prioritize", body=b"{}")
        conn.getresponse().read()
    conn.close()
    assert len(rig.state.ledger) == 0


def test_the_server_certificate_names_the_service_and_loopback(pki):
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(pki.server_cert.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "gpufleet-extender.gpufleet-system.svc" in names.get_values_for_type(x509.DNSName)
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {"127.0.0.1"}
    assert PkiOptions().server_names()[0] == "gpufleet-extender"


def test_unreadable_tls_files_are_a_clear_error(tmp_path):
    with pytest.raises(ServerError, match="loading TLS files"):
        TLSFiles(str(tmp_path / "nope.crt"), str(tmp_path / "nope.key"), str(tmp_path / "ca.crt")).context()


def test_gpufleet_certs_writes_files_and_secrets_and_keeps_an_existing_ca(tmp_path: Path, capsys):
    import yaml

    assert cli_main(["certs", "--out", str(tmp_path)]) == 0
    secrets = list(yaml.safe_load_all((tmp_path / "secrets.yaml").read_text()))
    assert [(s["metadata"]["name"], s["metadata"]["namespace"]) for s in secrets] == [
        ("gpufleet-extender-tls", "gpufleet-system"), ("gpufleet-extender-client", "kube-system")]
    assert all(set(s["data"]) == {"tls.crt", "tls.key", "ca.crt"} for s in secrets)
    assert (tmp_path / "ca.key").stat().st_mode & 0o077 == 0
    assert cli_main(["certs", "--out", str(tmp_path)]) == 2
    assert "--force" in capsys.readouterr().err


def test_the_extender_cli_wants_all_three_tls_files(capsys):
    assert cli_main(["extender", "--standalone", "--tls-cert", "x.crt"]) == 2
    assert "go together" in capsys.readouterr().err
