"""Bad input gets a 4xx with a JSON error and the server keeps serving; health, readiness, metrics."""

from __future__ import annotations

import json
import socket
import time

import pytest

from gpufleet.scheduler.extender.server import ExtenderServer, ServerConfig

from . import payloads as P
from .conftest import Client, make_rig

GOOD = P.names_args(P.pod(gpus=1, annotations={"gpufleet.io/placement": "fgd"}), ["gpu-000", "gpu-001"])


def _still_serving(client: Client) -> None:
    status, reply = client.post("prioritize", GOOD)
    assert status == 200 and len(reply) == 2


@pytest.mark.parametrize(("verb", "body", "fragment"), [
    ("prioritize", b"{not json", "not JSON"),
    ("prioritize", b"\xff\xfe\x00", "not JSON"),
    ("prioritize", b"[1, 2, 3]", "expected a JSON object"),
    ("prioritize", b"null", "expected a JSON object"),
    ("prioritize", b"{}", "Pod: required"),
    ("filter", json.dumps({"Pod": P.pod(), "NodeNames": "gpu-000"}).encode(), "NodeNames: expected an array"),
    ("filter", json.dumps({"Pod": P.pod(), "NodeNames": [1, None]}).encode(), "NodeNames[0]: expected a string"),
    ("filter", json.dumps({"Pod": "a pod", "NodeNames": []}).encode(), "Pod: expected an object"),
    ("prioritize", json.dumps({"Pod": {"spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "x"}}}]}},
                               "NodeNames": []}).encode(), "Pod.spec.containers[0].resources.limits.nvidia.com/gpu"),
    ("prioritize", json.dumps({"Pod": P.pod(), "Nodes": {"items": [7]}, "NodeNames": None}).encode(),
     "Nodes.items[0]: expected an object"),
    ("bind", b'{"PodName": "p"}', "PodNamespace: must be a non-empty string"),
    ("bind", b'{"PodName": 1, "PodNamespace": "ns", "Node": "n"}', "PodName: expected a string"),
    ("preempt", b'{"Pod": {}, "NodeNameToMetaVictims": {"n": {"Pods": [{"UID": 5}]}}}', "UID: expected a string"),
    ("preempt", b'{"Pod": {}, "NodeNameToMetaVictims": {"n": {"NumPDBViolations": -1}}}', "NumPDBViolations"),
    ("prioritize", b"[" * 100_000 + b"]" * 100_000, ""),
])
def test_malformed_requests_get_400_with_a_json_error_and_the_server_stays_up(live, verb, body, fragment):
    _, client = live
    status, data = client.request("POST", f"/v1/{verb}", body)
    assert status == 400
    error = json.loads(data)["Error"]
    assert fragment in error
    _still_serving(client)


@pytest.mark.parametrize(("method", "path", "status"), [
    ("POST", "/v1/schedule", 404), ("POST", "/filter", 404), ("GET", "/v1/filter", 405),
    ("PUT", "/v1/filter", 405), ("DELETE", "/v1/bind", 405), ("GET", "/nothing", 404),
])
def test_unknown_paths_and_methods_get_4xx_json(live, method, path, status):
    _, client = live
    got, data = client.request(method, path, b"{}" if method != "GET" else None)
    assert got == status and "Error" in json.loads(data)
    _still_serving(client)


def test_an_oversized_body_gets_413_without_being_read(live):
    _, client = live
    with socket.create_connection(("127.0.0.1", client.port), timeout=5) as raw:
        raw.sendall(b"POST /v1/filter HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n{")
        reply = _read_all(raw)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413") and b"Connection: close" in head
    assert "over the limit" in json.loads(body)["Error"]
    _still_serving(client)


def _read_all(raw: socket.socket) -> bytes:
    chunks = []
    while chunk := raw.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_missing_content_length_or_chunked_body_gets_411(live):
    _, client = live
    with socket.create_connection(("127.0.0.1", client.port), timeout=5) as raw:
        raw.sendall(b"POST /v1/filter HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
        assert raw.recv(4096).startswith(b"HTTP/1.1 411")
    with socket.create_connection(("127.0.0.1", client.port), timeout=5) as raw:
        raw.sendall(b"POST /v1/filter HTTP/1.1\r\nHost: x\r\n\r\n")
        assert raw.recv(4096).startswith(b"HTTP/1.1 411")
    _still_serving(client)


def test_garbage_on_the_socket_does_not_stop_the_server(live):
    _, client = live
    for junk in (b"\x00\x01\x02\r\n\r\n", b"GET\r\n\r\n", b"POST /v1/filter HTTP/1.1\r\nContent-Length: 10\r\n\r\n{",
                 b"POST /v1/filter HTTP/1.1\r\nContent-Length: nope\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", client.port), timeout=5) as raw:
            raw.sendall(junk)
            raw.shutdown(socket.SHUT_WR)
            raw.recv(4096)
    _still_serving(client)


def test_health_readiness_and_metrics(live):
    rig, client = live
    client.post("prioritize", GOOD)
    assert client.request("GET", "/healthz") == (200, b'{"status":"ok"}')
    status, data = client.request("GET", "/readyz")
    assert status == 200 and json.loads(data) == {"status": "ready", "synced": True, "nodes": 4}
    status, data = client.request("GET", "/metrics")
    text = data.decode()
    assert status == 200
    for series in ('gpufleet_extender_request_duration_seconds_bucket{le="0.001",verb="prioritize"}',
                   'gpufleet_extender_requests_total{code="200",verb="prioritize"} 1.0',
                   'gpufleet_extender_decisions_total{policy="fgd"} 1.0',
                   f'gpufleet_extender_cluster_gpus{{modelName="{P.A100}"}} 32.0',
                   f'gpufleet_extender_cluster_free_gpus{{modelName="{P.A100}"}} 31.0',
                   'gpufleet_extender_cluster_fragmentation_gpus{modelName=',
                   "gpufleet_extender_assumed_placements 1.0", "gpufleet_extender_cache_age_seconds",
                   "gpufleet_extender_cache_synced 1.0"):
        assert series in text, series
    rig.state._synced.clear()
    status, data = client.request("GET", "/readyz")
    assert status == 503 and json.loads(data)["status"] == "not ready"


def test_cpu_is_counted_per_verb_and_for_the_connection_apart(live):
    rig, client = live
    cpu = rig.metrics.registry.get_sample_value
    other = Client(client.port)
    assert other.post("filter", GOOD)[0] == 200 and other.post("prioritize", GOOD)[0] == 200
    other.close()
    deadline = time.monotonic() + 5
    while not cpu("gpufleet_extender_cpu_seconds_total", {"part": "connection"}) and time.monotonic() < deadline:
        time.sleep(0.01)  # counted when the connection's thread ends
    for part in ("filter", "prioritize", "connection"):
        assert cpu("gpufleet_extender_cpu_seconds_total", {"part": part}) > 0, part
    assert cpu("gpufleet_extender_cpu_seconds_total", {"part": "bind"}) == 0


def test_a_connection_thread_is_kept_for_the_next_connection_and_concurrent_ones_get_their_own(rig):
    server = ExtenderServer(rig.extender, rig.metrics, "127.0.0.1", 0)
    server.start()
    workers = server._server.workers
    try:
        for _ in range(3):  # one after another, as kube-scheduler opens one for most binds
            client = Client(server.port)
            assert client.request("GET", "/healthz")[0] == 200
            client.close()
            deadline = time.monotonic() + 5
            while workers._waiting < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
        assert workers._threads == 1
        clients = [Client(server.port) for _ in range(3)]  # all open at once
        assert all(c.request("GET", "/healthz")[0] == 200 for c in clients)
        assert workers._threads == 3
        for c in clients:
            c.close()
    finally:
        server.stop()


def test_a_metrics_only_listener_serves_no_verbs():
    rig = make_rig([P.node("gpu-000")])
    server = ExtenderServer(rig.extender, rig.metrics, "127.0.0.1", 0, ServerConfig(verbs=False))
    server.start()
    client = Client(server.port)
    try:
        assert client.request("GET", "/healthz")[0] == 200
        assert client.request("GET", "/metrics")[0] == 200
        assert client.request("POST", "/v1/prioritize", json.dumps(GOOD).encode())[0] == 404
    finally:
        client.close()
        server.stop()


def test_a_custom_prefix_moves_the_verbs():
    rig = make_rig([P.node("gpu-000")])
    server = ExtenderServer(rig.extender, rig.metrics, "127.0.0.1", 0, ServerConfig(prefix="gpufleet/scheduler"))
    server.start()
    client = Client(server.port)
    try:
        assert client.request("POST", "/gpufleet/scheduler/filter", json.dumps(GOOD).encode())[0] == 200
        assert client.request("POST", "/v1/filter", json.dumps(GOOD).encode())[0] == 404
    finally:
        client.close()
        server.stop()


def test_an_internal_error_is_a_500_that_leaves_the_server_up():
    rig = make_rig([P.node("gpu-000")])
    server = ExtenderServer(rig.extender, rig.metrics, "127.0.0.1", 0)
    server._server.verbs["prioritize"].run = _broken
    server.start()
    client = Client(server.port)
    try:
        status, data = client.request("POST", "/v1/prioritize", json.dumps(GOOD).encode())
        assert status == 500 and "internal error" in json.loads(data)["Error"]
        assert client.request("POST", "/v1/filter", json.dumps(GOOD).encode())[0] == 200
    finally:
        client.close()
        server.stop()


def _broken(args):
    raise RuntimeError("a bug")
