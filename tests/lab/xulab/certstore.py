"""The LocalMachine certificate stores of a host, with private keys as key containers.

A key container is what Windows keeps under MachineKeys (CSP) or Crypto\\Keys (CNG): the
key and its ACL. Certificates renewed with the same key share the container, so they
share its ACL; an imported PFX always gets a new container.
"""

from __future__ import annotations

import base64
import itertools
import re
import time
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from .accounts import ADMINISTRATORS, SYSTEM, XU_SERVICE_IDENTITIES, display_name, sid_of
from .ca import key_id, thumbprint
from .errors import PrimitiveError
from .timefmt import iso_utc

READ_RIGHTS = ("Read", "FullControl")
_container_numbers = itertools.count(1)


@dataclass
class AclEntry:
    """An access rule of a key file, held by SID as Windows does."""

    sid: str
    rights: str
    type: str

    @property
    def identity(self) -> str:
        return display_name(self.sid)

    def as_json(self) -> dict[str, str]:
        return {"identity": self.identity, "sid": self.sid, "rights": self.rights, "type": self.type}


def default_machine_key_acl() -> list[AclEntry]:
    return [AclEntry(sid_of(SYSTEM), "FullControl", "Allow"), AclEntry(sid_of(ADMINISTRATORS), "FullControl", "Allow")]


@dataclass
class KeyContainer:
    private_key: rsa.RSAPrivateKey = field(repr=False)
    provider: str
    acl: list[AclEntry]
    exportable: bool = False
    number: int = field(default_factory=lambda: next(_container_numbers))

    @property
    def key_id(self) -> str:
        return key_id(self.private_key.public_key())

    def grant_read(self, sid: str) -> bool:
        if any(e.sid == sid and e.type == "Allow" and e.rights in READ_RIGHTS for e in self.acl):
            return False
        self.acl.append(AclEntry(sid, "Read", "Allow"))
        return True

    def readable_by(self, sids: frozenset[str]) -> bool:
        """Windows access check: any matching Deny wins, else a matching Allow grants."""
        relevant = [e for e in self.acl if e.sid in sids and e.rights in READ_RIGHTS]
        if any(e.type == "Deny" for e in relevant):
            return False
        return any(e.type == "Allow" for e in relevant)

    def readable_by_xu_service(self) -> bool:
        return self.readable_by(XU_SERVICE_IDENTITIES)

    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


@dataclass
class StoredCertificate:
    certificate: x509.Certificate
    key: KeyContainer | None
    friendly_name: str = ""
    added_at: float = field(default_factory=time.time)
    # Renewal archives the predecessor: it stays in the store but no longer enumerates.
    archived: bool = False

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def thumbprint(self) -> str:
        return thumbprint(self.der)

    @property
    def has_private_key(self) -> bool:
        return self.key is not None

    @property
    def subject(self) -> str:
        return self.certificate.subject.rfc4514_string()

    @property
    def common_name(self) -> str:
        names = self.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(names[0].value) if names else ""

    @property
    def dns_names(self) -> list[str]:
        try:
            extension = self.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except x509.ExtensionNotFound:
            return []
        return list(extension.value.get_values_for_type(x509.DNSName))

    @property
    def public_key_id(self) -> str:
        public_key = self.certificate.public_key()
        return key_id(public_key) if isinstance(public_key, rsa.RSAPublicKey) else ""

    def listing(self) -> dict[str, object]:
        """The entry as the cert_list primitive reports it."""
        key: dict[str, object] | None = None
        if self.key is not None:
            # A rule whose SID has no name is listed by its SID, as the agent does when Translate fails.
            key = {"provider": self.key.provider, "acl": [e.as_json() for e in self.key.acl]}
        return {
            "thumbprint": self.thumbprint,
            "der_b64": base64.b64encode(self.der).decode("ascii"),
            "has_private_key": self.has_private_key,
            "archived": self.archived,
            "friendly_name": self.friendly_name,
            "key": key,
        }

    def state(self) -> dict[str, object]:
        """The entry as the lab's `state` reports it."""
        return {
            "thumbprint": self.thumbprint,
            "subject": self.subject,
            "san": self.dns_names,
            "issuer": self.certificate.issuer.rfc4514_string(),
            "serial": format(self.certificate.serial_number, "X"),
            "not_before": iso_utc(self.certificate.not_valid_before_utc),
            "not_after": iso_utc(self.certificate.not_valid_after_utc),
            "friendly_name": self.friendly_name,
            "has_private_key": self.has_private_key,
            "key_acl": [e.as_json() for e in self.key.acl] if self.key else None,
            "provider": self.key.provider if self.key else None,
            "exportable": self.key.exportable if self.key else None,
            "key_id": self.public_key_id,
            "archived": self.archived,
        }


def normalise_thumbprint(value: object) -> str:
    """As the agent reads a thumbprint: every non-hex character (spaces, U+200E) dropped, upper case."""
    text = "" if value is None else str(value)
    thumbprint_value = re.sub(r"[^0-9A-Fa-f]", "", text).upper()
    if len(thumbprint_value) != 40:
        raise PrimitiveError("InvalidArgument", "a thumbprint has 40 hex digits")
    return thumbprint_value


class CertificateStore:
    """One store (My, Root, CA) of LocalMachine; entries keep their insertion order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._entries: dict[str, StoredCertificate] = {}

    def add(self, entry: StoredCertificate) -> StoredCertificate:
        """X509Store.Add: a certificate already present is replaced but keeps its properties (archived stays archived)."""
        existing = self._entries.get(entry.thumbprint)
        if existing is None:
            self._entries[entry.thumbprint] = entry
            return entry
        if entry.key is not None:
            existing.key = entry.key
        existing.friendly_name = entry.friendly_name or existing.friendly_name
        return existing

    def get(self, thumbprint_value: str, include_archived: bool = False) -> StoredCertificate | None:
        """The certificate as an X509Store opened with(out) IncludeArchived finds it."""
        entry = self._entries.get(thumbprint_value.upper())
        return entry if entry is not None and (include_archived or not entry.archived) else None

    def remove(self, thumbprint_value: str) -> StoredCertificate | None:
        if self.get(thumbprint_value) is None:
            return None
        return self._entries.pop(thumbprint_value.upper())

    def entries(self) -> list[StoredCertificate]:
        """What enumerates: every certificate but the archived ones."""
        return [entry for entry in self._entries.values() if not entry.archived]

    def all_entries(self) -> list[StoredCertificate]:
        return list(self._entries.values())

    def key_ids(self) -> set[str]:
        return {entry.public_key_id for entry in self._entries.values()}


class MachineStores:
    """Cert:\\LocalMachine: the stores a fresh Windows Server has that matter here.

    REQUEST holds certificate requests made with `certreq -new` (a self-signed placeholder
    carrying the request's key) until `certreq -accept` installs the issued certificate.
    """

    def __init__(self) -> None:
        self._stores = {name.casefold(): CertificateStore(name) for name in ("My", "Root", "CA", "REQUEST")}

    @property
    def my(self) -> CertificateStore:
        return self._stores["my"]

    @property
    def requests(self) -> CertificateStore:
        return self._stores["request"]

    def intermediates_for(self, certificate: x509.Certificate) -> list[x509.Certificate]:
        """What Schannel sends after the leaf: its issuers found in CA, up to (without) the self-signed root."""
        chain: list[x509.Certificate] = []
        current = certificate
        while len(chain) < 8 and current.issuer != current.subject:
            issuer = next(
                (e.certificate for e in self._stores["ca"].entries() if e.certificate.subject == current.issuer and e.certificate not in chain),
                None,
            )
            if issuer is None or issuer.issuer == issuer.subject:
                break
            chain.append(issuer)
            current = issuer
        return chain

    def open(self, name: object) -> CertificateStore:
        """The store, or the error X509Store.Open raises for a store that does not exist."""
        store = self._stores.get(name.casefold()) if isinstance(name, str) else None
        if store is None:
            raise PrimitiveError("CryptographicException", "The system cannot find the file specified.")
        return store
