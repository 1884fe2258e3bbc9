"""The server's own reading of request lines and headers: what kube-scheduler's Go client sends is
understood, anything odd is refused with a 4xx (or left to the stdlib parser), and the connection
is kept or closed as HTTP/1.x says."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from gpufleet.scheduler.extender.server import MAX_HEADERS, ExtenderServer, ServerConfig

from . import payloads as P
from .conftest import Client, eight_gpu_nodes, make_rig

BODY = json.dumps(P.names_args(P.pod(gpus=1, annotations={"gpufleet.io/placement": "fgd"}),
                               ["gpu-000", "gpu-001"])).encode()


def exchange(port: int, data: bytes) -> bytes:
    """Send ``data``, half-close, and read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(data)
        raw.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := raw.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def post(headers: str, body: bytes = BODY, version: str = "HTTP/1.1") -> bytes:
    return (f"POST /v1/prioritize {version}\r\n{headers}Content-Length: {len(body)}\r\n\r\n").encode() + body


def test_header_names_are_case_insensitive_as_go_and_others_write_them(live):
    _, client = live
    reply = exchange(client.port, post("host: x\r\ncontent-type: application/json\r\n").replace(
        b"Content-Length", b"content-LENGTH"))
    assert reply.startswith(b"HTTP/1.1 200")
    assert len(json.loads(reply.partition(b"\r\n\r\n")[2])) == 2


def test_two_requests_on_one_kept_alive_connection_both_get_answers(live):
    _, client = live
    reply = exchange(client.port, post("Host: x\r\n") + post("Host: x\r\nConnection: close\r\n"))
    assert reply.count(b"HTTP/1.1 200") == 2


def test_connection_close_and_http_1_0_end_the_connection_after_the_reply(live):
    _, client = live
    for request in (post("Host: x\r\nConnection: close\r\n"), post("Host: x\r\n", version="HTTP/1.0")):
        with socket.create_connection(("127.0.0.1", client.port), timeout=5) as raw:
            raw.sendall(request)
            data = b""
            while chunk := raw.recv(65536):  # returns b"" only because the server closed
                data += chunk
        assert data.startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize(("headers", "status"), [
    ("Host: x\r\n folded: continuation\r\n", b"400"),
    ("Host: x\r\nno colon here\r\n", b"400"),
    ("Host: x\r\n: empty name\r\n", b"400"),
    ("".join(f"X-{i}: y\r\n" for i in range(MAX_HEADERS + 1)), b"431"),
    ("X-Long: " + "y" * 70_000 + "\r\n", b"431"),
])
def test_malformed_headers_get_a_4xx_and_the_server_keeps_serving(live, headers, status):
    _, client = live
    assert exchange(client.port, post(headers)).startswith(b"HTTP/1.1 " + status)
    assert client.post("prioritize", json.loads(BODY))[0] == 200


def test_the_first_of_repeated_headers_counts(live):
    _, client = live
    request = (b"POST /v1/prioritize HTTP/1.1\r\nHost: x\r\nContent-Length: " + str(len(BODY)).encode()
               + b"\r\nContent-Length: 5\r\n\r\n" + BODY)
    assert exchange(client.port, request).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("line", [b"POST /v1/prioritize HTTP/2.0", b"POST /v1/prioritize HTTP/1.1 extra",
                                  b"POST /v1/prioritize FTP/1.0"])
def test_other_request_lines_are_answered_by_the_stdlib_parser(live, line):
    _, client = live
    reply = exchange(client.port, line + b"\r\nHost: x\r\n\r\n")
    assert b"Error code: 400" in reply or b"Error code: 505" in reply  # its HTML error page
    assert client.post("prioritize", json.loads(BODY))[0] == 200


def test_a_double_slash_path_is_reduced_to_one(live):
    _, client = live
    reply = exchange(client.port, post("Host: x\r\n").replace(b"POST /v1/", b"POST //v1/", 1))
    assert reply.startswith(b"HTTP/1.1 200")


def test_replies_carry_a_date_header(live):
    _, client = live
    head = exchange(client.port, post("Host: x\r\n")).partition(b"\r\n\r\n")[0]
    assert b"\r\nDate: " in head and b" GMT" in head


class GatedBinder:
    """A binder whose Bindings wait on ``gate``; records how many were in flight at most."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.in_flight = self.most = self.bound = 0

    def bind(self, namespace: str, name: str, uid: str, node: str, annotations: dict[str, str]) -> None:
        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        self.gate.wait(10)
        with self.lock:
            self.in_flight -= 1
            self.bound += 1

    def get_pod(self, namespace: str, name: str) -> dict:
        return P.pod(name, namespace)


def test_binds_in_flight_are_capped_and_the_rest_wait_their_turn():
    rig = make_rig(eight_gpu_nodes(4))
    binder = GatedBinder()
    rig.extender.binder = binder
    server = ExtenderServer(rig.extender, rig.metrics, "127.0.0.1", 0, ServerConfig(max_binds_in_flight=2))
    server.start()
    pods = [P.pod(f"p-{i}") for i in range(6)]
    results: list[int] = []

    def bind(p: dict) -> None:
        client = Client(server.port)
        try:
            results.append(client.post("bind", P.binding_args(p, "gpu-000"))[0])
        finally:
            client.close()

    threads = [threading.Thread(target=bind, args=(p,)) for p in pods]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 5
        while binder.in_flight < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # the other four have arrived by now and must be waiting
        assert binder.in_flight == 2
        binder.gate.set()
        for t in threads:
            t.join(10)
    finally:
        server.stop()
    assert results == [200] * 6 and binder.bound == 6 and binder.most == 2
