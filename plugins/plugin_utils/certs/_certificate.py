# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Certificates parsed and judged on the controller. Private to this collection."""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass, field
from typing import Any

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID
except ImportError as e:  # reported by the action base, where it can become a clear failure
    CRYPTOGRAPHY_IMPORT_ERROR: ImportError | None = e
else:
    CRYPTOGRAPHY_IMPORT_ERROR = None

LOCAL_SYSTEM_SID = "S-1-5-18"
ADMINISTRATORS_SID = "S-1-5-32-544"
KEY_READ_RIGHTS = ("Read", "FullControl")


@dataclass(frozen=True)
class ServiceIdentity:
    """Who the service runs as, the way Windows checks access: a SID and the SIDs of its groups.

    ``account`` is only for messages: names differ between the service configuration and an
    ACL (``NT AUTHORITY\\NetworkService`` and ``NETWORK SERVICE``), SIDs do not.
    ``groups`` is None when the host could not tell them; then only the account's own SID counts.
    """

    account: str | None
    sid: str | None
    groups: tuple[str, ...] | None

    @classmethod
    def from_service(cls, service: dict[str, Any] | None) -> ServiceIdentity:
        service = service or {}
        groups = service.get("account_groups")
        sid = service.get("account_sid")
        return cls(
            service.get("account"),
            str(sid).upper() if sid else None,
            tuple(str(group).upper() for group in groups) if isinstance(groups, list) else None,
        )


@dataclass(frozen=True)
class CertificateFacts:
    """What the controller knows about one certificate, independent of any host."""

    thumbprint: str
    subject: str
    issuer: str
    serial_number: str
    not_before: datetime.datetime
    not_after: datetime.datetime
    dns_names: tuple[str, ...]
    server_auth: bool
    key_type: str
    public_key_sha256: str
    self_signed: bool
    # The certificate itself, for what needs more than these facts (the ACME CA's renewal information asks about it).
    der: bytes = field(default=b"", repr=False, compare=False)

    def days_left(self, now: datetime.datetime) -> float:
        return (self.not_after - now).total_seconds() / 86400

    def is_expired(self, now: datetime.datetime) -> bool:
        return now >= self.not_after

    def is_not_yet_valid(self, now: datetime.datetime) -> bool:
        return now < self.not_before

    def covers(self, fqdn: str | None) -> bool | None:
        """Whether the SAN names the host (None when the host's name is unknown)."""
        if not fqdn:
            return None
        return any(dns_name_matches(pattern, fqdn) for pattern in self.dns_names)

    def to_result(self, now: datetime.datetime, fqdn: str | None) -> dict[str, Any]:
        return {
            "thumbprint": self.thumbprint,
            "subject": self.subject,
            "issuer": self.issuer,
            "serial_number": self.serial_number,
            "not_before": iso(self.not_before),
            "not_after": iso(self.not_after),
            "days_left": int(self.days_left(now)),  # whole days, towards zero
            "expired": self.is_expired(now),
            "not_yet_valid": self.is_not_yet_valid(now),
            "dns_names": list(self.dns_names),
            "san_covers_fqdn": self.covers(fqdn),
            "server_auth": self.server_auth,
            "key_type": self.key_type,
            "self_signed": self.self_signed,
        }


ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).strftime(ISO_FORMAT)


def parse_iso(value: Any) -> datetime.datetime | None:
    """A time as ``iso`` writes it (``2026-11-28T12:30:00Z``), in UTC; None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.datetime.strptime(value, ISO_FORMAT).replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return None


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def thumbprint_of(der: bytes) -> str:
    # SHA-1 is what Windows calls the thumbprint; it identifies, it does not protect.
    return hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()


def parse_der(der: bytes) -> CertificateFacts:
    return facts_of(x509.load_der_x509_certificate(der), der)


def facts_of(cert: x509.Certificate, der: bytes | None = None) -> CertificateFacts:
    der = der if der is not None else cert.public_bytes(serialization.Encoding.DER)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names = tuple(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        dns_names = ()
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        # Windows treats a certificate without EKU as valid for every purpose.
        server_auth = ExtendedKeyUsageOID.SERVER_AUTH in eku or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in eku
    except x509.ExtensionNotFound:
        server_auth = True
    public_key = cert.public_key()
    spki = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return CertificateFacts(
        thumbprint=thumbprint_of(der),
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial_number=format(cert.serial_number, "X"),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        dns_names=dns_names,
        server_auth=server_auth,
        key_type=describe_key(public_key),
        public_key_sha256=hashlib.sha256(spki).hexdigest(),
        self_signed=cert.issuer == cert.subject,
        der=der,
    )


def describe_key(public_key: object) -> str:
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"RSA {public_key.key_size}"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return f"EC {public_key.curve.name}"
    return type(public_key).__name__


def dns_name_matches(pattern: str, fqdn: str) -> bool:
    """RFC 6125 matching: case-insensitive, a wildcard stands for one whole left-most label."""
    pattern = pattern.rstrip(".").lower()
    name = fqdn.rstrip(".").lower()
    if pattern.startswith("*."):
        head, _dot, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == name


def key_readable_by(identity: ServiceIdentity | None, key: dict[str, Any] | None, has_private_key: bool) -> bool | None:
    """Whether the service may read the private key, judged from the key file's ACL as Windows does.

    An access is granted when an Allow entry for the account's SID or one of its groups' SIDs
    gives Read or FullControl, and no Deny entry for one of them takes it away. None when it
    cannot be told: the account's SID or the ACL is unknown, or an entry carries no SID.
    """
    if not has_private_key:
        return False
    sid = identity.sid if identity is not None else None
    if sid == LOCAL_SYSTEM_SID:
        # The machine key set always grants SYSTEM; the service runs as it.
        return True
    acl = (key or {}).get("acl")
    if identity is None or not sid or acl is None or any(not entry.get("sid") for entry in acl):
        return None
    principals = {sid, *(identity.groups or ())}
    relevant = [entry for entry in acl if str(entry["sid"]).upper() in principals]
    if any(entry.get("type") == "Deny" for entry in relevant):
        return False
    return any(entry.get("type") == "Allow" and entry.get("rights") in KEY_READ_RIGHTS for entry in relevant)
