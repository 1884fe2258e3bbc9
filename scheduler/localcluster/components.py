"""Command lines and config files of the control-plane components, all bound to 127.0.0.1.

etcd serves plain HTTP on loopback (no fsync: the cluster is thrown away at ``down``); the API
server serves TLS with the self-made CA and authenticates clients by certificate; the controller
manager and the scheduler use their own identities (bootstrap RBAC gives them their rights); kwok
acts as the admin. The scheduler's configuration is ``deploy/scheduler/kube-scheduler-config.yaml``,
shared with the in-cluster manifests, with only the local fields rewritten.
"""

from __future__ import annotations

import copy
import socket
from dataclasses import dataclass
from pathlib import Path

import yaml

from gpufleet.scheduler.localcluster.binaries import Binaries
from gpufleet.scheduler.localcluster.certs import SERVICE_CIDR, Pki
from gpufleet.scheduler.localcluster.nodes import KWOK_ANNOTATION, KWOK_ANNOTATION_VALUE
from gpufleet.scheduler.localcluster.processes import ProcessSpec

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port free on loopback now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
#: Fake pod and node addresses kwok writes into status; loopback, so nothing is ever sent elsewhere.
KWOK_POD_CIDR = "127.64.0.0/10"
#: Lease duration of the fake nodes, in seconds.
NODE_LEASE_SECONDS = 120


class ConfigFileError(RuntimeError):
    """A config file under deploy/ is missing or malformed."""


@dataclass(frozen=True)
class Ports:
    """Loopback TCP ports of one cluster."""

    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int


@dataclass(frozen=True)
class Paths:
    """Files of one cluster under its state folder."""

    state_dir: Path

    @property
    def etcd_data(self) -> Path:
        return self.state_dir / "etcd"

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.state_dir / "admin.kubeconfig"

    @property
    def controller_manager_kubeconfig(self) -> Path:
        return self.state_dir / "kube-controller-manager.kubeconfig"

    @property
    def scheduler_kubeconfig(self) -> Path:
        return self.state_dir / "kube-scheduler.kubeconfig"

    @property
    def scheduler_config(self) -> Path:
        return self.state_dir / "kube-scheduler-config.yaml"


def etcd(binaries: Binaries, paths: Paths, ports: Ports) -> ProcessSpec:
    client = f"http://{LOOPBACK}:{ports.etcd_client}"
    peer = f"http://{LOOPBACK}:{ports.etcd_peer}"
    return ProcessSpec("etcd", [
        str(binaries.etcd),
        "--name=gpufleet-local",
        f"--data-dir={paths.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=gpufleet-local={peer}",
        "--unsafe-no-fsync=true",
        "--quota-backend-bytes=4294967296",
        "--log-level=warn",
    ])


def kube_apiserver(binaries: Binaries, paths: Paths, ports: Ports, pki: Pki) -> ProcessSpec:
    return ProcessSpec("kube-apiserver", [
        str(binaries.kube_apiserver),
        f"--etcd-servers=http://{LOOPBACK}:{ports.etcd_client}",
        f"--bind-address={LOOPBACK}",
        f"--advertise-address={LOOPBACK}",
        f"--secure-port={ports.apiserver}",
        f"--tls-cert-file={pki.apiserver_cert}",
        f"--tls-private-key-file={pki.apiserver_key}",
        f"--client-ca-file={pki.ca_cert}",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={pki.sa_pub}",
        f"--service-account-signing-key-file={pki.sa_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=RBAC",
        # No front proxy here; naming a CA (and a CN no certificate has) keeps the components'
        # delegated authentication from logging a missing requestheader CA bundle all day.
        f"--requestheader-client-ca-file={pki.ca_cert}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        "--allow-privileged=true",
        # The master endpoint reconciler would write 127.0.0.1 into the `kubernetes` Endpoints,
        # which validation refuses (loopback); nothing in this cluster needs that Service routed.
        "--endpoint-reconciler-type=none",
        # Room for bursts of thousands of pods from benchmarks and kwok's status updates.
        "--max-requests-inflight=1000",
        "--max-mutating-requests-inflight=500",
        "--profiling=false",
    ])


def kube_controller_manager(binaries: Binaries, paths: Paths, ports: Ports, pki: Pki) -> ProcessSpec:
    kubeconfig = str(paths.controller_manager_kubeconfig)
    return ProcessSpec("kube-controller-manager", [
        str(binaries.kube_controller_manager),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={LOOPBACK}",
        f"--secure-port={ports.controller_manager}",
        "--leader-elect=false",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki.sa_key}",
        f"--root-ca-file={pki.ca_cert}",
        f"--cluster-signing-cert-file={pki.ca_cert}",
        f"--cluster-signing-key-file={pki.ca_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--kube-api-qps=200",
        "--kube-api-burst=400",
        # Longer than kwok's lease, so fake nodes stay Ready between renewals.
        f"--node-monitor-grace-period={NODE_LEASE_SECONDS + 60}s",
        "--profiling=false",
    ])


def scheduler_config(template: Path, kubeconfig: Path, extender_url: str | None,
                     tls: tuple[str, str, str] | None = None) -> dict:
    """The shared KubeSchedulerConfiguration with the local fields rewritten: our kubeconfig, no
    leader election, and the extender at ``extender_url`` (or no extender when None), called with
    the client certificate, key and CA ``tls`` (mutual TLS) when given."""
    try:
        config = yaml.safe_load(template.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigFileError(f"reading the scheduler config template {template}: {err}") from err
    if not isinstance(config, dict) or config.get("kind") != "KubeSchedulerConfiguration":
        raise ConfigFileError(f"{template}: expected a KubeSchedulerConfiguration")
    config = copy.deepcopy(config)
    config.setdefault("clientConnection", {})["kubeconfig"] = str(kubeconfig)
    config.setdefault("leaderElection", {})["leaderElect"] = False
    extenders = config.get("extenders") or []
    if extender_url is None:
        config.pop("extenders", None)
    else:
        if not extenders:
            raise ConfigFileError(f"{template}: has no `extenders` entry to point at {extender_url}")
        extenders[0]["urlPrefix"] = extender_url.rstrip("/")
        if tls is not None:
            extenders[0]["tlsConfig"] = {"certFile": str(tls[0]), "keyFile": str(tls[1]), "caFile": str(tls[2])}
        config["extenders"] = extenders
    return config


def kube_scheduler(binaries: Binaries, paths: Paths, ports: Ports, template: Path,
                   extender_url: str | None, extender_tls: tuple[str, str, str] | None = None,
                   feature_gates: str = "") -> ProcessSpec:
    config = scheduler_config(template, paths.scheduler_kubeconfig, extender_url, extender_tls)
    paths.scheduler_config.write_text(yaml.safe_dump(config, sort_keys=False))
    kubeconfig = str(paths.scheduler_kubeconfig)
    return ProcessSpec("kube-scheduler", [
        str(binaries.kube_scheduler),
        f"--config={paths.scheduler_config}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={LOOPBACK}",
        f"--secure-port={ports.scheduler}",
        # /metrics without credentials, for the throughput benchmark (loopback only).
        "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
        *([f"--feature-gates={feature_gates}"] if feature_gates else []),
    ])


def kwok(binaries: Binaries, paths: Paths, ports: Ports, config: Path) -> ProcessSpec:
    if not config.is_file():
        raise ConfigFileError(f"kwok config {config} is missing; restore deploy/local/kwok/kwok-config.yaml")
    return ProcessSpec("kwok", [
        str(binaries.kwok),
        f"--kubeconfig={paths.admin_kubeconfig}",
        f"--config={config}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}={KWOK_ANNOTATION_VALUE}",
        f"--node-ip={LOOPBACK}",
        f"--cidr={KWOK_POD_CIDR}",
        # kwok renews each node's Lease every duration/4: 120 s keeps 1,213 nodes at ~40 writes/s.
        f"--node-lease-duration-seconds={NODE_LEASE_SECONDS}",
        f"--server-address={LOOPBACK}:{ports.kwok}",
    ])
