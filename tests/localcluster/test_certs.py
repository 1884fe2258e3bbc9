"""The self-made PKI: a CA that signs a serving certificate for loopback and client identities."""

import ipaddress

from cryptography import x509
from cryptography.x509.oid import NameOID

from gpufleet.scheduler.localcluster import certs
from gpufleet.scheduler.localcluster.kubeconfig import kubeconfig_dict


def _load(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_the_serving_certificate_names_loopback_and_the_kubernetes_service(tmp_path):
    pki = certs.write_pki(tmp_path)
    cert = _load(pki.apiserver_cert)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address(certs.KUBERNETES_SERVICE_IP) in sans.get_values_for_type(x509.IPAddress)
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    cert.verify_directly_issued_by(_load(pki.ca_cert))


def test_client_certificates_carry_user_and_groups(tmp_path):
    pki = certs.write_pki(tmp_path)
    for identity in certs.CLIENTS:
        subject = _load(pki.client_cert(identity)).subject
        assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == identity.user
        groups = tuple(a.value for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))
        assert groups == identity.groups
    assert certs.ADMIN.groups == ("system:masters",)


def test_private_keys_are_readable_by_the_owner_only(tmp_path):
    pki = certs.write_pki(tmp_path)
    for key in (pki.ca_key, pki.apiserver_key, pki.sa_key, pki.client_key(certs.ADMIN)):
        assert key.stat().st_mode & 0o077 == 0


def test_kubeconfig_embeds_the_ca_and_the_client_credentials(tmp_path):
    pki = certs.write_pki(tmp_path)
    config = kubeconfig_dict("https://127.0.0.1:6443", pki, certs.ADMIN)
    assert config["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    assert config["clusters"][0]["cluster"]["certificate-authority-data"]
    assert config["users"][0]["user"]["client-key-data"]
