# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The renewal engine's ACME source (``xu_renew_mode: acme``). Private to this collection.

The CA's renewal information (RFC 9773) about the certificate the host serves decides whether it is due; the order
step orders its successor on the controller (acme/issue.py) and hands the install step a PFX held in memory. The
settings hold secrets (the account key, the TSIG secret): ``secret_values`` names every one, for the action to mask.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.acme import client, issue
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.acme.settings import PREFIX, SECRET_VARIABLES, AcmeSettings, settings_from_vars
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import XuError

with contextlib.suppress(ImportError):  # reported by the action base, which needs cryptography for every module
    from cryptography import x509

NAMES_VARIABLE = f"{PREFIX}names"


def secret_values(variables: Mapping[str, Any]) -> set[str]:
    """Every secret among the ACME variables as given, for masking before they are even checked."""
    found: set[str] = set()
    for name in SECRET_VARIABLES:
        value = variables.get(PREFIX + name)
        values = value.values() if isinstance(value, Mapping) else [value]
        found |= {str(item).strip() for item in values if item not in (None, "") and str(item).strip()}
    return found


@dataclass(frozen=True)
class OrderedPfx:
    """The certificate the CA issued, as the install step hands it to the swap; ``report`` holds nothing secret."""

    content: str = field(repr=False)
    password: str = field(repr=False)
    report: dict[str, Any]


@dataclass
class AcmeSource:
    """One host's ACME side for one task: its settings, its names, the CA's verdict on what it serves."""

    settings: AcmeSettings
    host: str
    given_names: tuple[str, ...]
    log: Callable[[str], None]
    session: client.AcmeSession | None = None
    assessment: issue.Assessment | None = None
    # The served certificate the assessment is about (the plan may be made again after a resume).
    assessed_for: bytes | None = None

    @classmethod
    def from_variables(cls, variables: Mapping[str, Any], host: str, log: Callable[[str], None]) -> AcmeSource:
        """The source from the role's ``xu_renew_acme_*`` variables; an AcmeSettingsError (an XuError) names a wrong one."""
        problem = issue.missing_requirements()
        if problem:
            raise XuError(problem)
        settings = settings_from_vars(variables)
        names = variables.get(NAMES_VARIABLE) or ()
        if isinstance(names, str):
            names = [part for part in names.replace(",", " ").split() if part]
        if not isinstance(names, (list, tuple)) or not all(isinstance(name, str) for name in names):
            raise XuError(f"{NAMES_VARIABLE} must be a list of DNS names")
        return cls(settings, host, tuple(name.strip() for name in names if name.strip()), log)

    def request(self, fqdn: str | None, served_der: bytes | None) -> issue.HostRequest:
        served = x509.load_der_x509_certificate(served_der) if served_der else None
        return issue.HostRequest(self.host, fqdn or self.host, self.given_names, served)

    def verdict(self, fqdn: str | None, served_der: bytes | None, now: datetime.datetime) -> tuple[bool, str] | None:
        """The CA's word on the served certificate, (due, why); None where it gives none, and the engine's own rule decides.

        Asking changes nothing: the account is looked up, never created. A CA that cannot be asked is no verdict
        (the order step then fails, before the host is touched).
        """
        if self.assessment is None or self.assessed_for != served_der:
            request = self.request(fqdn, served_der)
            try:
                if self.session is None:
                    self.session = client.open_session(self.settings, check_mode=True, allow_creation=False)
                self.assessment = issue.assess_host(self.settings, request, self.session, now)
            except XuError as e:
                self.assessment = issue.Assessment(request.names, None, None, None, f"the CA could not be asked: {e.msg}", request.left_out)
            self.assessed_for = served_der
        verdict = self.assessment.verdict
        return None if verdict is None else (verdict.due, verdict.reason)

    def note(self) -> str | None:
        """Why the CA gave no verdict (no renewal information, not asked), for the plan's reason."""
        if self.assessment is None or self.assessment.verdict is not None:
            return None
        return self.assessment.note or None

    def order(self, fqdn: str | None, served_der: bytes | None) -> OrderedPfx:
        """Order the host's certificate: DNS-01 answered, the key made here, the PFX built in memory (acme/issue.py)."""
        request = self.request(fqdn, served_der)
        # The verdict's session only looked the account up; this one may create it, and orders.
        self.session = client.open_session(self.settings, check_mode=False)
        replaces = self.assessment.cert_id if self.assessment is not None and self.assessed_for == served_der else None
        outcome = issue.issue_for_host(self.settings, request, session=self.session, replaces=replaces, log=self.log)
        return OrderedPfx(base64.b64encode(outcome.pfx.content).decode("ascii"), outcome.pfx.password.reveal(), outcome.to_result())

    def dry_run(self, fqdn: str | None, served_der: bytes | None) -> dict[str, Any]:
        """What --check proves without ordering: the account, the names, the DNS credentials (acme/issue.py)."""
        return issue.dry_run(self.settings, self.request(fqdn, served_der), log=self.log)

    def to_result(self) -> dict[str, Any] | None:
        """What the assessment found (names, names left out, the CA's window), nothing secret; None before it asked."""
        return self.assessment.to_result() if self.assessment is not None else None
