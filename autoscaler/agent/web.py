"""The agent's HTTP endpoints: ``/metrics`` (Prometheus exposition) and ``/healthz``.

``/healthz`` answers 200 while sampling works (a pass within three intervals) and 503 otherwise,
with a small JSON body saying why; a lost GPU does not make the agent unhealthy (it is reported).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

log = logging.getLogger(__name__)

HealthCheck = Callable[[], tuple[bool, dict[str, Any]]]


class WebServerError(Exception):
    """The HTTP server could not be started."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], registry: CollectorRegistry, health: HealthCheck) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.registry = registry
        self.health = health
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._reply(200, content_type, encoder(self.server.registry))
        elif path in ("/healthz", "/readyz"):
            ok, detail = self.server.health()
            body = json.dumps({"status": "ok" if ok else "unhealthy", **detail}, sort_keys=True).encode()
            self._reply(200 if ok else 503, "application/json", body)
        elif path == "/":
            self._reply(200, "text/plain; charset=utf-8", b"gpufleet agent: /metrics /healthz\n")
        else:
            self._reply(404, "text/plain; charset=utf-8", b"not found\n")

    def _reply(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s", format % args)


class WebServer:
    """Serves on a background thread; ``port`` is the bound port (useful with port 0)."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, health: HealthCheck) -> None:
        try:
            self._server = _Server((host, port), registry, health)
        except OSError as err:
            raise WebServerError(f"listening for HTTP on {host}:{port}: {err}") from err
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="gpufleet-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
