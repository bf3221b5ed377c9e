"""Certificates coming and going the ways Windows servers see them.

`certreq -enroll ... Renew ReuseKeys` against the domain's CA (same key, old certificate
archived), a win-acme renewal (new key, old certificate deleted, XU untouched), and PFX
files minted by the lab CA for the collection to import.
"""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from .accounts import LAB_ADMIN, LAB_DOMAIN_NETBIOS
from .ca import LeafRequest, make_pfx
from .certstore import KeyContainer, StoredCertificate, default_machine_key_acl
from .errors import LabError
from .timefmt import iso_utc, utc_now
from .xusettings import StartFailure

if TYPE_CHECKING:
    from .host import Host

CERTREQ_BACKDATE = timedelta(minutes=10)  # AD CS back-dates NotBefore for clock skew
# certreq's exit code is the HRESULT of its failure.
CERTREQ_NOT_FOUND = -2146885628
CERTREQ_RPC_UNAVAILABLE = -2147023174
CERTREQ_BAD_KEYSET = -2146893802
CERTREQ_EXPIRED = -2146762495
CERTREQ_POLICY_SERVER_NOT_FOUND = -2146877419
# certreq in a WinRM network logon: no credentials to pass on, so the enrolment policy (LDAP) and the CA (DCOM) are
# out of reach. The exact text Windows prints here is unverified; that it fails is what the lab holds to.
NETWORK_LOGON_FAILURE = (
    "Certificate Request Processor: The enrollment policy server cannot be located. 0x80094015 (-2146877419 "
    "CERTSRV_E_ENROLLMENT_POLICY_SERVER_NOT_FOUND) (a network logon without delegation has no credentials for the CA)"
)
WINACME_LIFETIME_DAYS = 90


def certreq_renew(host: Host, thumbprint: str, run_as: str = "machine", timeout_s: float = 300) -> tuple[int, str, list[str]]:
    """`certreq -enroll -machine -q -cert <thumbprint> Renew ReuseKeys` against the lab's AD CS.

    `run_as` machine: in a one-shot scheduled task as SYSTEM (the computer account reaches the
    CA); caller: in the WinRM session itself, a network logon that cannot reach the CA.
    Returns certreq's exit code and output, and the leftover tasks swept before the task was registered.
    On success the new certificate shares the old one's key container (so its ACL) and the old certificate is archived.
    """

    def certreq(_task_id: str) -> tuple[int, str]:
        code, output = _certreq_as_machine(host, thumbprint) if run_as == "machine" else (CERTREQ_POLICY_SERVER_NOT_FOUND, NETWORK_LOGON_FAILURE)
        # Who asked the CA: the computer account (SYSTEM's network identity) or the WinRM user.
        account = f"{LAB_DOMAIN_NETBIOS}\\{host.name.upper()}$" if run_as == "machine" else LAB_ADMIN
        host.emit("certreq", thumbprint=thumbprint, enrolled_as=run_as, account=account, exit_code=code)
        return code, output

    if run_as == "caller":
        return (*certreq(""), [])
    (code, output), swept = host.certreq.run(timeout_s, {"certreq-<id>.txt": b""}, certreq)
    return code, output, swept


def _certreq_as_machine(host: Host, thumbprint: str) -> tuple[int, str]:
    old = host.stores.my.get(thumbprint)
    if old is None:
        return CERTREQ_NOT_FOUND, "Certificate Request Processor: Cannot find object or property. 0x80092004 (-2146885628 CRYPT_E_NOT_FOUND)"
    if host.faults.take_certreq_failure():
        return CERTREQ_RPC_UNAVAILABLE, (
            "Certificate Request Processor: The RPC server is unavailable. 0x800706ba (WIN32: 1722 RPC_S_SERVER_UNAVAILABLE)"
        )
    if old.key is None:
        return CERTREQ_BAD_KEYSET, "Certificate Request Processor: Keyset does not exist 0x80090016 (-2146893802 NTE_BAD_KEYSET)"
    now = utc_now()
    if old.certificate.not_valid_after_utc < now:
        # A renewal request is signed with the old certificate; the CA rejects an expired signer.
        return CERTREQ_EXPIRED, (
            "Certificate Request Processor: A required certificate is not within its validity period when verifying "
            "against the current system clock or the timestamp in the signed file. 0x800b0101 (-2146762495 CERT_E_EXPIRED)"
        )
    request = LeafRequest(
        common_name=old.common_name,
        dns_names=tuple(old.dns_names),
        not_before=now - CERTREQ_BACKDATE,
        not_after=now + timedelta(days=365),
        server_auth=_has_server_auth(old.certificate),
    )
    certificate = host.ca.issue(request, old.key.private_key.public_key())
    renewed = host.add_certificate(certificate, old.key, source="certreq")
    old.archived = True
    host.emit("cert_archive", thumbprint=old.thumbprint, successor=renewed.thumbprint)
    output = "\r\n".join(
        [
            "Active Directory Enrollment Policy",
            "  {6A2B0CF5-1F3E-4C1B-9E1A-0D5C2A7B3E11}",
            "  ldap:",
            "",
            f"Request ID: {certificate.serial_number % 100000}",
            "Certificate retrieved(Issued) Issued",
            "",
            *installed_certificate_lines(renewed),
        ]
    )
    return 0, output


def installed_certificate_lines(entry: StoredCertificate) -> list[str]:
    """What certreq prints once it has put a certificate into the store."""
    certificate = entry.certificate
    return [
        "Installed Certificate:",
        f"  Serial Number: {format(certificate.serial_number, 'x')}",
        f"  Subject: {entry.subject}",
        f"  NotBefore: {certificate.not_valid_before_utc.strftime('%m/%d/%Y %I:%M %p')}",
        f"  NotAfter: {certificate.not_valid_after_utc.strftime('%m/%d/%Y %I:%M %p')}",
        f"  Thumbprint: {entry.thumbprint.lower()}",
    ]


def issue_pfx(
    host: Host,
    password: str,
    *,
    expired: bool = False,
    not_yet_valid: bool = False,
    dns_names: list[str] | None = None,
    server_auth: bool = True,
    same_key_as: str | None = None,
    intermediate: bool = False,
    aes: bool = False,
    days_left: float = 365,
    expires_with: str | None = None,
) -> dict[str, object]:
    """A PFX signed by the lab CA for this host (or for other names), to hand to the collection.

    With `expires_with` (a thumbprint in the host's store) it expires at the same second as that certificate: a test
    can swap to it and back without either certificate being shorter than the other.

    With `intermediate` the leaf is signed by the lab's issuing CA, and the PFX holds it and the root.
    With `aes` it is encrypted as OpenSSL 3 does by default (PBES2, AES-256), which Server 2016 cannot read.
    """
    names = tuple(dns_names) if dns_names else (host.fqdn, host.name)
    now = utc_now()
    if expired:
        not_before, not_after = now - timedelta(days=366), now - timedelta(days=1)
    elif not_yet_valid:
        not_before, not_after = now + timedelta(days=30), now + timedelta(days=395)
    else:
        not_before, not_after = now - timedelta(hours=1), now + timedelta(days=days_left)
    if expires_with is not None:
        not_after = _certificate_of(host, expires_with).not_valid_after_utc
    key = host.pick_key() if same_key_as is None else _key_of(host, same_key_as)
    request = LeafRequest(names[0], names, not_before, not_after, server_auth)
    certificate = host.ca.issue(request, key.public_key(), via_issuing_ca=intermediate)
    chain = [host.ca.certificate]
    if intermediate:
        chain.insert(0, host.ca.issuing_ca()[0])
    pfx = make_pfx(certificate, key, password, friendly_name=names[0], chain=chain, aes=aes)
    entry = StoredCertificate(certificate, None)
    return {
        "pfx_b64": base64.b64encode(pfx).decode("ascii"),
        "thumbprint": entry.thumbprint,
        "subject": entry.subject,
        "san": entry.dns_names,
        "not_before": iso_utc(not_before),
        "not_after": iso_utc(not_after),
        "key_id": entry.public_key_id,
        "intermediate": StoredCertificate(chain[0], None).thumbprint if intermediate else None,
    }


def _certificate_of(host: Host, thumbprint: str) -> x509.Certificate:
    wanted = thumbprint.strip().upper()
    for entry in host.stores.my.all_entries():
        if entry.thumbprint == wanted:
            return entry.certificate
    raise LabError(f"{host.name} holds no certificate with thumbprint {wanted}")


def _key_of(host: Host, thumbprint: str) -> rsa.RSAPrivateKey:
    wanted = thumbprint.strip().upper()
    for entry in host.stores.my.all_entries():
        if entry.thumbprint == wanted and entry.key is not None:
            return entry.key.private_key
    raise LabError(f"{host.name} holds no certificate with a private key and thumbprint {wanted}")


def winacme_renew(host: Host) -> dict[str, object]:
    """A win-acme renewal: a new key and certificate in My, the previous one deleted; XU untouched."""
    old = bound_certificate(host)
    certificate, key = host.mint(host.default_request(days_left=90, lifetime_days=90))
    container = KeyContainer(key, "CNG", default_machine_key_acl())
    new = host.add_certificate(certificate, container, source="winacme", friendly_name=f"{host.fqdn} @ win-acme")
    if old is not None:
        host.remove_certificate(old.thumbprint)
    return {"old_thumbprint": old.thumbprint if old else None, "new_thumbprint": new.thumbprint}


def bound_certificate(host: Host) -> StoredCertificate | None:
    """The certificate XU's web server is bound to, if My lists it; else the host's newest one for its DNS name."""
    try:
        settings = host.service.settings.read()
    except StartFailure:
        settings = None
    if settings is not None and settings.web_certificate is not None:
        bound = host.stores.my.get(settings.web_certificate.thumbprint)
        if bound is not None:
            return bound
    mine = [e for e in host.stores.my.entries() if host.fqdn.casefold() in (n.casefold() for n in e.dns_names)]
    return max(mine, key=lambda e: e.certificate.not_valid_after_utc, default=None)


def _has_server_auth(certificate: x509.Certificate) -> bool:
    try:
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return ExtendedKeyUsageOID.SERVER_AUTH in list(usages)
