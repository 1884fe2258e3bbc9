"""Certificates for mutual TLS between kube-scheduler and the extender, and their Secrets.

One CA; a server certificate for the extender's Service (and loopback); a client certificate for
kube-scheduler. ECDSA P-256, SHA-256. The Secrets are ``kubernetes.io/tls`` with ``ca.crt`` beside
``tls.crt`` / ``tls.key``: the extender's in its namespace, kube-scheduler's in the scheduler's.
Files only: the caller decides where they go (``gpufleet certs``). cert-manager can issue the same
three instead (docs/designs/014-gpu-sharing.md, deploy/overlays/existing-scheduler).
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVER_SECRET = "gpufleet-extender-tls"
CLIENT_SECRET = "gpufleet-extender-client"
CLIENT_NAME = "kube-scheduler"


@dataclass(frozen=True)
class PkiOptions:
    """``service`` and ``namespace``: the extender's Service (its DNS names go into the server
    certificate); ``scheduler_namespace``: where kube-scheduler's Secret goes; ``days``: validity;
    ``extra_names``: more DNS names or IP addresses for the server certificate."""

    service: str = "gpufleet-extender"
    namespace: str = "gpufleet-system"
    scheduler_namespace: str = "kube-system"
    days: int = 365
    extra_names: tuple[str, ...] = ()

    def server_names(self) -> list[str]:
        svc = f"{self.service}.{self.namespace}"
        return [self.service, svc, f"{svc}.svc", f"{svc}.svc.cluster.local", "localhost", "127.0.0.1",
                *self.extra_names]


@dataclass(frozen=True)
class Pki:
    directory: Path

    def path(self, name: str) -> Path:
        return self.directory / name

    @property
    def ca(self) -> Path:
        return self.path("ca.crt")

    @property
    def server_cert(self) -> Path:
        return self.path("server.crt")

    @property
    def server_key(self) -> Path:
        return self.path("server.key")

    @property
    def client_cert(self) -> Path:
        return self.path("client.crt")

    @property
    def client_key(self) -> Path:
        return self.path("client.key")

    @property
    def secrets(self) -> Path:
        return self.path("secrets.yaml")


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _cert(subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, signer: ec.EllipticCurvePrivateKey,
          now: datetime.datetime, days: int, *, ca: bool = False, usage: x509.ObjectIdentifier | None = None,
          names: list[str] | None = None) -> x509.Certificate:
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=ca, crl_sign=ca,
                                            content_commitment=False, key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, encipher_only=False, decipher_only=False),
                              critical=True))
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([_san(n) for n in names]), critical=False)
    return builder.sign(signer, hashes.SHA256())


def write_pki(directory: Path, options: PkiOptions = PkiOptions(), now: datetime.datetime | None = None) -> Pki:
    """A new CA, server and client certificate, and ``secrets.yaml``, in ``directory`` (keys 0600)."""
    if options.days < 1:
        raise ValueError(f"days must be >= 1, got {options.days}")
    now = now or datetime.datetime.now(datetime.UTC)
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(directory)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gpufleet-extender-ca")])
    ca = _cert("gpufleet-extender-ca", ca_name, ca_key, ca_key, now, options.days, ca=True)
    server_key, client_key = _key(), _key()
    server = _cert(f"{options.service}.{options.namespace}.svc", ca_name, server_key, ca_key, now, options.days,
                   usage=ExtendedKeyUsageOID.SERVER_AUTH, names=options.server_names())
    client = _cert(CLIENT_NAME, ca_name, client_key, ca_key, now, options.days, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    files = {"ca.crt": _pem(ca), "ca.key": _pem_key(ca_key), "server.crt": _pem(server),
             "server.key": _pem_key(server_key), "client.crt": _pem(client), "client.key": _pem_key(client_key)}
    for name, data in files.items():
        path = pki.path(name)
        path.write_bytes(data)
        if name.endswith(".key"):
            path.chmod(0o600)
    secrets = [secret(SERVER_SECRET, options.namespace, files["server.crt"], files["server.key"], files["ca.crt"]),
               secret(CLIENT_SECRET, options.scheduler_namespace, files["client.crt"], files["client.key"],
                      files["ca.crt"])]
    import yaml

    pki.secrets.write_text(yaml.safe_dump_all(secrets, sort_keys=False))
    pki.secrets.chmod(0o600)
    return pki


def secret(name: str, namespace: str, cert: bytes, key: bytes, ca: bytes) -> dict:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/name": "gpufleet"}},
            "data": {"tls.crt": b64(cert), "tls.key": b64(key), "ca.crt": b64(ca)}}
