"""New certificates from the domain's CA: `certreq -new/-submit/-accept` with a template, and auto-enrolment.

`certreq_enrol` is what the cert_enroll primitive runs on the host: as the machine (a one-shot
SYSTEM task, whose network identity is the computer account) it reaches the CA; in the WinRM
session, a network logon without credentials to pass on, `-submit` fails. `autoenrol_renew` is
Windows certificate auto-enrolment renewing the bound certificate: a new key and certificate
for the same names, the old certificate archived (still in the store, no longer enumerated),
XU untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from .accounts import LAB_ADMIN, LAB_DOMAIN_NETBIOS
from .ca import LeafRequest
from .certstore import KeyContainer, default_machine_key_acl
from .enterprise_ca import Template
from .errors import LabError
from .renewals import (
    CERTREQ_BACKDATE,
    CERTREQ_POLICY_SERVER_NOT_FOUND,
    CERTREQ_RPC_UNAVAILABLE,
    NETWORK_LOGON_FAILURE,
    bound_certificate,
    installed_certificate_lines,
)
from .timefmt import utc_now

if TYPE_CHECKING:
    from .host import Host

# certreq's exit code is the HRESULT of the CA's denial.
CERTSRV_E_TEMPLATE_DENIED = -2146877422  # 0x80094012
CERTSRV_E_UNSUPPORTED_CERT_TYPE = -2146875392  # 0x80094800
RPC_UNAVAILABLE_TEXT = "Certificate Request Processor: The RPC server is unavailable. 0x800706ba (WIN32: 1722 RPC_S_SERVER_UNAVAILABLE)"
TEMPLATE_DENIED_TEXT = (
    "The permissions on the certificate template do not allow the current user to enroll for this type of certificate."
)
UNSUPPORTED_TEMPLATE_TEXT = "The requested certificate template is not supported by this CA."
# The agent's key_provider: the INF lines it writes, and the kind of key Windows makes (docs/agent-protocol.md, cert_enroll).
KEY_PROVIDERS: dict[str, tuple[tuple[str, ...], str]] = {
    "schannel_csp": (('ProviderName = "Microsoft RSA SChannel Cryptographic Provider"', "ProviderType = 12"), "CSP"),
    "software_ksp": (('ProviderName = "Microsoft Software Key Storage Provider"',), "CNG"),
}
DEFAULT_KEY_PROVIDER = "schannel_csp"
# certreq's label before a request id, by the host's display language (`fault --set certreq_language=de`). Unverified: the
# German text (the lab's is made up); what matters is that a label may be translated, while the quoted id line keeps its form.
REQUEST_ID_LABELS = {"en": "RequestId", "de": "Anforderungs-ID"}
# What auto-enrolment makes: the template's own provider, which the lab takes to be the Software KSP.
AUTOENROL_KEY_PROVIDER = "CNG"


@dataclass(frozen=True)
class EnrolmentRequest:
    """What the agent's INF file and certreq's arguments carry."""

    template: str
    dns_names: tuple[str, ...]
    ca_config: str | None
    key: rsa.RSAPrivateKey
    key_provider: str = DEFAULT_KEY_PROVIDER


@dataclass(frozen=True)
class EnrolmentOutcome:
    """certreq's exit code and text over all its steps; the certificate's thumbprint once accepted."""

    exit_code: int
    output: str
    disposition: str  # issued | pending | denied | failed
    thumbprint: str | None = None
    request_id: int | None = None
    # The leftover certreq tasks swept before this one was registered (certreq_tasks.py).
    swept: tuple[str, ...] = ()


def request_inf(request: EnrolmentRequest) -> str:
    """The agent's Format-XuRequestInf: the file certreq -new reads."""
    lines = ["[Version]", 'Signature="$Windows NT$"', "[NewRequest]", f'Subject = "CN={request.dns_names[0]}"', f"KeyLength = {request.key.key_size}",
             "KeySpec = 1", "Exportable = FALSE", "MachineKeySet = TRUE", "Silent = TRUE", *KEY_PROVIDERS[request.key_provider][0],
             "RequestType = PKCS10", "[Extensions]", '2.5.29.17 = "{text}"', *(f'_continue_ = "dns={name}&"' for name in request.dns_names),
             "[RequestAttributes]", f'CertificateTemplate = "{request.template}"']
    return "\r\n".join(lines) + "\r\n"


def certreq_enrol(host: Host, request: EnrolmentRequest, run_as: str, timeout_s: float = 300) -> EnrolmentOutcome:
    """`certreq -new -machine`, `-submit`, `-accept -machine`: in a SYSTEM task (machine) or in the WinRM session (caller).

    As the machine the request file and certreq's output are files of the collection's folder while the task runs
    (certreq_tasks.py); a call killed meanwhile leaves them there with the task."""

    def enrol(_task_id: str) -> EnrolmentOutcome:
        outcome = _enrol(host, request, network_logon=run_as == "caller")
        account = f"{LAB_DOMAIN_NETBIOS}\\{host.name.upper()}$" if run_as == "machine" else LAB_ADMIN
        host.emit(
            "enrol",
            template=request.template,
            dns_names=list(request.dns_names),
            enrolled_as=run_as,
            account=account,
            disposition=outcome.disposition,
            request_id=outcome.request_id,
            thumbprint=outcome.thumbprint,
            exit_code=outcome.exit_code,
        )
        return outcome

    if run_as == "caller":
        return enrol("")
    files = {"enrol-<id>.inf": request_inf(request).encode("utf-16"), "enrol-<id>.req": b"-----BEGIN NEW CERTIFICATE REQUEST-----\r\n",
             "certreq-<id>.txt": b""}
    outcome, swept = host.certreq.run(timeout_s, files, enrol)
    return replace(outcome, swept=tuple(swept))


def _enrol(host: Host, request: EnrolmentRequest, *, network_logon: bool) -> EnrolmentOutcome:
    # -new: a new key in the machine's key storage, and the request in LocalMachine\REQUEST until it is accepted.
    container = KeyContainer(request.key, KEY_PROVIDERS[request.key_provider][1], default_machine_key_acl())
    pending_request = host.add_certificate(_request_placeholder(request), container, source="certreq_new", store=host.stores.requests)
    lines = ["", "CertReq: Request Created", ""]
    if network_logon:
        # No credentials to pass on: neither the enrolment policy (LDAP) nor the CA (DCOM) can be reached.
        return EnrolmentOutcome(CERTREQ_POLICY_SERVER_NOT_FOUND, _text([*lines, NETWORK_LOGON_FAILURE]), "failed")
    ca = host.enterprise_ca
    service = ca.service_for(request.ca_config)
    if host.faults.take_certreq_failure() or service is None:
        return EnrolmentOutcome(CERTREQ_RPC_UNAVAILABLE, _text([*lines, RPC_UNAVAILABLE_TEXT]), "failed")
    request_id = ca.next_request_id()
    label = REQUEST_ID_LABELS[host.certreq_language]
    lines += [f"{label}: {request_id}", f'{label}: "{request_id}"']
    template = ca.template(request.template)
    if template is None:
        lines += [
            f"Certificate request is denied: {UNSUPPORTED_TEMPLATE_TEXT} 0x80094800 (-2146875392 CERTSRV_E_UNSUPPORTED_CERT_TYPE)",
            "Denied by Policy Module  0x80094800, The request was for a certificate template that is not supported by the "
            f"Active Directory Certificate Services policy: {request.template}.",
        ]
        return EnrolmentOutcome(CERTSRV_E_UNSUPPORTED_CERT_TYPE, _text(lines), "denied", request_id=request_id)
    if not ca.may_enrol(template):
        lines += [
            f"Certificate request is denied: {TEMPLATE_DENIED_TEXT} 0x80094012 (-2146877422 CERTSRV_E_TEMPLATE_DENIED)",
            f"Denied by Policy Module  0x80094012, {TEMPLATE_DENIED_TEXT}",
        ]
        return EnrolmentOutcome(CERTSRV_E_TEMPLATE_DENIED, _text(lines), "denied", request_id=request_id)
    if template.needs_approval:
        # The CA holds it for a CA manager; certreq exits 0 and writes no certificate.
        lines.append("Certificate request is pending: Taken Under Submission (0)")
        return EnrolmentOutcome(0, _text(lines), "pending", request_id=request_id)
    certificate = host.ca.issue(
        _leaf_request(template, request.dns_names[0], request.dns_names), request.key.public_key(), via_issuing_ca=service.via_issuing_ca
    )
    lines += ["Certificate retrieved(Issued) Issued", ""]
    # -accept: the certificate goes into My with the request's key; the request leaves REQUEST.
    entry = host.add_certificate(certificate, container, source="certreq_enrol")
    host.remove_certificate(pending_request.thumbprint, host.stores.requests)
    lines += installed_certificate_lines(entry)
    return EnrolmentOutcome(0, _text(lines), "issued", thumbprint=entry.thumbprint, request_id=request_id)


def _text(lines: list[str]) -> str:
    return "\r\n".join(lines).strip()


def _leaf_request(template: Template, common_name: str, dns_names: tuple[str, ...]) -> LeafRequest:
    """What the CA issues from a template: its validity from now, NotBefore back-dated, Server Authentication, the template named."""
    now = utc_now()
    return LeafRequest(
        common_name,
        dns_names,
        not_before=now - CERTREQ_BACKDATE,
        not_after=now + timedelta(days=template.lifetime_days),
        server_auth=True,
        extensions=(template.extension(),),
    )


def _request_placeholder(request: EnrolmentRequest) -> x509.Certificate:
    """The self-signed stand-in Windows keeps in REQUEST for a request, carrying its key."""
    now = utc_now()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, request.dns_names[0])])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(request.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CERTREQ_BACKDATE)
        .not_valid_after(now + timedelta(days=365))
        .sign(request.key, hashes.SHA256())
    )


def autoenrol_renew(host: Host) -> dict[str, object]:
    """Certificate auto-enrolment renews the bound certificate: new key, new certificate, old one archived; XU untouched.

    The template is the one the old certificate names, else WebServer. A template the host may
    not enrol, or one that needs approval, leaves everything as it was (LabError says why).
    """
    old = bound_certificate(host)
    if old is None:
        raise LabError(f"{host.name} has no certificate for auto-enrolment to renew")
    ca = host.enterprise_ca
    template = ca.template_of(old.certificate) or ca.template("WebServer")
    if template is None or not ca.may_enrol(template):
        name = template.name if template else "WebServer"
        raise LabError(f"auto-enrolment on {host.name}: the host may not enrol template {name} (see up --templates)")
    if template.needs_approval:
        raise LabError(f"auto-enrolment on {host.name}: template {template.name} needs a CA manager's approval; nothing is issued")
    key = host.pick_key()
    names = tuple(old.dns_names) or (old.common_name,)
    certificate = host.ca.issue(_leaf_request(template, old.common_name or names[0], names), key.public_key())
    new = host.add_certificate(certificate, KeyContainer(key, AUTOENROL_KEY_PROVIDER, default_machine_key_acl()), source="autoenrol")
    old.archived = True
    host.emit("cert_archive", thumbprint=old.thumbprint, successor=new.thumbprint)
    host.emit(
        "autoenrol", template=template.name, old_thumbprint=old.thumbprint, new_thumbprint=new.thumbprint,
        account=f"{LAB_DOMAIN_NETBIOS}\\{host.name.upper()}$",
    )
    return {"old_thumbprint": old.thumbprint, "new_thumbprint": new.thumbprint, "template": template.name}
