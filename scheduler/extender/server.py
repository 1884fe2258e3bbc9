"""The extender's HTTP server: ``POST {prefix}filter|prioritize|bind|preempt``, ``GET /healthz``,
``/readyz``, ``/metrics``.

HTTP/1.1 with keep-alive (kube-scheduler's Go client reuses connections), one thread per connection (kept for the next),
Nagle off: a bind waits for the API server on its own connection's thread and holds up no other
request. The stdlib server was kept after ``bench/http_servers.py`` ran the verbs behind it, uvicorn,
granian and aiohttp in one run (it used the least CPU per pod), with its request headers read by a
lean loop rather than the email parser. With ``ServerConfig.tls`` the listener speaks TLS and requires a client certificate signed
by the configured CA (mutual TLS, for the existing-scheduler overlay where the extender is a
Service): the handshake runs on the connection's own thread, before any request is read, so a
client without such a certificate is refused before it can change any state. Bad input never gets a 5xx: an unreadable body, a body over ``max_body_bytes``, JSON that
is not the extender contract, an unknown path or method all get a 4xx with ``{"Error": ...}``. A 500
means a bug in the extender, and is logged with its traceback.
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client.exposition import choose_encoder

from gpufleet.scheduler.extender.errors import WireError
from gpufleet.scheduler.extender.metrics import ExtenderMetrics
from gpufleet.scheduler.extender.service import Extender
from gpufleet.scheduler.extender.wire import (
    SchedulingReader,
    encode_error,
    parse_binding_args,
    parse_preemption_args,
    parse_scheduling_args,
)

log = logging.getLogger(__name__)

JSON = "application/json"
#: What the lean header reader accepts (http.client's limits).
MAX_HEADER_LINE = 65536
MAX_HEADERS = 100
_VERSIONS = (b"HTTP/1.1", b"HTTP/1.0")
_date: tuple[int, str] = (0, "")
_verbs_cpu = threading.local()  # CPU seconds of the verbs served on this connection's thread


class _Headers(dict):
    """Request headers by lower-cased name (the first of repeated ones, as ``email.message`` gives)."""

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)


class ServerError(Exception):
    """The HTTP server could not be started."""


@dataclass(frozen=True)
class TLSFiles:
    """PEM files: the server's certificate and key, and the CA whose client certificates are accepted."""

    cert: str
    key: str
    client_ca: str

    def context(self) -> ssl.SSLContext:
        """A server context that requires a client certificate from ``client_ca`` (TLS 1.2+)."""
        try:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=self.client_ca)
            ctx.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as err:
            raise ServerError(f"loading TLS files (cert {self.cert}, key {self.key}, client CA {self.client_ca}): "
                              f"{err}") from err
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx


@dataclass(frozen=True)
class ServerConfig:
    """``prefix``: path of the verbs (default ``/v1/``, so urlPrefix is ``http://HOST:PORT/v1``);
    ``max_body_bytes``: larger requests get 413 (default 64 MiB, room for 500 full Node objects);
    ``idle_timeout_s``: a kept-alive connection idle this long is closed (s, default 120, longer than
    Go's 90 s idle timeout so the client always closes first)."""

    prefix: str = "/v1/"
    max_body_bytes: int = 64 * 1024 * 1024
    idle_timeout_s: float = 120.0
    verbs: bool = True  # False: only /healthz, /readyz and /metrics (a separate metrics listener)
    tls: TLSFiles | None = None  # mutual TLS (see the module docstring); None: plain HTTP
    handshake_timeout_s: float = 10.0
    #: Binds posting to the API server at once (default 256); more wait their turn. A bound on
    #: threads, not a throttle: binds in flight = pods/s x the API server's latency, and a lower cap
    #: makes them queue past kube-scheduler's 1 s timeout when the API server is slow (measured: 32
    #: turned a 0.7 s API latency into 4 s binds). The API client keeps as many idle connections
    #: (``gpufleet.core.kube.transport.MAX_IDLE``), so no bind pays a TLS handshake after the first ones.
    max_binds_in_flight: int = 256


class _Verb:
    def __init__(self, name: str, parse: Callable[[object], Any], run: Callable[[Any], bytes],
                 metrics: ExtenderMetrics, read: Callable[[bytes], Any] | None = None) -> None:
        self.name = name
        self.parse = parse
        self.read = read  # the fast path from raw bytes; None from it: decode and ``parse``
        self.run = run
        self.duration = metrics.request_duration.labels(name)
        self.cpu = metrics.cpu.labels(name)
        self._metrics = metrics
        self._codes: dict[int, Any] = {}

    def count(self, code: int) -> None:
        child = self._codes.get(code)
        if child is None:
            child = self._codes[code] = self._metrics.requests.labels(self.name, str(code))
        child.inc()


def answer(verb: _Verb, raw: bytes) -> tuple[int, bytes]:
    """Status and body of the reply to one verb's request body (never raises: bad input is a 4xx,
    a bug in the extender a 500 logged with its traceback). Every HTTP front end calls this."""
    try:
        args = verb.read(raw) if verb.read is not None else None
        if args is None:
            try:
                doc = json.loads(raw)
            except (ValueError, RecursionError) as err:  # JSONDecodeError and bad UTF-8 are ValueErrors
                return 400, encode_error(f"{verb.name}: request body is not JSON: {str(err)[:200]}")
            args = verb.parse(doc)
    except WireError as err:
        return 400, encode_error(f"{verb.name}: {err}")
    except RecursionError:
        return 400, encode_error(f"{verb.name}: request nested too deeply")
    try:
        return 200, verb.run(args)
    except Exception:
        log.exception("verb=%s failed", verb.name)
        return 500, encode_error(f"{verb.name}: internal error (see the extender's log)")


def verbs_of(extender: Extender, metrics: ExtenderMetrics) -> dict[str, _Verb]:
    """The four verbs by name, with their parsers and metrics (filter and prioritize share one
    reader, so a scheduling cycle's Pod is parsed once)."""
    reader = SchedulingReader()
    return {
        "filter": _Verb("filter", parse_scheduling_args, extender.filter, metrics, reader.read),
        "prioritize": _Verb("prioritize", parse_scheduling_args, extender.prioritize, metrics, reader.read),
        "bind": _Verb("bind", parse_binding_args, extender.bind, metrics),
        "preempt": _Verb("preempt", parse_preemption_args, extender.preempt, metrics),
    }


class _Workers:
    """Threads that serve accepted connections, each kept for the next connection once its own closes.
    kube-scheduler keeps two idle connections to an extender, so most binds come on a new one, and
    starting a thread for it cost about 90 us of CPU against 15 us for handing it to a waiting one.
    A thread is started only when none waits, so no connection ever queues behind a busy one."""

    def __init__(self, serve: Callable[[Any, Any], None]) -> None:
        self._serve = serve
        self._queue: queue.SimpleQueue[tuple[Any, Any] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._waiting = 0
        self._threads = 0

    def submit(self, request: Any, client_address: Any) -> None:
        with self._lock:
            start = self._waiting == 0
            if start:
                self._threads += 1
            else:
                self._waiting -= 1
        self._queue.put((request, client_address))
        if start:
            threading.Thread(target=self._run, name=f"gpufleet-extender-conn-{self._threads}", daemon=True).start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            self._serve(*item)
            with self._lock:
                self._waiting += 1

    def stop(self) -> None:
        with self._lock:
            count, self._threads = self._threads, 0
        for _ in range(count):
            self._queue.put(None)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], extender: Extender, metrics: ExtenderMetrics,
                 config: ServerConfig) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.extender = extender
        self.metrics = metrics
        self.config = config
        self.prefix = "/" + config.prefix.strip("/") + "/" if config.prefix.strip("/") else "/"
        self.verbs = verbs_of(extender, metrics) if config.verbs else {}
        self.tls = config.tls.context() if config.tls is not None else None
        self.bind_slots = threading.BoundedSemaphore(max(1, config.max_binds_in_flight))
        self.connection_cpu = metrics.cpu.labels("connection")
        self.workers = _Workers(self.process_request_thread)
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.workers.submit(request, client_address)

    def server_close(self) -> None:
        super().server_close()
        self.workers.stop()

    def get_request(self) -> tuple[Any, Any]:
        conn, address = super().get_request()
        if self.tls is None:
            return conn, address
        # The handshake (and the client-certificate check) runs later, on the connection's thread.
        return self.tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False), address

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """One connection's thread; its CPU outside the verbs is counted as ``connection``."""
        cpu = time.thread_time()
        _verbs_cpu.seconds = 0.0
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.connection_cpu.inc(max(0.0, time.thread_time() - cpu - _verbs_cpu.seconds))

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        log.debug("connection from %s ended: %r", client_address, sys.exc_info()[1])


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "gpufleet-extender"
    sys_version = ""

    def parse_request(self) -> bool:
        """A well-formed HTTP/1.x request line with its headers read by a lean loop (the stdlib's
        email parser is about a tenth of the server's CPU); anything else goes to the stdlib parser,
        which also answers the errors."""
        words = self.raw_requestline.split()
        if len(words) != 3 or words[2] not in _VERSIONS:
            return super().parse_request()
        self.requestline = self.raw_requestline.rstrip(b"\r\n").decode("iso-8859-1")
        command, path, version = (w.decode("iso-8859-1") for w in words)
        self.command, self.request_version = command, version
        self.path = "/" + path.lstrip("/") if path.startswith("//") else path
        self.close_connection = version != "HTTP/1.1"
        headers = _Headers()
        for _ in range(MAX_HEADERS + 1):
            line = self.rfile.readline(MAX_HEADER_LINE + 1)
            if len(line) > MAX_HEADER_LINE:
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long")
                return False
            if line in (b"\r\n", b"\n", b""):
                break
            name, colon, value = line.decode("iso-8859-1").partition(":")
            if not colon or not name or name != name.strip():  # no colon, or a folded continuation line
                self.send_error(HTTPStatus.BAD_REQUEST, "Bad header line")
                return False
            headers.setdefault(name.lower(), value.strip())
        else:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers")
            return False
        self.headers = headers  # type: ignore[assignment]
        connection = headers.get("connection", "").lower()
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive":
            self.close_connection = False
        if headers.get("expect", "").lower() == "100-continue" and version == "HTTP/1.1":
            return self.handle_expect_100()
        return True

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The Date header, formatted once a second."""
        global _date
        if timestamp is not None:
            return super().date_time_string(timestamp)
        now = int(time.time())
        if _date[0] != now:
            _date = (now, formatdate(now, usegmt=True))
        return _date[1]

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(self.server.config.handshake_timeout_s)
            try:
                self.request.do_handshake()
            except (OSError, ssl.SSLError) as err:  # no or an untrusted client certificate, or not TLS
                log.info("tls handshake refused client=%s: %s", self.client_address[0], err)
                raise
        self.timeout = self.server.config.idle_timeout_s
        super().setup()

    def do_POST(self) -> None:
        started, cpu = time.perf_counter(), time.thread_time()
        path = self.path.split("?", 1)[0]
        prefix = self.server.prefix
        verb = self.server.verbs.get(path[len(prefix):].strip("/")) if path.startswith(prefix) else None
        if verb is None:
            self._discard_body()
            self._error(404, f"no extender verb at {path}; verbs are {prefix}filter|prioritize|bind|preempt")
            return
        code, body = self._handle(verb)
        self._reply(code, JSON, body)
        verb.duration.observe(time.perf_counter() - started)
        verb.count(code)
        spent = time.thread_time() - cpu
        verb.cpu.inc(spent)
        _verbs_cpu.seconds = getattr(_verbs_cpu, "seconds", 0.0) + spent

    def _handle(self, verb: _Verb) -> tuple[int, bytes]:
        raw = self._read_body()
        if isinstance(raw, tuple):
            return raw
        if verb.name == "bind":
            with self.server.bind_slots:
                return answer(verb, raw)
        return answer(verb, raw)

    def _read_body(self) -> bytes | tuple[int, bytes]:
        if self.headers.get("Transfer-Encoding", "").lower() not in ("", "identity"):
            self.close_connection = True
            return 411, encode_error("send the body with Content-Length (chunked bodies are not read)")
        length_header = self.headers.get("Content-Length")
        try:
            length = int(length_header) if length_header is not None else -1
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            return 411, encode_error("a Content-Length header with the body size is required")
        if length > self.server.config.max_body_bytes:
            self.close_connection = True
            return 413, encode_error(f"request body of {length} bytes is over the limit of "
                                     f"{self.server.config.max_body_bytes}")
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            return 400, encode_error("request body shorter than its Content-Length")
        return body

    def _discard_body(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if 0 <= length <= self.server.config.max_body_bytes:
            self.rfile.read(length)
        else:
            self.close_connection = True

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        extender = self.server.extender
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._reply(200, content_type, encoder(self.server.metrics.registry))
        elif path == "/healthz":
            self._reply(200, JSON, b'{"status":"ok"}')
        elif path == "/readyz":
            ready = extender.ready()
            body = json.dumps({"status": "ready" if ready else "not ready", "synced": extender.state.synced,
                               "nodes": extender.state.node_count()}).encode()
            self._reply(200 if ready else 503, JSON, body)
        elif path.startswith(self.server.prefix) and path[len(self.server.prefix):].strip("/") in self.server.verbs:
            self._error(405, f"{path} takes POST")
        else:
            self._error(404, f"nothing at {path}")

    def do_PUT(self) -> None:
        self._discard_body()
        self._error(405, "the extender takes POST (verbs) and GET (/healthz, /readyz, /metrics)")

    do_DELETE = do_PATCH = do_PUT

    def _error(self, code: int, message: str) -> None:
        self._reply(code, JSON, encode_error(message))

    def _reply(self, code: int, content_type: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        # end_headers() without its flush: headers and body leave in one write (one segment, no Nagle wait).
        self._headers_buffer.extend((b"\r\n", body))
        self.flush_headers()

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("http %s %s %s", self.command, self.path, code)

    def log_message(self, format: str, *args: Any) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("http %s", format % args)


class ExtenderServer:
    """Serves on a background thread; ``port`` is the bound port (useful with port 0)."""

    def __init__(self, extender: Extender, metrics: ExtenderMetrics, host: str, port: int,
                 config: ServerConfig = ServerConfig()) -> None:
        try:
            self._server = _Server((host, port), extender, metrics, config)
        except OSError as err:
            raise ServerError(f"listening for HTTP on {host}:{port}: {err}") from err
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="gpufleet-extender-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def prefix(self) -> str:
        return self._server.prefix

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
