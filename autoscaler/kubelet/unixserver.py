"""A gRPC server on a unix socket, as the kubelet's local APIs are served (PodResources, device plugin
Registration, a device plugin's own endpoint): used by the device plugin and the fake kubelets."""

from __future__ import annotations

from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc


def serve_unix(path: str, add_servicer: Callable[[Any, grpc.Server], None], servicer: Any, *,
               workers: int, who: str) -> grpc.Server:
    """Start ``servicer`` (registered by ``add_servicer``, a generated ``add_*Servicer_to_server``) on
    ``unix:path``; OSError naming ``who`` when the socket cannot be bound."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    add_servicer(servicer, server)
    if server.add_insecure_port(f"unix:{path}") == 0:
        raise OSError(f"{who}: cannot listen on unix:{path}")
    server.start()
    return server


def stop_now(server: grpc.Server | None) -> None:
    """Stop ``server`` (if any) without grace and wait until it has stopped."""
    if server is not None:
        server.stop(grace=None).wait()
