"""A scripted host for xu_cert_swap: ChangingFakeHost plus the certificate primitives, and PFX files to feed it.

``SwapFakeHost`` also carries out ``pfx_import`` (the key gets the machine key set's
default ACL, which the service account is not on), ``cert_remove`` (with
``require_served`` checked against what the fake XU serves), ``cert_renew_reuse_key``
(a new certificate with the old key, signed by the test CA; the old one is archived and
no longer listed) and the journal primitives.

Knobs: ``certreq_failures`` (the next N renewals fail as certreq does).
Records: ``journals`` (name -> content), ``archived`` (thumbprints certreq archived),
``removed`` (thumbprints cert_remove removed), ``keys`` (thumbprint -> private key).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12

from support.certs import CA_KEY, CA_NAME, NOW, der, mint
from support.fake_changes import TLS_FILE, ChangingFakeHost
from support.fake_host import HostError, tls_json

FQDN = "xu01.example.com"
ADMIN_ONLY_ACL = [
    {"identity": "NT AUTHORITY\\SYSTEM", "sid": "S-1-5-18", "rights": "FullControl", "type": "Allow"},
    {"identity": "BUILTIN\\Administrators", "sid": "S-1-5-32-544", "rights": "FullControl", "type": "Allow"},
]
CERTREQ_RPC_ERROR = "certreq exited with -2147023174: The RPC server is unavailable. 0x800706ba"


def ca_certificate() -> x509.Certificate:
    """The self-signed root of support.certs' test CA."""
    return (
        x509.CertificateBuilder()
        .subject_name(CA_NAME)
        .issuer_name(CA_NAME)
        .public_key(CA_KEY.public_key())
        .serial_number(1)
        .not_valid_before(NOW - datetime.timedelta(days=365))
        .not_valid_after(NOW + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(CA_KEY, hashes.SHA256())
    )


CA_CERTIFICATE = ca_certificate()


def make_pfx(
    cert: x509.Certificate,
    key: ec.EllipticCurvePrivateKey | None,
    password: str | None = "correct horse battery staple",  # noqa: S107 - a test value
    *,
    chain: tuple[x509.Certificate, ...] = (CA_CERTIFICATE,),
) -> bytes:
    """A PFX of ``cert`` with ``key`` (None: none) and ``chain``, as Windows' export would write it."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
    )
    if key is None:
        return pkcs12.serialize_key_and_certificates(b"xu01", None, None, [cert, *chain], encryption)
    return pkcs12.serialize_key_and_certificates(b"xu01", key, cert, list(chain) or None, encryption)


def thumbprint_of(cert: x509.Certificate) -> str:
    return hashlib.sha1(der(cert), usedforsecurity=False).hexdigest().upper()


@dataclass
class SwapFakeHost(ChangingFakeHost):
    certreq_failures: int = 0
    journals: dict[str, str] = field(default_factory=dict)
    archived: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    keys: dict[str, ec.EllipticCurvePrivateKey] = field(default_factory=dict)

    def add_keyed(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, acl: list[dict[str, Any]] | None = None) -> str:
        thumbprint = self.add_certificate(cert, acl=acl)
        self.keys[thumbprint] = key
        return thumbprint

    def thumbprints(self) -> list[str]:
        return [entry["thumbprint"] for entry in self.certificates]

    def op_pfx_import(self, args: dict[str, Any]) -> dict[str, Any]:
        password = args.get("password")
        try:
            bundle = pkcs12.load_pkcs12(base64.b64decode(args["pfx_b64"]), password.encode() if password else None)
        except ValueError as e:
            raise HostError("CryptographicException", "The specified network password is not correct.") from e
        if bundle.cert is None or bundle.key is None:
            raise HostError("InvalidArgument", "the PFX holds no certificate with a private key")
        thumbprint = thumbprint_of(bundle.cert.certificate)
        existing = self.certificate_entry(thumbprint)
        if existing is not None and existing["has_private_key"]:
            return {"thumbprint": thumbprint, "already_present": True, "repaired": False}
        if existing is not None:
            # A copy without its key is repaired from the PFX, as the agent does.
            self.certificates.remove(existing)
        assert isinstance(bundle.key, ec.EllipticCurvePrivateKey)
        self.add_keyed(bundle.cert.certificate, bundle.key, acl=[dict(rule) for rule in ADMIN_ONLY_ACL])
        return {"thumbprint": thumbprint, "already_present": False, "repaired": existing is not None}

    def op_cert_remove(self, args: dict[str, Any]) -> dict[str, Any]:
        wanted = args["thumbprint"]
        self.check_served(args.get("require_served"))
        entry = self.certificate_entry(wanted)
        if entry is None:
            return {"removed": False}
        self.certificates.remove(entry)
        self.removed.append(entry["thumbprint"])
        return {"removed": True}

    def op_cert_renew_reuse_key(self, args: dict[str, Any]) -> dict[str, Any]:
        entry = self.certificate_entry(args["thumbprint"])
        if entry is None:
            raise HostError("NotFound", f"no certificate has thumbprint {args['thumbprint']}")
        if args.get("run_as", "machine") != "machine":
            # In the WinRM network logon certreq has no credentials for the CA.
            raise HostError("CertreqFailed", "certreq exited with -2146877419: The enrollment policy server cannot be located.")
        if self.certreq_failures > 0:
            self.certreq_failures -= 1
            raise HostError("CertreqFailed", CERTREQ_RPC_ERROR)
        old = x509.load_der_x509_certificate(base64.b64decode(entry["der_b64"]))
        names = old.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
        renewed, key = mint(FQDN, sans=tuple(names), days_left=365, valid_from_days_ago=0.01, key=self.keys[entry["thumbprint"]])
        # Renewal keeps the key container, so its ACL.
        thumbprint = self.add_keyed(renewed, key, acl=entry["key"]["acl"])
        self.certificates.remove(entry)
        self.archived.append(entry["thumbprint"])
        output = f"Installed Certificate:\r\n  Thumbprint: {thumbprint.lower()}"
        return {"thumbprint": thumbprint, "output": output, "exit_code": 0, "enrolled_as": "machine"}


def swap_host(*, old_days_left: float = 20, crlf: bool = True) -> tuple[SwapFakeHost, str, x509.Certificate]:
    """A running XU bound to one certificate for web server and configuration server, as the lab's healthy hosts are."""
    cert, key = mint(FQDN, sans=(FQDN, "xu01"), days_left=old_days_left)
    host = SwapFakeHost()
    thumbprint = host.add_keyed(cert, key)
    text = tls_json(web=thumbprint, config=thumbprint)
    host.files[TLS_FILE] = text.replace("\n", "\r\n") if crlf else text
    host.files["config\\version.txt"] = "6.8.1.2"
    assert host.start_service(), host.start_error
    return host, thumbprint, cert
