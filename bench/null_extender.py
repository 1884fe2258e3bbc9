"""A null scheduler extender: the extender contract at the least work an extender can do, to measure
what kube-scheduler and the API server pay for *any* extender (`cluster_throughput.py --null-extender`).

filter passes every node it is given, prioritize scores them all 0 (kube-scheduler's own scores decide;
with ``--scores pack``, 10 for the first name in sorted order, which packs nodes as FGD does one-GPU pods;
with ``--scores decide``, filter leaves only that first name, as gpufleet's ``--decide-in-filter``), bind posts the Binding with one annotation, as gpufleet's does, through the same client; like any
node-cache-capable extender it watches pods and nodes (through the same informer), and drops the events.
A measuring device, not a scheduler.

    python bench/null_extender.py --listen 127.0.0.1:PORT --kubeconfig PATH [--prefix /v1/] [--scores pack|decide]
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gpufleet.core.kube.client import KubernetesAPI
from gpufleet.core.kube.errors import KubeAPIError
from gpufleet.core.kube.informer import Informer


class Drop:
    """An informer sink that keeps nothing."""

    def replace(self, objects: list[dict[str, Any]]) -> None:
        pass

    def apply(self, kind: str, obj: dict[str, Any]) -> None:
        pass


def answer(verb: str, args: dict[str, Any], api: KubernetesAPI, scores: str = "zero") -> dict[str, Any] | list[dict[str, Any]]:
    names = args.get("NodeNames") or []
    first = min(names) if names and scores != "zero" else None
    if verb == "filter":
        if scores == "decide" and first is not None:
            return {"NodeNames": [first], "FailedNodes": {}, "Error": ""}  # the others left out, as gpufleet's
        return {"NodeNames": names, "FailedNodes": {}, "Error": ""}
    if verb == "prioritize":
        return [{"Host": name, "Score": 10 if name == first else 0} for name in names]
    if verb == "bind":
        try:
            api.bind(args["PodNamespace"], args["PodName"], args["PodUID"], args["Node"], {"gpufleet.io/gpu-ids": "0"})
        except KubeAPIError as err:
            return {"Error": str(err)}
        return {"Error": ""}
    raise KeyError(verb)


def serve(host: str, port: int, prefix: str, api: KubernetesAPI, scores: str = "zero") -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as kube-scheduler's Go client expects

        def setup(self) -> None:
            super().setup()  # Nagle off, or each reply waits for the client's delayed ACK (40 ms)
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                reply = json.dumps(answer(self.path.removeprefix(prefix), json.loads(body), api, scores)).encode()
                status = 200
            except (KeyError, ValueError) as err:
                reply, status = json.dumps({"Error": f"bad request: {err}"}).encode(), 400
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def do_GET(self) -> None:  # /readyz for the benchmark's wait
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--prefix", default="/v1/", help="path prefix of the verbs (default /v1/)")
    parser.add_argument("--scores", choices=("zero", "pack", "decide"), default="zero",
                        help="prioritize: 0 everywhere (default), or 10 for the first name in sorted order (pack); "
                             "decide: filter leaves only that name")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    api = KubernetesAPI.connect(args.kubeconfig, user_agent="null-extender")
    for resource in ("pods", "nodes"):
        Informer(api, resource, Drop()).start()
    serve(host, int(port), args.prefix, api, args.scores).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
