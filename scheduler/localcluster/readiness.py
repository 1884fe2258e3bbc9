"""Waiting for the cluster: health endpoints over loopback HTTP(S), and conditions polled through
the API. Every wait has a deadline and says what it waited for when it runs out."""

from __future__ import annotations

import json
import logging
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from gpufleet.scheduler.localcluster.certs import ADMIN, Pki

log = logging.getLogger(__name__)


class NotReadyError(TimeoutError):
    """Something did not become ready before its deadline."""


def admin_ssl_context(pki: Pki) -> ssl.SSLContext:
    """Trusts the cluster CA and presents the admin client certificate."""
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    context.load_cert_chain(str(pki.client_cert(ADMIN)), str(pki.client_key(ADMIN)))
    return context


def insecure_ssl_context() -> ssl.SSLContext:
    """For the loopback health ports of kube-controller-manager and kube-scheduler, which serve
    self-signed certificates they make at start."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def get(url: str, context: ssl.SSLContext | None = None, timeout: float = 2.0) -> tuple[int, bytes]:
    """GET ``url``; (status, body), with status 0 when the connection failed."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def wait_until(what: str, probe: Callable[[], bool], timeout: float, interval: float = 0.2,
               check_alive: Callable[[], None] | None = None) -> float:
    """Call ``probe`` until it is true; returns the seconds waited. ``check_alive`` raises when the
    process behind it died, so a crash is reported at once rather than at the deadline."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        if check_alive is not None:
            check_alive()
        if probe():
            return time.monotonic() - start
        if time.monotonic() > deadline:
            raise NotReadyError(f"waiting for {what}: not ready after {timeout:.0f} s")
        time.sleep(interval)


def http_ok(url: str, context: ssl.SSLContext | None = None, expect: bytes | None = None) -> Callable[[], bool]:
    """A probe: ``url`` answers 200 (and its body contains ``expect``, if given)."""
    def probe() -> bool:
        status, body = get(url, context)
        return status == 200 and (expect is None or expect in body)
    return probe


def count_ready_nodes(server: str, context: ssl.SSLContext, label_selector: str = "type=kwok") -> tuple[int, int]:
    """(Ready nodes, all nodes) among those matching ``label_selector``; raw JSON, for speed at
    thousands of nodes."""
    url = f"{server}/api/v1/nodes?labelSelector={urllib.request.quote(label_selector)}"
    status, body = get(url, context, timeout=30.0)
    if status != 200:
        return 0, 0
    items = json.loads(body).get("items", [])
    ready = 0
    for node in items:
        for condition in node.get("status", {}).get("conditions") or []:
            if condition.get("type") == "Ready" and condition.get("status") == "True":
                ready += 1
                break
    return ready, len(items)


def service_account_exists(server: str, context: ssl.SSLContext, namespace: str = "default",
                           name: str = "default") -> Callable[[], bool]:
    """A probe: the service account exists (pods are refused until the controller made it)."""
    return http_ok(f"{server}/api/v1/namespaces/{namespace}/serviceaccounts/{name}", context)
