"""A throwaway kube-apiserver for validation: the real API server's schema, strict field and CEL checks.

Starts etcd and kube-apiserver (the local cluster's binaries, built by ``deploy/local/build.sh``) on
loopback ports in a temporary folder, installs CRDs, and answers "would the API server accept this
object?" with a server-side dry-run create (``?dryRun=All&fieldValidation=Strict``, the requests
``kubectl apply --dry-run=server --validate=strict`` sends for a new object). The raw YAML text is sent,
so duplicate and unknown fields are judged by the server itself.

Admission plugins that look at cluster state (the namespace exists, the service account exists, a
quota, a priority class) are turned off: the repository is checked, not the cluster it goes to.
Authorization is AlwaysAllow on loopback; everything is stopped and deleted on :meth:`close`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import urllib3

from gpufleet.scheduler.localcluster.binaries import find_binaries
from gpufleet.scheduler.localcluster.certs import ADMIN, write_pki
from gpufleet.scheduler.localcluster.components import free_ports
from gpufleet.scheduler.localcluster.kubeconfig import write_kubeconfig
from gpufleet.scheduler.localcluster.processes import ProcessGroup, ProcessSpec

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
#: Admission plugins that judge the cluster rather than the object.
DISABLED_ADMISSION = ("NamespaceLifecycle", "ServiceAccount", "Priority", "ResourceQuota", "LimitRanger",
                      "DefaultStorageClass", "DefaultIngressClass", "PersistentVolumeClaimResize",
                      "RuntimeClass", "StorageObjectInUseProtection", "MutatingAdmissionWebhook",
                      "ValidatingAdmissionWebhook", "CertificateApproval", "CertificateSigning",
                      "CertificateSubjectRestriction", "TaintNodesByCondition", "DefaultTolerationSeconds",
                      "PodSecurity")


class ServerError(RuntimeError):
    """The validation API server could not be started or stopped answering."""


@dataclass(frozen=True)
class Resource:
    """Where objects of one kind live in the API."""

    path: str  # /api/v1 or /apis/GROUP/VERSION
    plural: str
    namespaced: bool


@dataclass(frozen=True)
class Verdict:
    """The API server's answer to one dry-run create."""

    accepted: bool
    status: int
    #: (field path or "", message) per cause the server gave.
    causes: tuple[tuple[str, str], ...] = ()
    message: str = ""


class DryRunServer:
    """etcd + kube-apiserver in a temporary folder; use as a context manager."""

    def __init__(self, bin_dir: Path | None = None, timeout_s: float = 60.0) -> None:
        self._bin_dir = bin_dir
        self._timeout_s = timeout_s
        self._dir: Path | None = None
        self._processes: ProcessGroup | None = None
        self._http: urllib3.PoolManager | None = None
        self.server = ""
        #: An admin kubeconfig for the server (kubectl, comparisons in tests).
        self.kubeconfig: Path | None = None
        self._resources: dict[tuple[str, str], Resource | None] = {}
        self._discovered: set[str] = set()
        self._children: list[subprocess.Popen] = []

    # ---- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        binaries = find_binaries(self._bin_dir)
        self._dir = Path(tempfile.mkdtemp(prefix="gpufleet-validate-"))
        try:
            self._start(binaries)
        except BaseException:
            self.close()
            raise

    def _start(self, binaries: Any) -> None:
        assert self._dir is not None
        etcd_client, etcd_peer, api_port = free_ports(3)
        pki = write_pki(self._dir / "pki")
        self._processes = ProcessGroup(self._dir)
        client, peer = f"http://{LOOPBACK}:{etcd_client}", f"http://{LOOPBACK}:{etcd_peer}"
        self._children = []
        self._children.append(self._processes.start(ProcessSpec("etcd", [
            str(binaries.etcd), "--name=validate", f"--data-dir={self._dir / 'etcd'}",
            f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=validate={peer}", "--unsafe-no-fsync=true", "--log-level=error"])))
        self._children.append(self._processes.start(ProcessSpec("kube-apiserver", [
            str(binaries.kube_apiserver), f"--etcd-servers={client}", f"--bind-address={LOOPBACK}",
            f"--advertise-address={LOOPBACK}", f"--secure-port={api_port}",
            f"--tls-cert-file={pki.apiserver_cert}", f"--tls-private-key-file={pki.apiserver_key}",
            f"--client-ca-file={pki.ca_cert}", "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki.sa_pub}", f"--service-account-signing-key-file={pki.sa_key}",
            "--service-cluster-ip-range=10.96.0.0/16", "--authorization-mode=AlwaysAllow",
            f"--disable-admission-plugins={','.join(DISABLED_ADMISSION)}", "--endpoint-reconciler-type=none",
            "--enable-priority-and-fairness=false", "--profiling=false", "--watch-cache=false",
            "--max-requests-inflight=2000", "--max-mutating-requests-inflight=1000"])))
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        context.load_cert_chain(str(pki.client_cert(ADMIN)), str(pki.client_key(ADMIN)))
        self._http = urllib3.PoolManager(maxsize=16, ssl_context=context, retries=False,
                                         timeout=urllib3.Timeout(connect=2.0, read=30.0))
        self.server = f"https://{LOOPBACK}:{api_port}"
        self.kubeconfig = self._dir / "admin.kubeconfig"
        write_kubeconfig(self.kubeconfig, self.server, pki, ADMIN)
        deadline = time.monotonic() + self._timeout_s
        while True:
            for name in ("etcd", "kube-apiserver"):
                try:
                    self._processes.check(name)
                except Exception as err:
                    raise ServerError(f"starting the validation API server: {err}") from err
            try:
                response = self._http.request("GET", f"{self.server}/readyz")
                if response.status == 200:
                    break
            except urllib3.exceptions.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise ServerError(f"the validation API server was not ready within {self._timeout_s:.0f} s")
            time.sleep(0.1)

    def close(self) -> None:
        if self._http is not None:
            self._http.clear()
            self._http = None
        if self._processes is not None:
            # Nothing to keep: kill at once (a graceful stop of both takes over a second).
            for child in self._children:
                with contextlib.suppress(OSError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.wait()
            self._processes.stop_all()
            self._processes = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    # ---- requests -----------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: bytes | None = None,
                 content_type: str = "application/json") -> tuple[int, Any]:
        assert self._http is not None, "start() first"
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            response = self._http.request(method, self.server + path, body=body, headers=headers)
        except urllib3.exceptions.HTTPError as err:
            raise ServerError(f"{method} {path}: {err}") from err
        try:
            return response.status, json.loads(response.data or b"{}")
        except ValueError:
            return response.status, {"message": response.data.decode(errors="replace")}

    def install_crds(self, crds: Iterable[dict[str, Any]]) -> list[tuple[str, Verdict]]:
        """Create the CRDs (for real) and wait until each is Established and listed in discovery (the
        discovery document is updated asynchronously after Established); returns the refused ones."""
        refused = []
        names = []
        served: dict[str, set[str]] = {}  # group/version -> plurals it must list
        for crd in crds:
            status, body = self._request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
                                         "?fieldValidation=Strict", json.dumps(crd).encode())
            name = (crd.get("metadata") or {}).get("name", "?")
            if status in (200, 201):
                names.append(name)
                spec = crd.get("spec") or {}
                for version in spec.get("versions") or []:
                    if version.get("served"):
                        served.setdefault(f"{spec.get('group')}/{version.get('name')}", set()).add(
                            (spec.get("names") or {}).get("plural", ""))
            elif status == 409:
                continue
            else:
                refused.append((name, _verdict(status, body)))
        deadline = time.monotonic() + self._timeout_s
        for name in names:
            while True:
                status, body = self._request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
                conditions = {c.get("type"): c.get("status") for c in (body.get("status") or {}).get("conditions") or []}
                if conditions.get("Established") == "True":
                    break
                if time.monotonic() > deadline:
                    raise ServerError(f"CRD {name} was not Established within {self._timeout_s:.0f} s")
                time.sleep(0.05)
        for group_version, plurals in served.items():
            while True:
                status, body = self._request("GET", f"/apis/{group_version}")
                listed = {item.get("name") for item in body.get("resources") or []} if status == 200 else set()
                if plurals <= listed:
                    break
                if time.monotonic() > deadline:
                    raise ServerError(f"{group_version} did not list {', '.join(sorted(plurals - listed))} in "
                                      f"discovery within {self._timeout_s:.0f} s")
                time.sleep(0.05)
        self._resources.clear()
        self._discovered.clear()
        return refused

    def resource(self, api_version: str, kind: str) -> Resource | None:
        """Where ``kind`` of ``api_version`` is served, or None when the server has no such kind."""
        if api_version not in self._discovered:
            path = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
            status, body = self._request("GET", path)
            if status == 200:
                for item in body.get("resources") or []:
                    if "/" not in item.get("name", ""):
                        self._resources[(api_version, item["kind"])] = Resource(path, item["name"],
                                                                                bool(item.get("namespaced")))
            self._discovered.add(api_version)
        return self._resources.get((api_version, kind))

    def dry_run_create(self, resource: Resource, namespace: str | None, body: bytes,
                       content_type: str = "application/yaml", name: str = "") -> Verdict:
        """POST ``body`` with dryRun=All and strict field validation (a server-side apply when an
        object ``name`` already exists); the server's verdict."""
        where = f"{resource.path}/namespaces/{namespace or 'default'}" if resource.namespaced else resource.path
        status, answer = self._request("POST", f"{where}/{resource.plural}?dryRun=All&fieldValidation=Strict",
                                       body, content_type)
        if status == 409 and name:
            # The server made this object itself (kube-system, default): kubectl apply would patch it.
            status, answer = self._request(
                "PATCH", f"{where}/{resource.plural}/{name}?dryRun=All&fieldValidation=Strict"
                "&fieldManager=gpufleet-validate&force=true", body, "application/apply-patch+yaml")
        return _verdict(status, answer)


def _verdict(status: int, body: Any) -> Verdict:
    if status in (200, 201):
        return Verdict(True, status)
    body = body if isinstance(body, dict) else {}
    causes = tuple((c.get("field") or "", c.get("message") or c.get("reason") or "")
                   for c in (body.get("details") or {}).get("causes") or [])
    return Verdict(False, status, causes, body.get("message") or f"HTTP {status}")
