"""The lean HTTP/1.1 client under ``KubernetesAPI`` against a scripted server on loopback: bodies by
Content-Length, chunked and up to the close; kept-alive connections reused; a pooled connection the
server closed retried once on a new one; streams left early not pooled; bad replies and requests refused."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from gpufleet.core.kube.transport import ProtocolError, Transport

Script = Callable[[int, bytes], bytes | None]  # (connection number, request) -> reply bytes, None: close


class ThenClose(bytes):
    """A reply after which the server closes the connection."""


class ScriptedServer:
    """Answers each request with ``script(connection, request)``; records requests per connection."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[tuple[int, bytes]] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn, self.connections), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        reader = conn.makefile("rb")
        with conn:
            while True:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = reader.readline()
                    if not line:
                        return
                    head += line
                length = next((int(h.split(b":")[1]) for h in head.split(b"\r\n")
                               if h.lower().startswith(b"content-length")), 0)
                request = head + reader.read(length)
                self.requests.append((number, request))
                reply = self.script(number, request)
                if reply is None:
                    return
                conn.sendall(reply)
                if isinstance(reply, ThenClose):
                    return

    def close(self) -> None:
        self.listener.close()


def reply(body: bytes = b"{}", status: str = "200 OK", extra: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}Content-Length: {len(body)}\r\n\r\n".encode() + body


def chunked(*pieces: bytes) -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body


@pytest.fixture
def serve() -> Iterator[Callable[[Script], tuple[ScriptedServer, Transport]]]:
    made: list[tuple[ScriptedServer, Transport]] = []

    def make(script: Script) -> tuple[ScriptedServer, Transport]:
        server = ScriptedServer(script)
        made.append((server, Transport("127.0.0.1", server.port, None)))
        return made[-1]

    yield make
    for server, transport in made:
        transport.close()
        server.close()


def test_requests_reuse_one_kept_alive_connection_and_read_every_body_framing(serve):
    replies = [reply(b'{"a":1}'), chunked(b'{"b"', b":2}"), b"HTTP/1.1 100 Continue\r\n\r\n" + reply(b"[]")]
    server, transport = serve(lambda n, req: replies[len(server.requests) - 1])
    bodies = [transport.request("POST", "/x", {"Accept": "application/json"}, b"{}", 5).body for _ in replies]
    assert bodies == [b'{"a":1}', b'{"b":2}', b"[]"]
    assert server.connections == 1
    first = server.requests[0][1]
    assert first.startswith(b"POST /x HTTP/1.1\r\nHost: 127.0.0.1:") and b"Content-Length: 2\r\n\r\n{}" in first


def test_a_reply_that_closes_the_connection_is_read_to_its_end_and_not_reused(serve):
    def script(n: int, request: bytes) -> bytes | None:  # no length: the body runs to the close
        return ThenClose(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it") if n == 1 else reply(b"2")

    server, transport = serve(script)
    assert transport.request("GET", "/a", {}, None, 5).body == b"all of it"
    assert transport.request("GET", "/b", {}, None, 5).body == b"2"
    assert server.connections == 2


def test_a_pooled_connection_the_server_closed_is_retried_once_on_a_new_one(serve):
    def script(n: int, request: bytes) -> bytes | None:
        if n == 1 and b"/second" in request:
            return None  # the server dropped the kept-alive connection: nothing was read there
        return reply(b"ok")

    server, transport = serve(script)
    assert transport.request("GET", "/first", {}, None, 5).body == b"ok"
    assert transport.request("POST", "/second", {}, b"{}", 5).body == b"ok"
    assert server.connections == 2 and [n for n, _ in server.requests] == [1, 1, 2]


def test_idle_connections_the_server_closed_are_dropped_not_reused(serve):
    server, transport = serve(lambda n, req: ThenClose(reply(b"ok")) if n <= 2 else reply(b"fresh"))
    gate = threading.Barrier(2)

    def concurrent() -> bytes:
        gate.wait()
        return transport.request("GET", "/a", {}, None, 5).body

    with ThreadPoolExecutor(2) as pool:  # two connections at once, both pooled, both closed by the server
        assert list(pool.map(lambda _: concurrent(), range(2))) == [b"ok", b"ok"]
    time.sleep(0.2)
    assert len(transport._idle) == 2
    assert transport.request("POST", "/b", {}, b"{}", 5).body == b"fresh"  # after an idle spell: both dropped
    assert server.connections == 3


def test_a_new_connection_closed_before_replying_is_an_error_not_a_retry(serve):
    server, transport = serve(lambda n, req: None)
    with pytest.raises(ProtocolError):
        transport.request("GET", "/x", {}, None, 5)
    assert server.connections == 1


def test_a_stream_yields_chunks_and_one_left_early_is_closed_not_pooled(serve):
    server, transport = serve(lambda n, req: chunked(b"one\n", b"two\n") if b"/watch" in req else reply(b"x"))
    status, chunks = transport.stream("GET", "/watch", {}, 5)
    assert status.status == 200 and list(chunks) == [b"one\n", b"two\n"]
    transport.request("GET", "/after", {}, None, 5)
    assert server.connections == 1  # read to its end: pooled and reused
    _, chunks = transport.stream("GET", "/watch", {}, 5)
    assert next(chunks) == b"one\n"
    chunks.close()
    transport.request("GET", "/after", {}, None, 5)
    assert server.connections == 2


def test_a_stream_that_fails_returns_the_whole_error_body(serve):
    _, transport = serve(lambda n, req: reply(b'{"code":410}', status="410 Gone"))
    status, chunks = transport.stream("GET", "/watch", {}, 5)
    assert (status.status, status.reason, status.body, list(chunks)) == (410, "Gone", b'{"code":410}', [])


@pytest.mark.parametrize("bad", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"SSH-2.0-OpenSSH\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
])
def test_a_malformed_reply_is_a_protocol_error(serve, bad):
    _, transport = serve(lambda n, req: ThenClose(bad))
    with pytest.raises(ProtocolError):
        transport.request("GET", "/x", {}, None, 5)


@pytest.mark.parametrize(("target", "headers"), [("/a b", {}), ("/a\r\nX-Evil: 1", {}), ("/a", {"X": "1\r\nX-Evil: 1"})])
def test_a_request_that_would_smuggle_a_line_is_refused_before_sending(serve, target, headers):
    server, transport = serve(lambda n, req: reply())
    with pytest.raises(ValueError):
        transport.request("GET", target, headers, None, 5)
    assert server.requests == []
