# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The certificate's key, its request and the PFX, made in memory with cryptography. Private to this collection.

The private key is generated here, signs the CSR, and leaves this process only inside a PFX encrypted with a
one-time password, in the encoding every supported Windows Server imports (``_pfx.pfx_for_windows``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import pkcs12
    from cryptography.x509.oid import NameOID
except ImportError:  # the caller reports it (issue.missing_requirements)
    pass

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.acme.secrets import Secret, new_password
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._pfx import pfx_for_windows

if TYPE_CHECKING:
    PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def generate_key(key_type: str) -> PrivateKey:
    """A new key of the type ``xu_renew_acme_key_type`` names (``rsa3072`` unless told otherwise)."""
    if key_type.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[3:]))
    curve: ec.EllipticCurve = ec.SECP384R1() if key_type == "ecdsa_p384" else ec.SECP256R1()
    return ec.generate_private_key(curve)


def csr_der(key: PrivateKey, names: tuple[str, ...]) -> bytes:
    """A CSR for ``names`` (the first also as the subject's CN, which Windows' certificate dialogs show)."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
    builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(name) for name in names]), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


@dataclass(frozen=True)
class IssuedPfx:
    """The new certificate as the host imports it. ``repr`` shows neither the file nor its password."""

    content: bytes
    password: Secret
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]

    def __repr__(self) -> str:
        return f"IssuedPfx(subject={self.certificate.subject.rfc4514_string()!r}, {len(self.content)} bytes, password=<secret>)"


def build_pfx(key: PrivateKey, chain_pem: list[str], friendly_name: str) -> IssuedPfx:
    """The key, the certificate and its issuers (never the root: Windows keeps roots in its own store) in one PFX."""
    certificates = [x509.load_pem_x509_certificate(pem.encode("ascii")) for pem in chain_pem]
    leaf, issuers = certificates[0], tuple(c for c in certificates[1:] if c.issuer != c.subject)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(serialization.Encoding.DER, spki) != key.public_key().public_bytes(serialization.Encoding.DER, spki):
        raise ValueError("the CA's certificate does not carry the key this request was made with")
    password = new_password()
    modern = pkcs12.serialize_key_and_certificates(
        friendly_name.encode("utf-8"),
        key,
        leaf,
        list(issuers) or None,
        serialization.BestAvailableEncryption(password.reveal().encode("utf-8")),
    )
    return IssuedPfx(pfx_for_windows(modern, password.reveal()), password, leaf, issuers)
