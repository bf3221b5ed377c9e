"""The domain's enterprise CA (AD CS) as the hosts see it: its templates, who may enrol them, its request ids.

An enterprise CA publishes certificate templates; a template's permissions say who may enrol
it, and a template may need a CA manager's approval, in which case the CA holds the request
(pending). The lab's CA publishes what a fresh enterprise CA publishes plus the templates given
to `up --templates` and `--pending-templates`; the hosts may enrol exactly those given (by
default `WebServer`). What it issues names its template as AD CS does: a version 1 template
by name (1.3.6.1.4.1.311.20.2), a version 2 one by OID (1.3.6.1.4.1.311.21.7, MSCertificateTemplate).
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509

from .ca import CA_COMMON_NAME, ISSUING_CA_COMMON_NAME
from .errors import LabError

# A template's common name as the agent accepts it (docs/agent-protocol.md, cert_enroll).
TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9 ._-]{1,64}\Z")
# What a fresh enterprise CA publishes, by common name, with the validity Windows gives them (days): all version 1.
STANDARD_TEMPLATES: dict[str, float] = {
    "Administrator": 365,
    "DomainController": 365,
    "Machine": 365,
    "SubCA": 1825,
    "User": 365,
    "WebServer": 730,
}
DEFAULT_TEMPLATES = ("WebServer",)
CUSTOM_TEMPLATE_DAYS = 365
CA_HOST = "ca01.xulab.test"
CA_HOST_SHORT = "ca01"
CA_CONFIG = f"{CA_HOST}\\{CA_COMMON_NAME}"
# A second enterprise CA (`fault --set enterprise_cas=2`): it publishes the same templates and issues through the lab's
# intermediate, so what it issued is told apart by its issuer.
SECOND_CA_HOST = "ca02.xulab.test"
SECOND_CA_CONFIG = f"{SECOND_CA_HOST}\\{ISSUING_CA_COMMON_NAME}"
FIRST_REQUEST_ID = 1000
V1_TEMPLATE_OID = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2")
# Where AD CS roots the OIDs of the templates a forest defines.
_FOREST_TEMPLATE_ARC = "1.3.6.1.4.1.311.21.8"


def _bmp_string(text: str) -> bytes:
    """DER BMPString (short form: a template's name is at most 64 characters)."""
    data = text.encode("utf-16-be")
    return bytes([0x1E, len(data)]) + data


@dataclass(frozen=True)
class EnrollmentService:
    """One enterprise CA as AD lists it (a pKIEnrollmentService object): its config string and how it signs."""

    host: str
    name: str
    via_issuing_ca: bool = False

    @property
    def config(self) -> str:
        return f"{self.host}\\{self.name}"

    def answers_to(self, config: str) -> bool:
        """`certreq -config host\\name`: the host by its DNS or short name and the CA's name, case-insensitively."""
        host, _sep, name = config.partition("\\")
        return host.casefold() in (self.host.casefold(), self.host.split(".")[0].casefold()) and name.casefold() == self.name.casefold()


@dataclass(frozen=True)
class Template:
    name: str
    lifetime_days: float
    # 1: a template Windows ships (named in what is issued); 2: one the forest's admins made (by OID).
    version: int = 2
    needs_approval: bool = False

    @property
    def oid(self) -> str:
        """A version 2 template's OID: the forest's arc, then numbers fixed by the name."""
        digest = hashlib.sha256(self.name.casefold().encode("utf-8")).digest()
        numbers = [int.from_bytes(digest[i : i + 3], "big") for i in range(0, 18, 3)]
        return ".".join([_FOREST_TEMPLATE_ARC, *map(str, numbers)])

    def extension(self) -> x509.ExtensionType:
        """The template as AD CS names it in an issued certificate."""
        if self.version == 1:
            return x509.UnrecognizedExtension(V1_TEMPLATE_OID, _bmp_string(self.name))
        return x509.MSCertificateTemplate(x509.ObjectIdentifier(self.oid), major_version=100, minor_version=2)


def parse_template(spec: str, *, needs_approval: bool = False) -> Template:
    """`NAME` or `NAME:DAYS` as `up --templates` takes it; Windows' own templates keep their version and validity."""
    name, _sep, days = spec.strip().partition(":")
    name = name.strip()
    if TEMPLATE_NAME.match(name) is None:
        raise LabError(f"a template's name matches {TEMPLATE_NAME.pattern}, not {name!r}")
    standard = next((known for known in STANDARD_TEMPLATES if known.casefold() == name.casefold()), None)
    lifetime = STANDARD_TEMPLATES[standard] if standard else CUSTOM_TEMPLATE_DAYS
    if days:
        try:
            lifetime = float(days)
        except ValueError as exc:
            raise LabError(f"template {name}: the validity is a number of days, not {days!r}") from exc
        if lifetime <= 0:
            raise LabError(f"template {name}: the validity must be more than 0 days")
    return Template(standard or name, lifetime, 1 if standard else 2, needs_approval)


def split_specs(text: str) -> tuple[str, ...]:
    """`WebServer,XUWeb:90` as the command line gives it; an empty text is no template."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


class EnterpriseCa:
    """The CA `CA_CONFIG` and its templates; one per lab, shared by its hosts."""

    def __init__(self, enrollable: Sequence[Template], pending: Sequence[Template] = ()) -> None:
        self.templates = {name.casefold(): Template(name, days, 1) for name, days in STANDARD_TEMPLATES.items()}
        self.enrollable: set[str] = set()
        for template in (*enrollable, *pending):
            key = template.name.casefold()
            if key in self.enrollable:
                raise LabError(f"template {template.name} is given twice")
            self.templates[key] = template
            self.enrollable.add(key)
        self._request_ids = itertools.count(FIRST_REQUEST_ID)
        # The forest's enterprise CAs, each publishing every template above.
        self.services = [EnrollmentService(CA_HOST, CA_COMMON_NAME)]

    def set_service_count(self, count: int) -> None:
        """One CA (the default) or two: the second is `SECOND_CA_CONFIG`."""
        if count not in (1, 2):
            raise LabError(f"enterprise_cas takes 1 or 2, not {count}")
        self.services = [EnrollmentService(CA_HOST, CA_COMMON_NAME), EnrollmentService(SECOND_CA_HOST, ISSUING_CA_COMMON_NAME, via_issuing_ca=True)][:count]

    def service_for(self, config: str | None) -> EnrollmentService | None:
        """The CA `certreq -config` reaches; none for a config no CA answers to (or none given)."""
        if config is None:
            return None
        return next((service for service in self.services if service.answers_to(config)), None)

    @classmethod
    def from_specs(cls, templates: Sequence[str] = DEFAULT_TEMPLATES, pending_templates: Sequence[str] = ()) -> EnterpriseCa:
        return cls(
            [parse_template(spec) for spec in templates],
            [parse_template(spec, needs_approval=True) for spec in pending_templates],
        )

    def template(self, name: str) -> Template | None:
        """A published template; AD finds it by its common name, which LDAP compares case-insensitively."""
        return self.templates.get(name.casefold())

    def may_enrol(self, template: Template) -> bool:
        return template.name.casefold() in self.enrollable

    def next_request_id(self) -> int:
        """Every request the CA receives gets the next number, also one it denies."""
        return next(self._request_ids)

    def template_of(self, certificate: x509.Certificate) -> Template | None:
        """The published template an issued certificate names, if any."""
        for extension in certificate.extensions:
            for template in self.templates.values():
                if extension.value == template.extension():
                    return template
        return None

    def describe(self) -> dict[str, object]:
        """What lab.json says about the CA."""
        may = [t for t in self.templates.values() if t.name.casefold() in self.enrollable]
        return {
            "config": CA_CONFIG,
            "configs": [service.config for service in self.services],
            "templates": {t.name: t.lifetime_days for t in may if not t.needs_approval},
            "pending_templates": {t.name: t.lifetime_days for t in may if t.needs_approval},
            "published": sorted(t.name for t in self.templates.values()),
        }
