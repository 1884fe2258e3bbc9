"""Kubeconfig files for the local cluster, with the CA and client credentials embedded so a file
stays valid when copied elsewhere on the machine."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from gpufleet.scheduler.localcluster.certs import ClientIdentity, Pki

CONTEXT = "gpufleet-local"


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def kubeconfig_dict(server: str, pki: Pki, identity: ClientIdentity) -> dict:
    """A kubeconfig for ``identity`` talking to ``server`` (``https://127.0.0.1:PORT``)."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT,
                      "cluster": {"server": server, "certificate-authority-data": _b64(pki.ca_cert)}}],
        "users": [{"name": identity.user,
                   "user": {"client-certificate-data": _b64(pki.client_cert(identity)),
                            "client-key-data": _b64(pki.client_key(identity))}}],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": identity.user}}],
        "current-context": CONTEXT,
        "preferences": {},
    }


def write_kubeconfig(path: Path, server: str, pki: Pki, identity: ClientIdentity) -> Path:
    """Write the kubeconfig (mode 0600, parent folders created) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(kubeconfig_dict(server, pki, identity), sort_keys=False))
    path.chmod(0o600)
    return path
