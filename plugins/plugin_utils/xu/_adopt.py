# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Adopting a certificate that is already in LocalMachine\\My. Private to this collection.

win-acme and certificate auto-enrolment put a renewed certificate into the store and bind it to
nothing: XU keeps serving the old one until a restart. Adoption picks the best certificate in the
store to replace the bound one. One rule, used by xu_cert_swap (``new_thumbprint: auto``) on the
host's store and by the renew role's planning on xu_tls_info's report, so both pick the same one.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._certificate import CertificateFacts, parse_iso
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import XuError

AUTO = "auto"


@dataclass(frozen=True)
class AdoptionRules:
    """What a certificate must be to replace the bound one, beyond being valid, with its key, for Server Authentication."""

    fqdn: str | None
    issuer_pattern: re.Pattern[str] | None = None
    min_days: float = 0.0

    @classmethod
    def from_options(cls, fqdn: str | None, issuer: Any, min_days: Any, names: tuple[str, str] = ("adopt_issuer", "adopt_min_days")) -> AdoptionRules:
        """The rules from the options; XuError names the option that is wrong."""
        pattern = None
        if issuer not in (None, ""):
            try:
                pattern = re.compile(str(issuer), re.IGNORECASE)
            except re.error as e:
                raise XuError(f"{names[0]} {issuer!r} is not a regular expression: {e}") from e
        try:
            days = float(min_days if min_days not in (None, "") else 0)
        except (TypeError, ValueError) as e:
            raise XuError(f"{names[1]} must be a number of days, not {min_days!r}") from e
        if not 0 <= days <= 3650:
            raise XuError(f"{names[1]} must be from 0 to 3650 days, not {min_days!r}")
        return cls(fqdn=fqdn, issuer_pattern=pattern, min_days=days)


@dataclass(frozen=True)
class Candidate:
    """A certificate of LocalMachine\\My, as much as adoption needs to know of it."""

    thumbprint: str
    subject: str
    issuer: str
    not_before: datetime.datetime
    not_after: datetime.datetime
    dns_names: tuple[str, ...]
    server_auth: bool
    has_private_key: bool
    covers_fqdn: bool | None

    @classmethod
    def of(cls, facts: CertificateFacts, has_private_key: bool, fqdn: str | None) -> Candidate:
        return cls(
            thumbprint=facts.thumbprint, subject=facts.subject, issuer=facts.issuer, not_before=facts.not_before, not_after=facts.not_after,
            dns_names=facts.dns_names, server_auth=facts.server_auth, has_private_key=has_private_key, covers_fqdn=facts.covers(fqdn),
        )

    @classmethod
    def from_report(cls, entry: Mapping[str, Any]) -> Candidate | None:
        """A candidate from an entry of xu_tls_info's ``store_certificates``; None when the entry lacks what is needed."""
        not_before, not_after = parse_iso(entry.get("not_before")), parse_iso(entry.get("not_after"))
        thumbprint = entry.get("thumbprint")
        if not isinstance(thumbprint, str) or not_before is None or not_after is None:
            return None
        covers = entry.get("san_covers_fqdn")
        return cls(
            thumbprint=thumbprint.upper(), subject=str(entry.get("subject") or ""), issuer=str(entry.get("issuer") or ""),
            not_before=not_before, not_after=not_after, dns_names=tuple(str(n) for n in entry.get("dns_names") or ()),
            server_auth=entry.get("server_auth") is True, has_private_key=entry.get("has_private_key") is True,
            covers_fqdn=covers if isinstance(covers, bool) else None,
        )


def why_not(candidate: Candidate, bound_not_after: datetime.datetime | None, rules: AdoptionRules, now: datetime.datetime) -> str | None:
    """Why ``candidate`` cannot replace the bound certificate (whose expiry is ``bound_not_after``); None when it can."""
    checks = (
        (not candidate.has_private_key, "it has no private key in the store"),
        (now < candidate.not_before, f"it is not valid before {candidate.not_before:%Y-%m-%dT%H:%M:%SZ}"),
        (now >= candidate.not_after, f"it expired {candidate.not_after:%Y-%m-%dT%H:%M:%SZ}"),
        (not candidate.server_auth, "it lacks the Server Authentication EKU"),
        (candidate.covers_fqdn is None, "the host's name is not known, so its SAN cannot be checked (set fqdn)"),
        (candidate.covers_fqdn is False, f"its SAN does not name {rules.fqdn}"),
        (rules.issuer_pattern is not None and not rules.issuer_pattern.search(candidate.issuer),
         f"its issuer {candidate.issuer!r} does not match {rules.issuer_pattern.pattern if rules.issuer_pattern else ''!r}"),
        ((candidate.not_after - now).total_seconds() < rules.min_days * 86400, f"it has fewer than {rules.min_days:g} days left"),
        (bound_not_after is not None and candidate.not_after <= bound_not_after,
         f"it does not expire later than the bound certificate ({bound_not_after:%Y-%m-%dT%H:%M:%SZ})" if bound_not_after else ""),
    )
    return next((reason for failed, reason in checks if failed), None)


@dataclass(frozen=True)
class Adoption:
    """The certificate chosen (None: none qualifies), and why each other one was passed over."""

    chosen: Candidate | None
    passed_over: tuple[tuple[Candidate, str], ...]

    def to_result(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen.thumbprint if self.chosen else None,
            "passed_over": [{"thumbprint": c.thumbprint, "subject": c.subject, "reason": reason} for c, reason in self.passed_over],
        }

    def summary(self) -> str:
        """The reasons in a few words, for a message."""
        if not self.passed_over:
            return "no other certificate is in LocalMachine\\My"
        return "; ".join(f"{c.thumbprint}: {reason}" for c, reason in self.passed_over)


def choose(candidates: Iterable[Candidate], bound: str | None, bound_not_after: datetime.datetime | None, rules: AdoptionRules,
           now: datetime.datetime) -> Adoption:
    """The best certificate to replace ``bound``: the one that expires last among those that qualify.

    A later ``not_after`` wins; then a later ``not_before`` (the newer issue); then the thumbprint, so the
    choice never depends on the order the store lists them in.
    """
    fit: list[Candidate] = []
    passed: list[tuple[Candidate, str]] = []
    for candidate in candidates:
        if candidate.thumbprint == bound:
            continue
        reason = why_not(candidate, bound_not_after, rules, now)
        if reason is None:
            fit.append(candidate)
        else:
            passed.append((candidate, reason))
    fit.sort(key=lambda c: (c.not_after, c.not_before, c.thumbprint), reverse=True)
    chosen = fit[0] if fit else None
    passed += [(c, f"{chosen.thumbprint if chosen else ''} expires later") for c in fit[1:]]
    return Adoption(chosen, tuple(sorted(passed, key=lambda item: item[0].thumbprint)))


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def adoption_in_report(report: Mapping[str, Any], issuer: Any, min_days: Any, now: datetime.datetime,
                       names: tuple[str, str] = ("xu_renew_adopt_issuer", "xu_renew_adopt_min_days")) -> Adoption:
    """The choice for the web server's bound certificate, made from xu_tls_info's report as xu_cert_swap makes it on the host."""
    web = _mapping(report.get("web_server"))
    bound = str(web.get("certificate_thumbprint") or "").upper()
    certificate = _mapping(web.get("certificate"))
    # A bound certificate that left the store sets no bar: whatever qualifies beats it.
    bound_not_after = parse_iso(certificate.get("not_after")) if certificate.get("in_store") else None
    fqdn = report.get("fqdn") if isinstance(report.get("fqdn"), str) else None
    rules = AdoptionRules.from_options(fqdn, issuer, min_days, names)
    entries = report.get("store_certificates")
    candidates = [c for entry in entries if isinstance(entry, Mapping) and (c := Candidate.from_report(entry)) is not None] if isinstance(entries, list) else []
    return choose(candidates, bound, bound_not_after, rules, now)
