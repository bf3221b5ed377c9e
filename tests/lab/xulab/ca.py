"""The lab's certificate authority: a root CA, a pool of leaf keys and the minting of leaves.

RSA key generation is the one slow thing in the lab, so a lab generates a small pool of
leaf keys once (in threads, the work runs outside the GIL) and hands them out: hosts may
share a pool key, a single host never holds two unrelated certificates with one key.
"""

from __future__ import annotations

import hashlib
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import LabError
from .timefmt import utc_now

KEY_SIZE = 2048
DEFAULT_POOL_SIZE = 16
CA_COMMON_NAME = "xulab Root CA"
ISSUING_CA_COMMON_NAME = "xulab Issuing CA"
# A second root the hosts trust too (another company's CA, a test CA a policy spread): issues the `other_issuer` near miss.
OTHER_ROOT_COMMON_NAME = "xulab Partner Root CA"

Signer = tuple[x509.Certificate, rsa.RSAPrivateKey]


def generate_key(size: int = KEY_SIZE) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=size)


def thumbprint(der: bytes) -> str:
    """Windows' certificate thumbprint: SHA-1 of the DER, upper-case hex."""
    return hashlib.sha1(der).hexdigest().upper()  # noqa: S324 - that is what Windows computes


def key_id(public_key: rsa.RSAPublicKey) -> str:
    """A fingerprint of a public key (SHA-256 of its SubjectPublicKeyInfo)."""
    spki = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


@dataclass(frozen=True)
class LeafRequest:
    """What a leaf certificate says about its subject and validity."""

    common_name: str
    dns_names: tuple[str, ...]
    not_before: datetime
    not_after: datetime
    server_auth: bool = True
    # Further non-critical extensions, such as the certificate template AD CS names in what it issues.
    extensions: tuple[x509.ExtensionType, ...] = ()


class KeyPool:
    """Leaf keys generated once per lab."""

    def __init__(self, size: int = DEFAULT_POOL_SIZE, workers: int = 2) -> None:
        with ThreadPoolExecutor(max_workers=workers) as executor:
            self._keys = list(executor.map(lambda _: generate_key(), range(size)))
        self._random = secrets.SystemRandom()

    def pick(self, exclude_key_ids: set[str]) -> rsa.RSAPrivateKey:
        """A pool key whose fingerprint is not excluded; a fresh key if the pool is used up."""
        candidates = [key for key in self._keys if key_id(key.public_key()) not in exclude_key_ids]
        if candidates:
            return self._random.choice(candidates)
        return generate_key()


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass
class CertificateAuthority:
    """A self-signed RSA root that signs the lab's leaves, directly or through one issuing (intermediate) CA."""

    key: rsa.RSAPrivateKey
    certificate: x509.Certificate
    key_pool: KeyPool = field(repr=False)
    _issuing: Signer | None = field(default=None, repr=False)
    _other_root: Signer | None = field(default=None, repr=False)

    @classmethod
    def create(cls, pool_size: int = DEFAULT_POOL_SIZE) -> CertificateAuthority:
        with ThreadPoolExecutor(max_workers=1) as executor:
            ca_key_future = executor.submit(generate_key)
            pool = KeyPool(pool_size)
            ca_key = ca_key_future.result()
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "xulab"),
                x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME),
            ]
        )
        now = utc_now()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=3650))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_ca_key_usage(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        return cls(key=ca_key, certificate=certificate, key_pool=pool)

    def issuing_ca(self) -> Signer:
        """The intermediate CA under the root (certificate and key), made on first use."""
        if self._issuing is None:
            key = generate_key()
            now = utc_now()
            name = x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "xulab"),
                    x509.NameAttribute(NameOID.COMMON_NAME, ISSUING_CA_COMMON_NAME),
                ]
            )
            certificate = (
                x509.CertificateBuilder()
                .subject_name(name)
                .issuer_name(self.certificate.subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - timedelta(days=1825))
                .not_valid_after(now + timedelta(days=1825))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(_ca_key_usage(), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
                .sign(self.key, hashes.SHA256())
            )
            self._issuing = (certificate, key)
        return self._issuing

    def other_root(self) -> Signer:
        """A second self-signed root (certificate and key), unrelated to this one, made on first use."""
        if self._other_root is None:
            key = generate_key()
            name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "xulab partner"), x509.NameAttribute(NameOID.COMMON_NAME, OTHER_ROOT_COMMON_NAME)])
            now = utc_now()
            certificate = (
                x509.CertificateBuilder()
                .subject_name(name)
                .issuer_name(name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - timedelta(days=3650))
                .not_valid_after(now + timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(_ca_key_usage(), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256())
            )
            self._other_root = (certificate, key)
        return self._other_root

    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue(
        self, request: LeafRequest, public_key: rsa.RSAPublicKey, *, via_issuing_ca: bool = False, signer: Signer | None = None
    ) -> x509.Certificate:
        """A leaf signed by the root, by the issuing CA, or by `signer` (such as `other_root()`)."""
        if signer is None:
            signer = self.issuing_ca() if via_issuing_ca else (self.certificate, self.key)
        signer_certificate, signer_key = signer
        usages = [ExtendedKeyUsageOID.SERVER_AUTH] if request.server_auth else [ExtendedKeyUsageOID.CLIENT_AUTH]
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, request.common_name)]))
            .issuer_name(signer_certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(request.not_before)
            .not_valid_after(request.not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()), critical=False
            )
        )
        if request.dns_names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(name) for name in request.dns_names]), critical=False
            )
        for extension in request.extensions:
            builder = builder.add_extension(extension, critical=False)
        return builder.sign(signer_key, hashes.SHA256())


def leaf_request(
    common_name: str,
    dns_names: tuple[str, ...],
    *,
    days_left: float,
    lifetime_days: float = 365,
    server_auth: bool = True,
    now: datetime | None = None,
) -> LeafRequest:
    """A request valid until `days_left` from now, issued `lifetime_days` before that (never in the future)."""
    current = now or utc_now()
    not_after = current + timedelta(days=days_left)
    not_before = min(not_after - timedelta(days=lifetime_days), current - timedelta(hours=1))
    return LeafRequest(common_name, dns_names, not_before, not_after, server_auth)


def make_pfx(
    certificate: x509.Certificate,
    key: rsa.RSAPrivateKey,
    password: str,
    *,
    friendly_name: str,
    chain: list[x509.Certificate],
    aes: bool = False,
) -> bytes:
    """A PFX as Windows exports it (3DES, SHA-1 MAC), readable by every Windows version; with `aes` as OpenSSL 3 writes it."""
    encryption: serialization.KeySerializationEncryption
    if aes:
        if not password:
            raise LabError("a PFX encrypted with AES needs a password")
        # PBES2 with AES-256-CBC and a SHA-256 MAC: OpenSSL 3's `pkcs12 -export` default.
        encryption = serialization.BestAvailableEncryption(password.encode("utf-8"))
    elif password:
        encryption = (
            serialization.PrivateFormat.PKCS12.encryption_builder()
            .kdf_rounds(2000)
            .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
            .hmac_hash(hashes.SHA1())  # noqa: S303 - the legacy MAC Windows expects
            .build(password.encode("utf-8"))
        )
    else:
        encryption = serialization.NoEncryption()
    return pkcs12.serialize_key_and_certificates(
        friendly_name.encode("utf-8"), key, certificate, chain or None, encryption
    )


@dataclass(frozen=True)
class PfxContents:
    certificate: x509.Certificate
    key: rsa.RSAPrivateKey | None
    friendly_name: str
    # Every other certificate of the PFX (a chain's intermediates and root), in the PFX's order.
    others: tuple[x509.Certificate, ...] = ()


class PfxPasswordError(Exception):
    """The PFX could not be opened with the password (or is not a PFX at all)."""

    def __init__(self, not_a_pfx: bool) -> None:
        super().__init__("not a PFX" if not_a_pfx else "wrong password")
        self.not_a_pfx = not_a_pfx


# read_pfx's answer as it crosses a process boundary: ("ok", leaf DER, key PKCS#8 DER or None, friendly name, other DERs)
# or ("error", not_a_pfx).
PortablePfx = tuple[Any, ...]


def read_pfx_portable(data: bytes, password: str | None) -> PortablePfx:
    """read_pfx in a form that pickles (offload.run): DER certificates, the key unencrypted."""
    try:
        contents = read_pfx(data, password)
    except PfxPasswordError as exc:
        return ("error", exc.not_a_pfx)
    der = serialization.Encoding.DER
    key = None
    if contents.key is not None:
        key = contents.key.private_bytes(der, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return ("ok", contents.certificate.public_bytes(der), key, contents.friendly_name, tuple(o.public_bytes(der) for o in contents.others))


def pfx_from_portable(value: PortablePfx) -> PfxContents:
    """The PfxContents read_pfx_portable describes; PfxPasswordError as read_pfx raises it."""
    if value[0] == "error":
        raise PfxPasswordError(not_a_pfx=bool(value[1]))
    leaf, key_der, name, others = value[1:]
    # read_pfx validated the key already (as Windows does on import): loading it again need not.
    key = serialization.load_der_private_key(key_der, None, unsafe_skip_rsa_key_validation=True) if key_der else None
    return PfxContents(
        x509.load_der_x509_certificate(leaf),
        key if isinstance(key, rsa.RSAPrivateKey) else None,
        name,
        tuple(x509.load_der_x509_certificate(other) for other in others),
    )


# The bag attribute "Microsoft CSP Name" (1.3.6.1.4.1.311.17.1), DER-encoded, as Windows' PFX export writes it.
_CSP_NAME_OID = bytes.fromhex("06092b0601040182371101")
_KSP_NAMES = ("Microsoft Platform Crypto Provider",)


def _der_length(data: bytes, position: int) -> tuple[int, int]:
    """(length, offset of the contents) of the DER length at `position`."""
    first = data[position]
    if first < 0x80:
        return first, position + 1
    size = first & 0x7F
    return int.from_bytes(data[position + 1 : position + 1 + size], "big"), position + 1 + size


def pfx_provider_names(data: bytes) -> list[str]:
    """The provider names the PFX's (unencrypted) bag attributes carry."""
    names = []
    position = data.find(_CSP_NAME_OID)
    while position >= 0:
        cursor = position + len(_CSP_NAME_OID)
        try:
            if data[cursor] == 0x31:  # SET OF
                _set_length, cursor = _der_length(data, cursor + 1)
                if data[cursor] == 0x1E:  # BMPString
                    length, cursor = _der_length(data, cursor + 1)
                    names.append(data[cursor : cursor + length].decode("utf-16-be", "replace"))
        except IndexError:
            break
        position = data.find(_CSP_NAME_OID, position + 1)
    return names


def pfx_key_provider(data: bytes) -> str:
    """Where PFXImportCertStore (.NET Framework's Import) puts an RSA key: a CNG KSP if the PFX names one, else a CSP."""
    for name in pfx_provider_names(data):
        if name.endswith("Key Storage Provider") or name in _KSP_NAMES:
            return "CNG"
    return "CSP"


def is_intermediate(certificate: x509.Certificate) -> bool:
    """The agent's Test-XuIntermediate: a CA by its basic constraints, and not self-signed (subject is not issuer)."""
    if certificate.subject.public_bytes() == certificate.issuer.public_bytes():
        return False
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    return constraints.value.ca


def read_pfx(data: bytes, password: str | None) -> PfxContents:
    """The certificate that carries the key (else the first one), its key and friendly name, and the others."""
    passwords = [password.encode("utf-8")] if password else [b"", None]
    loaded: pkcs12.PKCS12KeyAndCertificates | None = None
    for candidate in passwords:
        try:
            loaded = pkcs12.load_pkcs12(data, candidate)
            break
        except (ValueError, TypeError):
            continue
    if loaded is None:
        # A DER SEQUENCE that failed to open is a PFX with another password.
        raise PfxPasswordError(not_a_pfx=not data.startswith(b"\x30"))
    key = loaded.key if isinstance(loaded.key, rsa.RSAPrivateKey) else None
    certificates = ([loaded.cert] if loaded.cert else []) + list(loaded.additional_certs)
    if not certificates:
        raise PfxPasswordError(not_a_pfx=True)
    chosen = certificates[0]
    if key is not None:
        wanted = key_id(key.public_key())
        for candidate_cert in certificates:
            public_key = candidate_cert.certificate.public_key()
            if isinstance(public_key, rsa.RSAPublicKey) and key_id(public_key) == wanted:
                chosen = candidate_cert
                break
        else:
            key = None
    name = chosen.friendly_name.decode("utf-8", "replace") if chosen.friendly_name else ""
    others = tuple(c.certificate for c in certificates if c is not chosen)
    return PfxContents(chosen.certificate, key, name, others)
