"""A lean HTTP/1.1 client for the API server: kept-alive connections (TLS with the CA, client certificate
and server name the ``kubernetes`` client's configuration loaded), one request at a time on each, in a
last-in-first-out pool shared by threads.

``KubernetesAPI`` sends its requests and watches through it. Per Binding the extender's thread spent
570-760 us of CPU in urllib3 and http.client (header objects, the email parser, retry and timeout
objects) and 160-190 us here (bench/kube_client_cost.py). It speaks what the API server answers:
bodies with Content-Length, chunked or up to the close; keep-alive unless the reply says close. The
API server closes connections idle for 90 s: a pooled one is checked when taken. Proxies are not
spoken: ``Transport.for_configuration`` returns None for a configuration with one, and
``KubernetesAPI`` keeps urllib3 there.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

MAX_LINE = 65536
MAX_HEADERS = 100
#: Idle connections kept; more at once (a burst of binds) are closed after their request.
MAX_IDLE = 256
_READ_BUFFER = 65536


class ProtocolError(OSError):
    """The reply is not HTTP/1.x as this client reads it."""


class _Closed(ProtocolError):
    """The server closed the connection before the reply's first byte."""


@dataclass(frozen=True)
class Reply:
    status: int
    reason: str
    body: bytes


class _Connection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = sock.makefile("rb", buffering=_READ_BUFFER)

    def dropped(self) -> bool:
        """An idle connection the server closed (or sent something unasked on): not to be reused."""
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        return bool(poller.poll(0))

    def close(self) -> None:
        for part in (self.reader, self.sock):
            try:
                part.close()
            except OSError:
                pass

    def _line(self) -> bytes:
        line = self.reader.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise ProtocolError("reply line too long")
        return line

    def head(self) -> tuple[int, str, int | None, bool, bool]:
        """Status, reason, Content-Length (None: none given), chunked, keep-alive; 1xx replies skipped."""
        while True:
            line = self._line()
            if not line:
                raise _Closed("the server closed the connection before replying")
            version, _, rest = line.decode("iso-8859-1").rstrip("\r\n").partition(" ")
            code, _, reason = rest.partition(" ")
            if version not in ("HTTP/1.1", "HTTP/1.0") or not code.isdigit():
                raise ProtocolError(f"not an HTTP/1.x status line: {line[:80]!r}")
            length, chunked, keep = None, False, version == "HTTP/1.1"
            for _ in range(MAX_HEADERS + 1):
                header = self._line()
                if header in (b"\r\n", b"\n"):
                    break
                if not header:
                    raise ProtocolError("the connection closed inside the reply's headers")
                name, colon, value = header.decode("iso-8859-1").partition(":")
                if not colon:
                    raise ProtocolError(f"bad header line {header[:80]!r}")
                name, value = name.strip().lower(), value.strip()
                if name == "content-length":
                    if not value.isdigit():
                        raise ProtocolError(f"bad Content-Length {value!r}")
                    length = int(value)
                elif name == "transfer-encoding":
                    chunked = value.lower().endswith("chunked")
                elif name == "connection":
                    keep = value.lower() == "keep-alive" if version == "HTTP/1.0" else value.lower() != "close"
            else:
                raise ProtocolError("too many reply headers")
            status = int(code)
            if 100 <= status < 200:
                continue
            return status, reason, length, chunked, keep

    def chunks(self, length: int | None, chunked: bool) -> Iterator[bytes]:
        """The body as it arrives; ends at its end (a connection that can be reused after)."""
        if chunked:
            while True:
                size_line = self._line()
                try:
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise ProtocolError(f"bad chunk size line {size_line[:80]!r}") from None
                if size == 0:
                    while self._line() not in (b"\r\n", b"\n", b""):  # trailers
                        pass
                    return
                data = self._exactly(size)
                if self.reader.read(2) != b"\r\n":
                    raise ProtocolError("chunk not followed by CRLF")
                yield data
        elif length is not None:
            if length:
                yield self._exactly(length)
        else:
            while data := self.reader.read1(_READ_BUFFER):
                yield data

    def _exactly(self, size: int) -> bytes:
        data = self.reader.read(size)
        if len(data) != size:
            raise ProtocolError(f"the connection closed {size - len(data)} bytes before the body's end")
        return data


class Transport:
    """Requests to one API server. ``headers`` are sent with every request (auth goes per request)."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext | None, server_hostname: str | None = None,
                 connect_timeout_s: float = 10.0, max_idle: int = MAX_IDLE) -> None:
        self.host = host
        self.port = port
        self.context = context
        self.server_hostname = server_hostname or host
        self.connect_timeout_s = connect_timeout_s
        self.max_idle = max_idle
        self._authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()

    @classmethod
    def for_configuration(cls, config: Any) -> Transport | None:
        """From a ``kubernetes.client.Configuration`` (host, CA, client certificate, TLS server name,
        verify switch); None where this client cannot stand in for urllib3 (a proxy)."""
        if getattr(config, "proxy", None):
            return None
        url = urlsplit(config.host)
        if url.scheme not in ("http", "https") or not url.hostname:
            return None
        port = url.port or (443 if url.scheme == "https" else 80)
        context = None
        if url.scheme == "https":
            context = ssl.create_default_context(cafile=config.ssl_ca_cert or None)
            if config.cert_file:
                context.load_cert_chain(config.cert_file, config.key_file or None)
            if not config.verify_ssl:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            elif getattr(config, "assert_hostname", None) is False:
                context.check_hostname = False
        server_name = getattr(config, "tls_server_name", None) or None
        return cls(url.hostname, port, context, server_name)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def request(self, method: str, target: str, headers: dict[str, str], body: bytes | None,
                timeout_s: float) -> Reply:
        """One request and its whole reply."""
        conn, status, reason, length, chunked, keep = self._send(method, target, headers, body, timeout_s)
        try:
            data = b"".join(conn.chunks(length, chunked))
        except BaseException:
            conn.close()
            raise
        self._done(conn, keep and (length is not None or chunked))
        return Reply(status, reason, data)

    def stream(self, method: str, target: str, headers: dict[str, str], timeout_s: float) -> tuple[Reply, Iterator[bytes]]:
        """A request whose reply body is read as it arrives (a watch): the status (with the whole body
        when it is not 2xx) and the body's chunks. Leaving the iterator early closes the connection."""
        conn, status, reason, length, chunked, keep = self._send(method, target, headers, None, timeout_s)
        if not 200 <= status < 300:
            try:
                data = b"".join(conn.chunks(length, chunked))
            finally:
                conn.close()
            return Reply(status, reason, data), iter(())

        def body() -> Iterator[bytes]:
            finished = False
            try:
                yield from conn.chunks(length, chunked)
                finished = True
            finally:
                if finished:
                    self._done(conn, keep and (length is not None or chunked))
                else:
                    conn.close()

        return Reply(status, reason, b""), body()

    def _send(self, method: str, target: str, headers: dict[str, str], body: bytes | None,
              timeout_s: float) -> tuple[_Connection, int, str, int | None, bool, bool]:
        """Send on an idle connection (once more on a new one if the server had closed it) and read the head."""
        message = self._message(method, target, headers, body)
        for attempt in range(2):
            conn, reused = self._take(timeout_s, pooled=attempt == 0)
            try:
                conn.sock.settimeout(timeout_s)
                conn.sock.sendall(message)
                return (conn, *conn.head())
            except (_Closed, ConnectionResetError, BrokenPipeError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
                conn.close()
                if not reused:
                    raise
                # A kept-alive connection the server closed as it was taken: nothing was read there.
            except BaseException:
                conn.close()
                raise
        raise AssertionError("unreachable: the second attempt is on a new connection")

    def _message(self, method: str, target: str, headers: dict[str, str], body: bytes | None) -> bytes:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self._authority}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        if " " in target or not all(line.isprintable() for line in lines):  # nothing may smuggle a line break
            raise ValueError(f"refusing to send a request line or header with control characters: {target[:80]!r}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")

    def _take(self, timeout_s: float, pooled: bool = True) -> tuple[_Connection, bool]:
        """The most recently used idle connection the server has not closed, else a new one."""
        while pooled:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                break
            if not conn.dropped():
                return conn, True
            conn.close()
        sock = socket.create_connection((self.host, self.port), timeout=min(timeout_s, self.connect_timeout_s))
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.context is not None:
                sock = self.context.wrap_socket(sock, server_hostname=self.server_hostname)
        except BaseException:
            sock.close()
            raise
        return _Connection(sock), False

    def _done(self, conn: _Connection, reusable: bool) -> None:
        if reusable:
            with self._lock:
                if len(self._idle) < self.max_idle:
                    self._idle.append(conn)
                    return
        conn.close()
