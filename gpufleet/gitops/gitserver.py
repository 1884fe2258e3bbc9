"""A Git server on loopback: git's own smart-HTTP backend (``git http-backend``) behind a small HTTP server.

Serves every bare repository under a root folder at ``http://127.0.0.1:PORT/<name>.git`` for clone,
fetch and push (push is allowed: this is a local test and demo server, bound to loopback only). The
protocol work is done by git itself, so Flux's source-controller, ``git`` and the recommendation bot
talk to it as to any Git host. Used by ``gpufleet cluster up --gitops`` and the tests.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


class GitServerError(RuntimeError):
    """The Git server could not start (git missing, port taken)."""


def _http_backend() -> str:
    git = shutil.which("git")
    if git is None:
        raise GitServerError("git is missing; install it (Debian: apt-get install git)")
    exec_path = subprocess.run([git, "--exec-path"], capture_output=True, text=True, check=True).stdout.strip()
    backend = Path(exec_path) / "git-http-backend"
    if not backend.is_file():
        raise GitServerError(f"{backend} is missing; install git's HTTP backend (part of the git package)")
    return str(backend)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._cgi()

    def do_POST(self) -> None:
        self._cgi()

    def _cgi(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_HTTP_MAX_REQUEST_BUFFER": "100M",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": parts.path,
            "QUERY_STRING": parts.query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": "gpufleet",
            "REMOTE_ADDR": self.client_address[0],
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
        }
        done = subprocess.run([self.server.backend], input=body, capture_output=True, env=env, check=False)
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = done.stdout.partition(b"\n\n")
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                headers.append((key, value.strip()))
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        if done.returncode != 0 and done.stderr:
            log.debug("git http-backend: %s", done.stderr.decode(errors="replace").strip())

    def _read_chunked(self) -> bytes:
        data = b""
        while True:
            size = int(self.rfile.readline().strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return data
            data += self.rfile.read(size)
            self.rfile.readline()

    def log_message(self, format: str, *args: object) -> None:
        log.debug("git-server %s", format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], root: Path, backend: str) -> None:
        super().__init__(address, _Handler)
        self.root = root
        self.backend = backend


class GitServer:
    """Bare repositories under ``root`` over smart HTTP on loopback; ``port`` 0 picks a free one."""

    def __init__(self, root: Path, port: int = 0) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self._server = _Server((LOOPBACK, port), self.root, _http_backend())
        except OSError as err:
            raise GitServerError(f"binding {LOOPBACK}:{port}: {err}") from err
        self.port = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    def url(self, name: str) -> str:
        return f"http://{LOOPBACK}:{self.port}/{name}.git"

    def create(self, name: str, branch: str = "main") -> Path:
        """A new bare repository (push allowed), returned by path."""
        path = self.root / f"{name}.git"
        subprocess.run(["git", "init", "--quiet", "--bare", f"--initial-branch={branch}", str(path)], check=True)
        subprocess.run(["git", "-C", str(path), "config", "http.receivepack", "true"], check=True)
        return path

    def start(self) -> GitServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="gpufleet-git-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> GitServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m gpufleet.gitops.gitserver ROOT PORT``: serve until killed (the local cluster runs it)."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("port", type=int)
    args = parser.parse_args(argv)
    server = GitServer(args.root, args.port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server.start()
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
