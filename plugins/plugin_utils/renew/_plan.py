# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a renewal does on a host, decided from xu_tls_info's report. Private to this collection.

``due`` says whether the bound certificate needs renewing, ``plan`` what the renewal engine does about it:
renew (and how), resume an interrupted run's journal, nothing, or why it cannot. ``precheck``
blocks a plan whose new PFX the swap would refuse. The plan is a frozen ``Plan``; ``as_fact``
gives the dict the assessment returns (xu_renew's ``assessment.plan``).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._certificate import iso, utc_now
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._thumbprint import ThumbprintError, clean_thumbprint
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import XuError
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._unreachable import unreachable_reason
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.journal._lease import host_now_from, last_step_words, lease_owner, takeover_refusal
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._info import (
    HTTPS_PROTOCOLS,
    ISO_FORMAT,
    PLAIN_HTTP_PROTOCOL,
    as_dict,
    store_entry,
    tls_settings_file,
    upper,
)
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._precheck import pfx_blocker
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._adopt import Adoption, adoption_in_report

# The role's xu_renew_mode and xu_renew_strategy (meta/argument_specs.yml lists the same; a unit test holds them together).
MODES = ("replace", "reuse_key", "adopt", "enroll", "acme")
# Modes that swap to a new certificate with its own key, in replace's sequence (reuse_key keeps the key, in its own).
NEW_KEY_MODES = ("replace", "adopt", "enroll", "acme")
STRATEGIES = ("documented", "minimal_outage")
# Where replace mode takes the new certificate from; reuse_key's comes from AD CS.
PFX_SOURCES = ("pfx", "pfx_content")
TLS_OFF_REASON = "TLS is off (the web server serves plain HTTP); xu_renew_enable_tls (playbook enable_tls.yml) turns it on"
# Plans of a host whose report is a failed task's result: nothing else is known about it.
UNREAD_ACTIONS = ("unreachable", "unreadable")


def closes_gate(mode: str | None, strategy: str | None) -> bool:
    """Whether a run turns TLS off, and so locks outside clients out behind the gate: reuse_key as documented."""
    return mode == "reuse_key" and strategy == "documented"


class PlanError(ValueError):
    """The planner was called with arguments it cannot work with (a bug in the caller, not a host state)."""


@dataclass(frozen=True)
class Due:
    """Whether the bound certificate needs renewing; ``status`` is ``due``, ``not_due`` or ``skip``."""

    status: str
    reason: str
    old_thumbprint: str | None = None
    days_left: Any = None
    not_after: Any = None

    @property
    def due(self) -> bool:
        return self.status == "due"

    def as_fact(self) -> dict[str, Any]:
        return {
            "status": self.status, "due": self.due, "reason": self.reason,
            "old_thumbprint": self.old_thumbprint, "days_left": self.days_left, "not_after": self.not_after,
        }


@dataclass(frozen=True)
class Plan:
    """What the role does on one host, and what its task files and journal need to know for it."""

    action: str
    status: str | None
    reason: str
    mode: str | None
    strategy: str | None
    old_thumbprint: str | None = None
    days_left: Any = None
    not_after: Any = None
    previous_web_protocol: str | None = None
    config_tls: bool = False
    config_separate: bool = False
    http_port: Any = None
    original_sha256: str | None = None
    tls_path: str | None = None
    fqdn: str | None = None
    source: str | None = None
    new_thumbprint: str | None = None
    pfx_path: str | None = None
    close_gate: bool = False
    remove_old: bool = False
    remove_old_in_swap: bool = False
    controller_check: bool = False
    gate_closed: bool = False
    # The run holding the host's lease, for a busy host.
    owner: Mapping[str, Any] | None = None
    # enroll mode: xu_cert_swap's enroll option (template, ca_config, dns_names).
    enroll: Mapping[str, Any] | None = None
    # The web server protocol the run leaves: previous_web_protocol for a renewal, the HTTPS one chosen for enable_tls.
    web_protocol: str | None = None
    # Turning TLS on for a host that serves plain HTTP (xu_renew_enable_tls): no certificate is replaced.
    enable_tls: bool = False
    # enable_tls: bind the new certificate to the configuration server too.
    bind_config: bool = False

    def as_fact(self) -> dict[str, Any]:
        head = {"action": self.action, "status": self.status, "reason": self.reason, "mode": self.mode, "strategy": self.strategy}
        if self.action in UNREAD_ACTIONS:
            return {**head, "old_thumbprint": self.old_thumbprint, "days_left": self.days_left, "not_after": self.not_after,
                    "gate_closed": self.gate_closed}
        fact = {
            **head,
            "old_thumbprint": self.old_thumbprint,
            "days_left": self.days_left,
            "not_after": self.not_after,
            "previous_web_protocol": self.previous_web_protocol,
            "config_tls": self.config_tls,
            "config_separate": self.config_separate,
            "http_port": self.http_port,
            "original_sha256": self.original_sha256,
            "tls_path": self.tls_path,
            "fqdn": self.fqdn,
            "source": self.source,
            "new_thumbprint": self.new_thumbprint,
            "pfx_path": self.pfx_path,
            "close_gate": self.close_gate,
            "remove_old": self.remove_old,
            "remove_old_in_swap": self.remove_old_in_swap,
            "controller_check": self.controller_check,
            "gate_closed": self.gate_closed,
            "web_protocol": self.web_protocol,
            "enable_tls": self.enable_tls,
            "bind_config": self.bind_config,
        }
        if self.owner is not None:
            fact["owner"] = dict(self.owner)
        if self.enroll is not None:
            fact["enroll"] = dict(self.enroll)
        return fact


# -- due ----------------------------------------------------------------------------------------


def _not_applicable(info: Mapping[str, Any]) -> str | None:
    """Why the role has nothing to renew on this host, or None."""
    if not info or info.get("failed"):
        return f"the server's TLS state could not be read: {info.get('msg') if info else 'no report'}"
    web = as_dict(info.get("web_server"))
    problems = "; ".join(str(p) for p in info.get("problems") or []) or "unknown reason"
    checks = (
        (not info.get("installed"), "Xtract Universal is not installed (no service or install dir found)"),
        (not web, f"the TLS settings could not be read ({problems})"),
        (web and web.get("protocol") is None,
         f"the web server protocol {web.get('protocol_setting')!r} is not one this collection knows; check settings_map"),
        (web and not web.get("tls"), TLS_OFF_REASON),
        (web and not upper(web.get("certificate_thumbprint")), "the web server uses HTTPS without a certificate; bind one with xu_tls_binding first"),
    )
    return next((message for failed, message in checks if failed), None)


def lifetime_left_percent(certificate: Mapping[str, Any], now: datetime.datetime) -> float | None:
    """The share of the certificate's lifetime (not_before to not_after) still ahead, in percent; None when unknown."""
    try:
        not_before = datetime.datetime.strptime(str(certificate["not_before"]), ISO_FORMAT).replace(tzinfo=datetime.timezone.utc)
        not_after = datetime.datetime.strptime(str(certificate["not_after"]), ISO_FORMAT).replace(tzinfo=datetime.timezone.utc)
    except (KeyError, ValueError):
        return None
    lifetime = (not_after - not_before).total_seconds()
    if lifetime <= 0:
        return None
    return max(0.0, (not_after - now).total_seconds()) * 100 / lifetime


def _certificate_due(
    role: str, certificate: Mapping[str, Any], thumbprint: str, window: tuple[float, float], now: datetime.datetime,
    *, ca_verdict: tuple[bool, str] | None = None,
) -> str | None:
    """Why one bound certificate needs renewing, or None. ``window``: (before_days, before_percent); ``ca_verdict``, the
    ACME CA's (due, why), decides the time instead where it is given."""
    before_days, before_percent = window
    if not certificate.get("in_store"):
        return f"the {role} certificate {thumbprint} is not in LocalMachine\\My: the next restart would fail"
    if certificate.get("expired"):
        return f"the {role} certificate {thumbprint} expired on {certificate.get('not_after')}"
    if ca_verdict is not None:
        return f"the {role} certificate {thumbprint}: {ca_verdict[1]}" if ca_verdict[0] else None
    days_left = certificate.get("days_left")
    if isinstance(days_left, (int, float)) and days_left < before_days:
        return f"the {role} certificate {thumbprint} expires in {days_left} days ({certificate.get('not_after')}), fewer than {before_days:g}"
    left = lifetime_left_percent(certificate, now)
    if before_percent > 0 and left is not None and left < before_percent:
        return (
            f"the {role} certificate {thumbprint} has {left:.1f}% of its lifetime left (expires {certificate.get('not_after')}),"
            f" less than {before_percent:g}%"
        )
    return None


def due(
    info: Mapping[str, Any], before_days: float, force: bool, before_percent: float, now: datetime.datetime,
    *, ca_verdict: tuple[bool, str] | None = None, ca_note: str | None = None,
) -> Due:
    """Whether the host's bound certificate needs renewing: by the days and share of its lifetime left, or, for the
    certificate the web server serves, by the ACME CA's verdict (``ca_verdict``, its renewal information) where it gives one."""
    window = (before_days, before_percent)
    reason = _not_applicable(info)
    if reason is not None:
        return Due("skip", reason)
    web = as_dict(info.get("web_server"))
    old = str(upper(web.get("certificate_thumbprint")))  # present: checked by _not_applicable
    certificate = as_dict(web.get("certificate"))
    config = as_dict(info.get("config_server"))
    checks = [("web server", certificate, old)]
    config_thumbprint = upper(config.get("certificate_thumbprint"))
    if config.get("tls") and config_thumbprint and config_thumbprint != old:
        checks.append(("configuration server", as_dict(config.get("certificate")), config_thumbprint))
    verdicts = {"web server": ca_verdict}
    reasons = [r for role, cert, thumbprint in checks if (r := _certificate_due(role, cert, thumbprint, window, now, ca_verdict=verdicts.get(role)))]
    known = {"old_thumbprint": old, "days_left": certificate.get("days_left"), "not_after": certificate.get("not_after")}
    if reasons:
        return Due("due", "; ".join(reasons), **known)
    if force:
        return Due("due", "renewal forced (xu_renew_force)", **known)
    if ca_verdict is not None:
        return Due("not_due", f"the certificate {old} expires in {certificate.get('days_left')} days: {ca_verdict[1]}", **known)
    share = f", with {lifetime_left_percent(certificate, now) or 0:.1f}% of its lifetime left" if before_percent else ""
    note = f" ({ca_note})" if ca_note else ""
    return Due("not_due", f"the certificate {old} expires in {certificate.get('days_left')} days, not fewer than {before_days:g}{share}{note}", **known)


# -- the plan -----------------------------------------------------------------------------------


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise PlanError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return str(value)


def _thumbprint_problem(info: Mapping[str, Any], old: str | None, thumbprint: str, allow_shorter: bool = False) -> str | None:
    """Why a certificate of the host's store cannot replace the bound one, or None."""
    entry = store_entry(info, thumbprint) or {}
    days_left = entry.get("days_left")
    bound_until = as_dict(as_dict(info.get("web_server")).get("certificate")).get("not_after")
    shorter = bool(entry.get("not_after") and bound_until and str(entry["not_after"]) < str(bound_until))
    checks = (
        (thumbprint == old, f"xu_renew_new_thumbprint {thumbprint} is the certificate already bound"),
        (not entry, f"xu_renew_new_thumbprint {thumbprint} is not in LocalMachine\\My on the host; import it first or give a PFX"),
        (not entry.get("has_private_key"), f"the new certificate {thumbprint} has no private key in LocalMachine\\My"),
        (not isinstance(days_left, (int, float)) or days_left < 0, f"the new certificate {thumbprint} has expired ({entry.get('not_after')})"),
        (entry.get("san_covers_fqdn") is False, f"the new certificate {thumbprint} does not name {info.get('fqdn')} in its Subject Alternative Name"),
        (shorter and not allow_shorter, f"the new certificate {thumbprint} expires on {entry.get('not_after')}, before the bound one"
         f" ({bound_until}); give one that lasts longer, or set xu_renew_allow_shorter: true (the old certificate then stays in the store)"),
    )
    return next((message for failed, message in checks if failed), None)


@dataclass(frozen=True)
class RenewalRequest:
    """What the role's variables say about this host's renewal, beyond the mode and strategy."""

    before_days: float = 30
    before_percent: float = 0
    force: bool = False
    new_thumbprint: Any = None
    pfx_path: Any = None
    # The variable the PFX's path came from (xu_renew_pfx_path, or xu_renew_pfx_dir for <dir>/<host>.pfx), for messages.
    pfx_variable: str = "xu_renew_pfx_path"
    pfx_content_given: bool = False
    ca_path: Any = None
    remove_old: bool = True
    run_id: Any = None
    adopt_issuer: Any = None
    adopt_min_days: Any = 0
    template: Any = None
    ca_config: Any = None
    # enroll: the provider of the new key (xu_cert_swap's enroll.key_provider).
    key_provider: str = "schannel_csp"
    extra_dns_names: tuple[str, ...] = ()
    enable_tls: bool = False
    # With enable_tls: leave hosts that serve TLS already alone (the playbook enable_tls.yml).
    tls_off_only: bool = False
    web_protocol: str = "https_unrestricted"
    bind_config_server: bool = False
    # A new certificate that expires before the bound one is taken (the bound one then kept) only when allowed.
    allow_shorter: bool = False
    # A run the operator knows is gone (xu_renew_take_over): its host is resumed once its last call has run out.
    take_over: str | None = None
    # acme: the CA's (due, why) on the served certificate, from its renewal information; else why it gave none.
    ca_verdict: tuple[bool, str] | None = None
    ca_note: str | None = None


def _adoption(info: Mapping[str, Any], request: RenewalRequest, now: datetime.datetime) -> Adoption:
    """adopt mode's choice among the certificates in the host's report; a report it cannot judge is a PlanError."""
    try:
        return adoption_in_report(info, request.adopt_issuer or None, request.adopt_min_days, now)
    except XuError as e:
        raise PlanError(str(e)) from None


def _adopted(info: Mapping[str, Any], assessed: Due, request: RenewalRequest, now: datetime.datetime) -> dict[str, Any]:
    """adopt mode: the swap to the best certificate in the store, or why there is none (as the plan's changes)."""
    adoption = _adoption(info, request, now)
    if adoption.chosen is not None:
        chosen = adoption.chosen
        reason = f"{chosen.thumbprint} in LocalMachine\\My can replace it (expires {iso(chosen.not_after)})"
        return {"action": "renew", "status": "due", "reason": f"{assessed.reason}; {reason}" if assessed.due else reason,
                "source": "thumbprint", "new_thumbprint": chosen.thumbprint}
    if assessed.due:
        return {"action": "blocked", "reason": f"{assessed.reason}; no certificate in LocalMachine\\My can replace it ({adoption.summary()})"}
    return {"action": "none", "status": "not_due", "reason": f"no certificate in LocalMachine\\My is better than the bound {assessed.old_thumbprint}"}


def _enrolment(info: Mapping[str, Any], request: RenewalRequest) -> tuple[dict[str, Any], str | None]:
    """enroll mode: xu_cert_swap's enroll option, or why it cannot be made (the second value)."""
    if not request.template:
        return {}, "enroll mode needs the AD CS template to enrol from: set xu_renew_template"
    fqdn = info.get("fqdn") if isinstance(info.get("fqdn"), str) else None
    if not fqdn:
        return {}, "the host's DNS name is not known, so the new certificate would name nothing: set xu_renew_fqdn"
    names = list(dict.fromkeys([fqdn, *(str(n).strip().lower() for n in request.extra_dns_names if str(n).strip())]))
    option = {"template": str(request.template), "ca_config": request.ca_config or None, "dns_names": names, "key_provider": request.key_provider}
    return {"source": "enroll", "enroll": option}, None


def _source(info: Mapping[str, Any], old: str | None, mode: str, request: RenewalRequest) -> tuple[dict[str, Any], str | None]:
    """Where the new certificate comes from in ``mode`` (the plan's changes), or why it cannot (the second value)."""
    if mode == "adopt":
        return {}, None  # chosen already
    if mode == "enroll":
        return _enrolment(info, request)
    if mode == "replace":
        return _new_source(info, old, request)
    if mode == "acme":
        # Ordered by the order step, on the controller, once the host is known to be due.
        return {"source": "acme", "new_thumbprint": None, "pfx_path": None}, None
    return {}, _renewal_blocker(info)


def _new_source(info: Mapping[str, Any], old: str | None, request: RenewalRequest) -> tuple[dict[str, Any], str | None]:
    """Where replace mode takes the new certificate from (source, new_thumbprint, pfx_path), or why it cannot (the second value)."""
    if upper(request.new_thumbprint) is not None:
        try:
            thumbprint = clean_thumbprint(request.new_thumbprint, "xu_renew_new_thumbprint")
        except ThumbprintError as e:
            return {"source": "thumbprint", "new_thumbprint": None, "pfx_path": None}, str(e)
        return {"source": "thumbprint", "new_thumbprint": thumbprint, "pfx_path": None}, _thumbprint_problem(info, old, thumbprint, request.allow_shorter)
    if request.pfx_content_given:
        return {"source": "pfx_content", "new_thumbprint": None, "pfx_path": None}, None
    pfx_path = request.pfx_path
    if isinstance(pfx_path, str) and pfx_path:
        # renew_options makes the path absolute (a relative one is the user's playbook directory's); a relative one is left to the swap.
        missing = None
        if os.path.isabs(pfx_path) and not os.path.isfile(pfx_path):
            missing = f"no new certificate for this host: the PFX {pfx_path} ({request.pfx_variable}) does not exist on the controller"
        return {"source": "pfx", "new_thumbprint": None, "pfx_path": pfx_path}, missing
    return {}, "no new certificate for this host: set xu_renew_pfx_path (a PFX per host) or xu_renew_new_thumbprint"


def _renewal_blocker(info: Mapping[str, Any]) -> str | None:
    """Why AD CS cannot renew the bound certificate with its key, or None."""
    certificate = as_dict(as_dict(info.get("web_server")).get("certificate"))
    checks = (
        (not certificate.get("in_store"), "AD CS renews only a certificate that is in LocalMachine\\My"),
        (not certificate.get("has_private_key"), "it has no private key in the store"),
        (certificate.get("expired"), "a CA refuses to renew an expired certificate"),
        (certificate.get("san_covers_fqdn") is False, f"it does not name {info.get('fqdn')} in its SAN, and a renewal keeps its names"),
    )
    blocker = next((message for failed, message in checks if failed), None)
    if blocker is None:
        return None
    return f"it cannot be renewed with the same key: {blocker}; use xu_renew_mode: replace with a new certificate"


def _unread_plan(info: Mapping[str, Any], mode: str, strategy: str) -> Plan:
    """The plan of a host xu_tls_info could not read: nothing is done, and the summary says why."""
    message = " ".join(str(info.get("msg") or "no answer").split())
    action = "unreachable" if info.get("unreachable") else "unreadable"
    reason = unreachable_reason(message) if action == "unreachable" else f"could not be read: {message}"
    return Plan(action=action, status="error", reason=reason, mode=mode, strategy=strategy)


def _journal_action(info: Mapping[str, Any], run_id: Any, now: datetime.datetime, take_over: str | None = None) -> dict[str, Any] | None:
    """What a journal on the host decides: blocked (unreadable), busy (another run's live lease), resume; None without one.

    ``now`` is the controller's time; the lease is judged on the host's clock, by the offset xu_tls_info measured.
    ``take_over`` names a run the operator knows is gone: its host is resumed once that run's last call has run out.
    """
    if info.get("journal_error"):
        # Whether another run holds the host, or an interrupted one must be resumed first, is unknown.
        return {"action": "blocked", "gate_closed": False, "reason": f"its journal could not be read ({info['journal_error']}); nothing was done"}
    journal = info.get("journal")
    if journal is None:
        return None
    host_now = host_now_from(as_dict(info.get("host_clock")), now)
    owner = lease_owner(as_dict(journal), str(run_id or ""), host_now)
    step = as_dict(journal).get("step", "unknown")
    if owner is not None and take_over and take_over == owner["run_id"]:
        refusal = takeover_refusal(owner, host_now)
        if refusal is None:
            reason = f"run {owner['run_id']} was taken over (xu_renew_take_over) at step {step}: its last call's time limit had passed"
            return {"action": "resume", "reason": reason}
        return {"action": "busy", "gate_closed": False, "owner": owner, "reason": f"xu_renew_take_over={take_over} was refused: {refusal}"}
    if owner is not None:
        # Another run is working on this host right now: not a single change, not even its gate.
        return {
            "action": "busy", "gate_closed": False, "owner": owner,
            "reason": f"another run ({owner['run_id']}) is working on this host ({last_step_words(owner['step'])}), its lease runs until"
            f" {owner['lease_expires']}; if that run is gone (interrupted, a cancelled AWX job), take the host over with"
            f" -e xu_renew_take_over={owner['run_id']} (accepted once its last call's time limit has passed)",
        }
    return {"action": "resume", "reason": f"an interrupted run left its journal (step {step})"}


def _unread_state(info: Mapping[str, Any]) -> dict[str, Any] | None:
    """A host part of whose state could not be read is blocked: an unread store is not an empty one."""
    if not info.get("read_errors"):
        return None
    unread = "; ".join(str(error) for error in info["read_errors"])
    return {"action": "blocked", "reason": f"part of its state could not be read ({unread}); nothing was done"}


def plan(info: Mapping[str, Any], mode: str, strategy: str, request: RenewalRequest, now: datetime.datetime | None = None) -> Plan:
    """What the renewal does on one host: ``action`` renew, resume, none, blocked, busy, unreachable or unreadable."""
    mode = check_choice("xu_renew_mode", mode, MODES)
    strategy = check_choice("xu_renew_strategy", strategy, STRATEGIES)
    now = now or utc_now()
    if info.get("unreachable") or info.get("failed"):
        return _unread_plan(info, mode, strategy)
    verdict, note = (request.ca_verdict, request.ca_note) if mode == "acme" else (None, None)
    assessed = due(info, float(request.before_days), bool(request.force), float(request.before_percent), now, ca_verdict=verdict, ca_note=note)
    web = as_dict(info.get("web_server"))
    config = as_dict(info.get("config_server"))
    old = assessed.old_thumbprint
    config_tls = bool(config.get("tls"))
    config_thumbprint = upper(config.get("certificate_thumbprint"))
    settings = tls_settings_file(info)
    decided = Plan(
        action="none",
        status=assessed.status,
        reason=assessed.reason,
        mode=mode,
        strategy=strategy,
        old_thumbprint=old,
        days_left=assessed.days_left,
        not_after=assessed.not_after,
        previous_web_protocol=web.get("protocol"),
        web_protocol=web.get("protocol"),
        config_tls=config_tls,
        config_separate=bool(config_tls and config_thumbprint and config_thumbprint != old),
        http_port=web.get("http_port"),
        original_sha256=settings.get("sha256"),
        tls_path=settings.get("path"),
        fqdn=info.get("fqdn"),
        source="adcs" if mode == "reuse_key" else None,
        # reuse_key as documented turns TLS off: only behind the closed gate.
        close_gate=closes_gate(mode, strategy),
        remove_old=bool(request.remove_old) and mode in NEW_KEY_MODES,
        controller_check=bool(request.ca_path),
        # Left closed by an earlier run: the role opens it, whatever else it does.
        gate_closed=as_dict(info.get("gate")).get("state") == "closed",
    )
    held = _journal_action(info, request.run_id, now, request.take_over) or _unread_state(info)
    if held is not None:
        return replace(decided, **held)
    scoped = _enable_tls_scope(info, decided, assessed, request, now)
    if scoped is not None:
        return scoped
    if mode == "adopt" and assessed.status != "skip":
        # Due in adopt mode means a better certificate is there, whatever the bound one's expiry.
        decided = replace(decided, **_adopted(info, assessed, request, now))
    if decided.action != "renew" and (mode == "adopt" or not assessed.due):
        return decided
    source, blocker = _source(info, old, mode, request)
    decided = replace(decided, **source)
    if blocker is not None:
        return replace(decided, action="blocked", reason=f"{assessed.reason}; {blocker}")
    # minimal_outage removes the old certificate in the swap's own remote call, right after the
    # host has seen the new one served; with a controller check or a separate configuration server
    # certificate to bind, the removal waits until everything is verified.
    in_swap = decided.remove_old and strategy == "minimal_outage" and not decided.controller_check and not decided.config_separate
    return replace(decided, action="renew", remove_old_in_swap=in_swap)


def _enable_tls_scope(info: Mapping[str, Any], decided: Plan, assessed: Due, request: RenewalRequest, now: datetime.datetime) -> Plan | None:
    """The plan when xu_renew_enable_tls decides it (a host serving plain HTTP; with tls_off_only, every host), else None."""
    if request.enable_tls and assessed.reason == TLS_OFF_REASON:
        return _enable_tls_plan(info, decided, request, now)
    if not request.tls_off_only:
        return None
    if assessed.status == "skip":
        # Skipped for a reason of its own (unread, not found): enable_tls.yml reports it as is.
        return decided
    protocol = as_dict(info.get("web_server")).get("protocol")
    return replace(decided, status="not_due", reason=f"TLS is on already ({protocol}, {assessed.old_thumbprint}); enable_tls.yml leaves it alone")


def _enable_tls_plan(info: Mapping[str, Any], decided: Plan, request: RenewalRequest, now: datetime.datetime) -> Plan:
    """A host that serves plain HTTP, with xu_renew_enable_tls: TLS on with a certificate of the mode's source, or why not."""
    protocol = check_choice("xu_renew_web_protocol", request.web_protocol, HTTPS_PROTOCOLS)
    port = as_dict(info.get("web_server")).get("http_port")
    decided = replace(
        decided, status="due", reason=f"TLS is off (plain HTTP on port {port})", old_thumbprint=None,
        days_left=None, not_after=None, previous_web_protocol=PLAIN_HTTP_PROTOCOL, web_protocol=protocol, enable_tls=True,
        bind_config=bool(request.bind_config_server), config_separate=False, source=None, close_gate=False, remove_old=False,
    )
    mode = str(decided.mode)
    if mode == "reuse_key":
        return replace(decided, action="blocked", reason=f"{decided.reason}; reuse_key renews a bound certificate and none is bound:"
                       " use xu_renew_mode adopt, enroll or replace")
    if mode == "adopt":
        adoption = _adoption(info, request, now)
        if adoption.chosen is None:
            return replace(decided, action="blocked", reason=f"{decided.reason}; no certificate in LocalMachine\\My can serve it ({adoption.summary()})")
        source: dict[str, Any] = {"source": "thumbprint", "new_thumbprint": adoption.chosen.thumbprint}
        blocker = None
    else:
        source, blocker = _source(info, None, mode, request)
    decided = replace(decided, **source)
    if blocker is not None:
        return replace(decided, action="blocked", reason=f"{decided.reason}; {blocker}")
    with_what = {"thumbprint": decided.new_thumbprint, "enroll": "a certificate enrolled from the template " + str(request.template)}
    what = with_what.get(str(decided.source), "the new PFX")
    return replace(decided, action="renew", reason=f"{decided.reason}; TLS is turned on ({protocol}) with {what}")


@dataclass(frozen=True)
class PfxInputs:
    """The new PFX as read on the controller (``pfx`` None for a path that was not found), and what judging it needs."""

    pfx: bytes | None = None
    pfx_content: str | None = None
    password: str | None = None
    ca_bundle: bytes | None = None
    strict_san: bool = True
    allow_shorter: bool = False
    # The variable the PFX's path came from, for the message when it is not found.
    pfx_variable: str = "xu_renew_pfx_path"


def precheck(planned: Plan, given: PfxInputs, now: datetime.datetime | None = None) -> Plan:
    """The plan, ``blocked`` with the reason when the swap would refuse the host's new PFX; unchanged otherwise."""
    if planned.action != "renew" or planned.source not in PFX_SOURCES:
        return planned
    if planned.source == "pfx" and given.pfx is None:
        blocker: str | None = f"the PFX {planned.pfx_path} ({given.pfx_variable}) was not found on the controller"
    else:
        blocker = pfx_blocker(
            planned.as_fact(),
            pfx=given.pfx if planned.source == "pfx" else None,
            pfx_source=f"the PFX {planned.pfx_path}" if planned.source == "pfx" else "xu_renew_pfx_content",
            pfx_content=given.pfx_content if planned.source == "pfx_content" else None,
            password=given.password or None,
            ca_bundle=given.ca_bundle,
            strict_san=given.strict_san,
            now=now or utc_now(),
            allow_shorter=given.allow_shorter,
        )
    if blocker is None:
        return planned
    return replace(planned, action="blocked", reason=f"{planned.reason}; the new certificate cannot be used: {blocker}")
