"""xu_tls_verify's check from the controller, against a local TLS server with a certificate from a test CA."""

from __future__ import annotations

import datetime
import pathlib
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any
from unittest.mock import MagicMock

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._certificate import thumbprint_of
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._action_base import ModuleRun
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import XuError
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._tls_verify import run_tls_verify

NOW = datetime.datetime.now(datetime.timezone.utc)
FQDN = "xu01.example.com"


def ca(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return certificate, key


def leaf(issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, FQDN)]))
        .issuer_name(issuer[0].subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(FQDN)]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()), critical=False)
        .sign(issuer[1], hashes.SHA256())
    )
    return certificate, key


def pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


class Server:
    """A TLS server on loopback that answers every request with ``status``."""

    def __init__(self, directory: pathlib.Path, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey, status: int = 200) -> None:
        (directory / "leaf.pem").write_bytes(pem(certificate))
        (directory / "leaf.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(directory / "leaf.pem", directory / "leaf.key")
        self.status = status
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                raw, _address = self.socket.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(raw, server_side=True) as tls:
                    tls.settimeout(2)
                    if tls.recv(4096):
                        tls.sendall(f"HTTP/1.1 {self.status} X\r\nContent-Length: 2\r\n\r\n{{}}".encode())
            except OSError:
                continue

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def pki(tmp_path: pathlib.Path) -> Iterator[dict[str, Any]]:
    authority = ca("Test CA")
    stranger = ca("Other CA")
    certificate, key = leaf(authority)
    (tmp_path / "ca.pem").write_bytes(pem(authority[0]))
    (tmp_path / "other.pem").write_bytes(pem(stranger[0]))
    server = Server(tmp_path, certificate, key)
    yield {"dir": tmp_path, "server": server, "thumbprint": thumbprint_of(certificate.public_bytes(serialization.Encoding.DER))}
    server.close()


def verify(pki: dict[str, Any], ca_file: str = "ca.pem", fqdn: str = FQDN, **params: Any) -> dict[str, Any]:
    options = {"web_https_port": pki["server"].port, "config_server_port": None, "expected_thumbprint": None, "http_path": "/version", "timeout": 5.0}
    options.update(params)
    run = ModuleRun(params=options, check_mode=False, diff=False, task_vars={}, agent=MagicMock(), host="xu01")
    return run_tls_verify(run, ca_path=str(pki["dir"] / ca_file), address="127.0.0.1", fqdn=fqdn)


def test_a_trusted_certificate_for_the_name_passes(pki: dict[str, Any]) -> None:
    result = verify(pki, expected_thumbprint=pki["thumbprint"].lower(), config_server_port=pki["server"].port)
    assert result["problems"] == [] and result["changed"] is False
    web, config = result["ports"]
    assert web["trusted"] and web["thumbprint"] == pki["thumbprint"] and web["http_status"] == 200
    assert config["name"] == "config_server" and config["trusted"] and config["http_status"] is None


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"ca_file": "other.pem"}, "presents a certificate clients reject for xu01.example.com"),
        ({"fqdn": "xu02.example.com"}, "clients reject for xu02.example.com"),
        ({"expected_thumbprint": "AB" * 20}, f"not {'AB' * 20}"),
    ],
)
def test_what_clients_would_reject_fails(pki: dict[str, Any], kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(XuError) as failed:
        verify(pki, **kwargs)
    assert fragment in failed.value.msg
    assert failed.value.fields["ports"][0]["thumbprint"] == pki["thumbprint"]


def test_a_closed_port_and_a_bad_status_fail(pki: dict[str, Any]) -> None:
    pki["server"].status = 503
    with pytest.raises(XuError, match=r"GET /version on 127\.0\.0\.1:\d+ \(web_https\) answered 503, not 200"):
        verify(pki)
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with pytest.raises(XuError, match="does not complete a TLS handshake"):
        verify(pki, web_https_port=port)
    with pytest.raises(XuError, match="timeout must be a positive number"):
        verify(pki, timeout=0)
