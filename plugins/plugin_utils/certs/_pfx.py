# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PFX (PKCS#12) files judged on the controller, before anything reaches a host. Private to this collection.

``open_pfx`` opens the file (password, private key, the certificate that carries it);
``judge_pfx`` judges what is inside: validity window, Server Authentication EKU, and the
chain, signature by signature, up to a root in the PFX or in a CA bundle (``ca_path``).
The host's name is judged separately (``san_problem``), since it may only be known after
the host has been read.
"""

from __future__ import annotations

import datetime
import functools
from dataclasses import dataclass, field
from typing import Any

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import pkcs12
except ImportError as e:  # the action base reports the missing library before any of this runs
    PFX_IMPORT_ERROR: ImportError | None = e
else:
    PFX_IMPORT_ERROR = None

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._certificate import CertificateFacts, facts_of, iso

# Deeper chains than this are not built by any public CA; the bound stops loops of cross-signed certificates.
MAX_CHAIN_LENGTH = 8
# The DER encoding of the PBES2 OID (1.2.840.113549.1.5.13). A PKCS#12 file names its encryption in the clear, so
# its presence means AES (OpenSSL 3's default), which Windows Server 2016 cannot import: it says the password is wrong.
PBES2_OID_DER = bytes.fromhex("06092a864886f70d01050d")
# PBKDF iterations of the re-encoded file; Windows' own export uses 2000.
WINDOWS_PFX_KDF_ROUNDS = 2048
# The MAC every supported Windows Server verifies: SHA-1 (1.3.14.3.2.26), what Windows' own export writes. Server 2016 predates
# the SHA-256 MAC that came with its AES export (PKCS12_PBES2_EXPORT_PARAMS: Windows 10 1709, Server 2019); unverified whether
# its import checks one, so a PFX with any other MAC is re-encoded too (the stricter choice, docs/testing-on-windows.md).
SHA1_MAC_OID = "1.3.14.3.2.26"


class PfxError(ValueError):
    """A PFX or CA bundle that cannot be used; the message names the problem and the fix."""


@dataclass(frozen=True)
class OpenedPfx:
    """What a PFX holds: the certificate that carries the private key, and the others."""

    certificate: x509.Certificate
    others: tuple[x509.Certificate, ...]
    friendly_name: str | None

    @property
    def facts(self) -> CertificateFacts:
        return facts_of(self.certificate)


@dataclass(frozen=True)
class ChainLink:
    """One issuer above the leaf, and where it was found (``pfx`` or ``ca_path``)."""

    facts: CertificateFacts
    source: str

    def to_result(self) -> dict[str, str]:
        return {"subject": self.facts.subject, "thumbprint": self.facts.thumbprint, "not_after": iso(self.facts.not_after), "source": self.source}


@dataclass(frozen=True)
class PfxJudgement:
    """The verdict on a PFX. ``errors`` always fail; the EKU problem fails only when asked to be strict."""

    leaf: CertificateFacts
    chain: tuple[ChainLink, ...]
    trusted_by: str | None  # "pfx" (a root inside the file), "ca_path", or None when the chain stops short
    errors: tuple[str, ...] = ()
    eku_problem: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def thumbprint(self) -> str:
        return self.leaf.thumbprint

    def to_result(self, now: datetime.datetime, fqdn: str | None) -> dict[str, Any]:
        details = self.leaf.to_result(now, fqdn)
        details["chain"] = [link.to_result() for link in self.chain]
        details["chain_trusted_by"] = self.trusted_by
        return details


def open_pfx(data: bytes, password: str | None, source: str = "the PFX") -> OpenedPfx:
    """Open a PFX with its password; PfxError when it is not one, the password is wrong, or the key is missing.

    Remembered per process for the last few PFX files: opening one validates its RSA key (about 40 ms of CPU), and a
    renewal's task opens the same file to check it and again to send it, under two names (the role's variable and
    the module's option). What is remembered holds no key material, and is keyed by the file and its password only:
    ``source`` only names the file in an error, and an error is not remembered.
    """
    try:
        return _open_pfx(data, password)
    except _Unopenable as e:
        raise PfxError(e.problem.replace(_SOURCE, source)) from None


_SOURCE = "{source}"


class _Unopenable(Exception):
    """Why a PFX cannot be opened, ``{source}`` standing for its name."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


@functools.lru_cache(maxsize=4)
def _open_pfx(data: bytes, password: str | None) -> OpenedPfx:
    if data.lstrip().startswith(b"-----BEGIN"):
        raise _Unopenable("{source} is a PEM file, not a PFX (PKCS#12); convert it with `openssl pkcs12 -export`")
    # A PFX without a password may be encrypted with an empty one or with none at all; both are tried.
    attempts = [password.encode("utf-8")] if password else [None, b""]
    bundle = None
    for attempt in attempts:
        try:
            bundle = pkcs12.load_pkcs12(data, attempt)
        except ValueError:
            continue
        break
    if bundle is None:
        if password:
            raise _Unopenable("Unable to open {source}: the password (pfx_password) is wrong, or the file is not a PFX (PKCS#12)")
        raise _Unopenable("Unable to open {source} without a password: set pfx_password, or check that the file is a PFX (PKCS#12)")
    others = tuple(item.certificate for item in bundle.additional_certs)
    if bundle.key is None:
        raise _Unopenable("{source} holds no private key; export the certificate together with its private key")
    if bundle.cert is None:
        # cryptography pairs the key with the certificate whose public key it matches; none did.
        subjects = ", ".join(c.subject.rfc4514_string() for c in others) or "none"
        raise _Unopenable(f"The private key in {{source}} belongs to none of its certificates ({subjects}); export the certificate with its own key")
    certificate = bundle.cert.certificate
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if bundle.key.public_key().public_bytes(serialization.Encoding.DER, spki) != certificate.public_key().public_bytes(serialization.Encoding.DER, spki):
        raise _Unopenable(f"The private key in {{source}} does not match its certificate {certificate.subject.rfc4514_string()}")
    friendly_name = bundle.cert.friendly_name.decode("utf-8", errors="replace") if bundle.cert.friendly_name else None
    return OpenedPfx(certificate, others, friendly_name)


def _der_item(data: bytes, position: int) -> tuple[int, int, int]:
    """(tag, start of the content, end of the content) of the DER item at ``position``; ValueError when it is cut short."""
    if position + 2 > len(data):
        raise ValueError("truncated")
    tag, length = data[position], data[position + 1]
    start = position + 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or start + count > len(data):
            raise ValueError("bad length")
        length = int.from_bytes(data[start:start + count], "big")
        start += count
    if start + length > len(data):
        raise ValueError("truncated")
    return tag, start, start + length


def _oid_text(encoded: bytes) -> str:
    first, numbers, value = encoded[0], [], 0
    for byte in encoded[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            numbers.append(value)
            value = 0
    return ".".join(str(n) for n in (first // 40, first % 40, *numbers))


def pfx_mac_algorithm(data: bytes) -> str | None:
    """The OID of the digest a PFX's MAC uses (PKCS #12: PFX ::= SEQUENCE {version, authSafe, macData MacData OPTIONAL},
    MacData ::= SEQUENCE {mac DigestInfo, ...}); None when it has no MAC or is not a PFX this reader understands."""
    try:
        _tag, body, end = _der_item(data, 0)
        _tag, _start, position = _der_item(data, body)  # version
        _tag, _start, position = _der_item(data, position)  # authSafe
        if position >= end:
            return None
        _tag, mac_data, _end = _der_item(data, position)  # macData
        _tag, digest_info, _end = _der_item(data, mac_data)  # mac: DigestInfo
        _tag, algorithm, _end = _der_item(data, digest_info)  # digestAlgorithm: AlgorithmIdentifier
        tag, oid, oid_end = _der_item(data, algorithm)
    except ValueError:
        return None
    return _oid_text(data[oid:oid_end]) if tag == 0x06 and oid_end > oid else None


def windows_2016_reads(data: bytes) -> bool:
    """Whether Windows Server 2016 imports the PFX as it is: no PBES2 (AES), and no MAC other than SHA-1."""
    return PBES2_OID_DER not in data and pfx_mac_algorithm(data) in (None, SHA1_MAC_OID)


def pfx_for_windows(data: bytes, password: str | None) -> bytes:
    """The PFX as every supported Windows Server imports it: re-encoded with 3DES and a SHA-1 MAC when it uses PBES2 or
    another MAC.

    The certificates, their order and friendly names and the key stay the same; whether the key
    may be exported is decided at import (``pfx_exportable``), not here. A PFX already in the
    legacy encryption with a SHA-1 MAC travels as it is. PfxError when it must be re-encoded and
    has no password: a file without one cannot be re-encoded with the legacy algorithms here.
    """
    if windows_2016_reads(data):
        return data
    if not password:
        raise PfxError(
            "The PFX is encrypted with AES (PBES2) or has a MAC other than SHA-1 and has no password, which Windows Server 2016"
            " cannot import; export it with a password (then it is re-encoded for the host) or with `openssl pkcs12 -export -legacy`"
        )
    bundle = pkcs12.load_pkcs12(data, password.encode("utf-8"))
    key = bundle.key
    if bundle.cert is None or not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise PfxError("The PFX holds no certificate with an RSA or EC private key, which is what Windows Server imports for TLS")
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(WINDOWS_PFX_KDF_ROUNDS)
        .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(hashes.SHA1())  # noqa: S303 - the MAC every Windows Server version verifies
        .build(password.encode("utf-8"))
    )
    return pkcs12.serialize_key_and_certificates(
        bundle.cert.friendly_name, key, bundle.cert.certificate, list(bundle.additional_certs) or None, encryption
    )


def load_ca_bundle(pem: bytes, source: str = "ca_path") -> tuple[x509.Certificate, ...]:
    """Every certificate of a PEM bundle; PfxError when there is none."""
    try:
        certificates = tuple(x509.load_pem_x509_certificates(pem))
    except ValueError as e:
        raise PfxError(f"{source} is not a PEM bundle of CA certificates: {e}") from e
    return certificates


def san_problem(leaf: CertificateFacts, fqdn: str | None) -> str | None:
    """What is wrong with the certificate's names for this host, None when they fit or the host is unknown."""
    if leaf.covers(fqdn) is False:
        names = ", ".join(leaf.dns_names) or "no DNS names"
        return f"the certificate {leaf.thumbprint} does not name {fqdn} in its Subject Alternative Name ({names})"
    return None


def eku_problem(leaf: CertificateFacts) -> str | None:
    if leaf.server_auth:
        return None
    return f"the certificate {leaf.thumbprint} lacks the Server Authentication extended key usage that a TLS server certificate needs"


def validity_errors(facts: CertificateFacts, now: datetime.datetime, what: str) -> list[str]:
    if facts.is_expired(now):
        return [f"{what} {facts.subject} ({facts.thumbprint}) expired on {iso(facts.not_after)}"]
    if facts.is_not_yet_valid(now):
        return [f"{what} {facts.subject} ({facts.thumbprint}) is not valid before {iso(facts.not_before)}"]
    return []


def _signed_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool | None:
    """True when ``issuer``'s key verifies ``certificate``'s signature; None when the names do not even match."""
    if certificate.issuer != issuer.subject:
        return None
    try:
        certificate.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def _der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def judge_pfx(opened: OpenedPfx, *, now: datetime.datetime, ca_bundle: tuple[x509.Certificate, ...] | None) -> PfxJudgement:
    """Judge the certificate of an opened PFX and its chain.

    Each issuer must have signed the certificate below it. The chain must end at a
    self-signed root inside the PFX, or, with ``ca_bundle``, at a certificate of the
    bundle. Without a bundle, a chain that stops short of a root is only noted: the host
    may well hold the missing certificates.
    """
    leaf = opened.facts
    errors = validity_errors(leaf, now, "the certificate")
    notes: list[str] = []
    anchors = {_der(c): c for c in ca_bundle or ()}
    pool = [*anchors.values(), *(c for c in opened.others if _der(c) not in anchors)]
    chain: list[ChainLink] = []
    trusted_by: str | None = None
    broken = False
    current = opened.certificate
    for _depth in range(MAX_CHAIN_LENGTH):
        if _der(current) in anchors:
            trusted_by = "ca_path"
            break
        if current.issuer == current.subject and _signed_by(current, current):
            if not anchors:
                trusted_by = "pfx"
                if not chain:
                    notes.append(f"the certificate {leaf.thumbprint} is self-signed: clients must be told to trust it")
            break
        verdicts = [(candidate, _signed_by(current, candidate)) for candidate in pool if _der(candidate) != _der(current)]
        issuer = next((candidate for candidate, signed in verdicts if signed), None)
        if issuer is None:
            broken = any(signed is False for _candidate, signed in verdicts)
            if broken:
                errors.append(
                    f"the signature of {current.subject.rfc4514_string()} does not verify with the key of its issuer"
                    f" {current.issuer.rfc4514_string()} as found in the PFX or ca_path: the chain is broken"
                )
            break
        link = ChainLink(facts_of(issuer), "ca_path" if _der(issuer) in anchors else "pfx")
        errors += validity_errors(link.facts, now, "the issuing certificate")
        chain.append(link)
        current = issuer
    else:
        broken = True
        errors.append(f"the chain of {leaf.subject} is longer than {MAX_CHAIN_LENGTH} certificates")
    if trusted_by is None and not broken:
        top = current.issuer.rfc4514_string()
        if anchors:
            errors.append(f"the chain of {leaf.subject} does not lead to a certificate in ca_path (it stops at {top}); give the CA bundle that issued it")
        else:
            notes.append(f"the PFX does not carry the root of its chain (it stops at {top}); set ca_path to check the chain against your CA")
    return PfxJudgement(
        leaf=leaf,
        chain=tuple(chain),
        trusted_by=trusted_by,
        errors=tuple(errors),
        eku_problem=eku_problem(leaf),
        notes=tuple(notes),
    )
