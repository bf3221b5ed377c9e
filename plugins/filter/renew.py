# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The decisions of the C(xtractuniversal.tls.renew) role, as filters.

The role's YAML only sequences module calls; every decision is made here, from the
report of M(xtractuniversal.tls.xu_tls_info) and the role's journal, by pure functions
that are unit-tested on their own:

``renew_options``   the role's variables, checked and given their documented types (extra vars arrive as strings)
``renew_precheck``  the plan, blocked when the real run would refuse the host's new PFX (judged on the controller)
``renew_due``       whether a host's bound certificate needs renewing
``renew_plan``      what the role does on a host: renew (and how), resume a journal, nothing, or why it cannot
``renew_journal``   the role's journal with the step reached and what the step left (new thumbprint, backups)
``renew_verify``    whether a host serves what a renewal (or a rollback) should have left
``renew_resume``    what to do with the journal of an interrupted run: complete it or roll it back
``renew_recovery``  the same after a failed step, preferring the rollback
``renew_outcome``   the message and result of a failed host, from what the recovery did
``renew_summary``   the per-host summary the role returns as facts and through set_stats
``renew_totals``    how many hosts ended with each result, for the fleet summary
``renew_halt``      whether an earlier batch failed more than allowed, so this one must not start
``renew_fleet``     the fleet summary's lines, totals and the hosts that fail the run
``renew_errors``    the messages of the registered results that failed

Each filter has its documentation in ``plugins/filter/<name>.yml``.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._certificate import utc_now
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._lease import lease_owner
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._renew_fleet import batch_halt, fleet_report
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._renew_options import RoleOptionsError
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._renew_options import renew_options as typed_renew_options
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._renew_precheck import pfx_blocker, role_wording

MODES = ("replace", "reuse_key")
STRATEGIES = ("documented", "minimal_outage")
HTTPS_PROTOCOLS = ("https_unrestricted", "https_ad_users", "https_custom_users")
TLS_FILE_SUFFIX = "\\servers\\tls.json"
ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class RenewFilterError(ValueError):
    """A filter was called with arguments it cannot work with (a bug in the caller, not a host state)."""


# -- reading xu_tls_info's report ---------------------------------------------------------------


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _upper(value: Any) -> str | None:
    return value.strip().upper() if isinstance(value, str) and value.strip() else None


def tls_settings_file(info: Mapping[str, Any]) -> dict[str, Any]:
    """The entry of ``tls.json`` in the report's settings files (empty when the report has none)."""
    for entry in info.get("settings_files") or []:
        if str(_dict(entry).get("path") or "").lower().endswith(TLS_FILE_SUFFIX):
            return _dict(entry)
    return {}


def store_entry(info: Mapping[str, Any], thumbprint: str | None) -> dict[str, Any] | None:
    """A certificate of ``LocalMachine\\My`` as the report lists it, or None when it is not there."""
    wanted = _upper(thumbprint)
    if wanted is None:
        return None
    for entry in info.get("store_certificates") or []:
        if _upper(_dict(entry).get("thumbprint")) == wanted:
            return _dict(entry)
    return None


def usable(info: Mapping[str, Any], thumbprint: str | None) -> bool:
    """Whether the service could start with the certificate: in the store, with a private key.

    An unreadable key is granted on the way (the modules run with grant_key_access), and an
    expired certificate is still served by XU, so neither makes a certificate unusable here.
    """
    entry = store_entry(info, thumbprint)
    return bool(entry and entry.get("has_private_key"))


def _served(info: Mapping[str, Any], name: str) -> dict[str, Any]:
    return _dict(_dict(info.get("served")).get(name))


def _service_running(info: Mapping[str, Any]) -> bool:
    return _dict(info.get("service")).get("state") == "Running"


# -- due ----------------------------------------------------------------------------------------


def _not_applicable(info: Mapping[str, Any]) -> str | None:
    """Why the role has nothing to renew on this host, or None."""
    if not info or info.get("failed"):
        return f"the server's TLS state could not be read: {info.get('msg') if info else 'no report'}"
    web = _dict(info.get("web_server"))
    problems = "; ".join(info.get("problems") or []) or "unknown reason"
    checks = (
        (not info.get("installed"), "Xtract Universal is not installed (no service or install dir found)"),
        (not web, f"the TLS settings could not be read ({problems})"),
        (web and web.get("protocol") is None,
         f"the web server protocol {web.get('protocol_setting')!r} is not one this collection knows; check settings_map"),
        (web and not web.get("tls"), "TLS is off (the web server serves plain HTTP); the role renews certificates, it does not turn TLS on"),
        (web and not _upper(web.get("certificate_thumbprint")), "the web server uses HTTPS without a certificate; bind one with xu_tls_binding first"),
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
    role: str, certificate: Mapping[str, Any], thumbprint: str, window: tuple[float, float], now: datetime.datetime
) -> str | None:
    """Why one bound certificate needs renewing, or None. ``window``: (before_days, before_percent)."""
    before_days, before_percent = window
    if not certificate.get("in_store"):
        return f"the {role} certificate {thumbprint} is not in LocalMachine\\My: the next restart would fail"
    if certificate.get("expired"):
        return f"the {role} certificate {thumbprint} expired on {certificate.get('not_after')}"
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


def renew_due(
    info: Mapping[str, Any], before_days: float = 30, force: bool = False, before_percent: float = 0, *, now: datetime.datetime | None = None
) -> dict[str, Any]:
    """Whether the host's bound certificate needs renewing: {status, due, reason, old_thumbprint, days_left, not_after}.

    ``status`` is ``due``, ``not_due`` or ``skip`` (nothing the role can renew: not installed,
    unreadable, TLS off). A certificate is due when it expires in fewer than ``before_days``
    days, when less than ``before_percent`` percent of its lifetime is left (0: not checked),
    when it has expired, or when it is missing from the store; ``force`` makes every TLS host due.
    """
    now = now or utc_now()
    before_days = float(before_days)
    window = (before_days, float(before_percent))
    info = _dict(info)
    reason = _not_applicable(info)
    if reason is not None:
        return {"status": "skip", "due": False, "reason": reason, "old_thumbprint": None, "days_left": None, "not_after": None}
    web = _dict(info.get("web_server"))
    old = str(_upper(web.get("certificate_thumbprint")))  # present: checked by _not_applicable
    certificate = _dict(web.get("certificate"))
    config = _dict(info.get("config_server"))
    checks = [("web server", certificate, old)]
    config_thumbprint = _upper(config.get("certificate_thumbprint"))
    if config.get("tls") and config_thumbprint and config_thumbprint != old:
        checks.append(("configuration server", _dict(config.get("certificate")), config_thumbprint))
    reasons = [r for role, cert, thumbprint in checks if (r := _certificate_due(role, cert, thumbprint, window, now))]
    result = {"old_thumbprint": old, "days_left": certificate.get("days_left"), "not_after": certificate.get("not_after")}
    if reasons:
        return {"status": "due", "due": True, "reason": "; ".join(reasons), **result}
    if force:
        return {"status": "due", "due": True, "reason": "renewal forced (xu_renew_force)", **result}
    return {
        "status": "not_due", "due": False,
        "reason": f"the certificate {old} expires in {certificate.get('days_left')} days, not fewer than {before_days:g}"
        + (f", with {lifetime_left_percent(certificate, now) or 0:.1f}% of its lifetime left" if before_percent else ""),
        **result,
    }


# -- the role's variables ------------------------------------------------------------------------


def renew_options(values: Any, host: str, entry_point: str = "main") -> dict[str, Any]:
    """The role's variables with their documented types (see _renew_options); AnsibleFilterError names a wrong one."""
    if not isinstance(values, Mapping):
        raise AnsibleFilterError(f"renew_options takes a dict of the role's variables, not {type(values).__name__}")
    try:
        return typed_renew_options(values, str(host), entry_point)
    except RoleOptionsError as e:
        raise AnsibleFilterError(f"The renew role's variables: {e}") from None


# -- the plan -----------------------------------------------------------------------------------


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise RenewFilterError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return str(value)


def _thumbprint_problem(info: Mapping[str, Any], old: str | None, thumbprint: str) -> str | None:
    """Why a certificate of the host's store cannot replace the bound one, or None."""
    entry = store_entry(info, thumbprint) or {}
    days_left = entry.get("days_left")
    checks = (
        (thumbprint == old, f"xu_renew_new_thumbprint {thumbprint} is the certificate already bound"),
        (not entry, f"xu_renew_new_thumbprint {thumbprint} is not in LocalMachine\\My on the host; import it first or give a PFX"),
        (not entry.get("has_private_key"), f"the new certificate {thumbprint} has no private key in LocalMachine\\My"),
        (not isinstance(days_left, (int, float)) or days_left < 0, f"the new certificate {thumbprint} has expired ({entry.get('not_after')})"),
        (entry.get("san_covers_fqdn") is False, f"the new certificate {thumbprint} does not name {info.get('fqdn')} in its Subject Alternative Name"),
    )
    return next((message for failed, message in checks if failed), None)


def _new_source(
    info: Mapping[str, Any], old: str | None, new_thumbprint: Any, pfx_path: Any, pfx_content_given: bool
) -> tuple[dict[str, Any], str | None]:
    """Where replace mode takes the new certificate from, or why it cannot (the second value)."""
    thumbprint = _upper(new_thumbprint)
    if thumbprint is not None:
        thumbprint = "".join(ch for ch in thumbprint if ch.isalnum())
        return {"source": "thumbprint", "new_thumbprint": thumbprint, "pfx_path": None}, _thumbprint_problem(info, old, thumbprint)
    if pfx_content_given:
        return {"source": "pfx_content", "new_thumbprint": None, "pfx_path": None}, None
    if isinstance(pfx_path, str) and pfx_path:
        # A relative path is found by xu_cert_swap like copy's src (the role's or play's files/); only an absolute one is checked here.
        missing = None
        if os.path.isabs(pfx_path) and not os.path.isfile(pfx_path):
            missing = f"no new certificate for this host: the PFX {pfx_path} does not exist on the controller"
        return {"source": "pfx", "new_thumbprint": None, "pfx_path": pfx_path}, missing
    return {}, "no new certificate for this host: set xu_renew_pfx_path (a PFX per host) or xu_renew_new_thumbprint"


def _renewal_blocker(info: Mapping[str, Any]) -> str | None:
    """Why AD CS cannot renew the bound certificate with its key, or None."""
    certificate = _dict(_dict(info.get("web_server")).get("certificate"))
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


def _unread_plan(info: Mapping[str, Any], mode: str, strategy: str) -> dict[str, Any]:
    """The plan of a host xu_tls_info could not read: nothing is done, and the summary says why."""
    message = " ".join(str(info.get("msg") or "no answer").split())
    action = "unreachable" if info.get("unreachable") else "unreadable"
    reason = f"could not be reached: {message}" if action == "unreachable" else f"could not be read: {message}"
    return {
        "action": action, "status": "error", "reason": reason, "mode": mode, "strategy": strategy,
        "old_thumbprint": None, "days_left": None, "not_after": None, "gate_closed": False,
    }


def _journal_action(info: Mapping[str, Any], run_id: Any) -> dict[str, Any] | None:
    """What a journal on the host decides: blocked (unreadable), busy (another run's live lease), resume; None without one."""
    if info.get("journal_error"):
        # Whether another run holds the host, or an interrupted one must be resumed first, is unknown.
        return {"action": "blocked", "gate_closed": False, "reason": f"its journal could not be read ({info['journal_error']}); nothing was done"}
    journal = info.get("journal")
    if journal is None:
        return None
    owner = lease_owner(_dict(journal), str(run_id or ""), utc_now())
    if owner is not None:
        # Another run is working on this host right now: not a single change, not even its gate.
        return {
            "action": "busy", "gate_closed": False, "owner": owner,
            "reason": f"another run ({owner['run_id']}) is working on this host: step {owner['step'] or 'unknown'},"
            f" its lease runs until {owner['lease_expires']}",
        }
    return {"action": "resume", "reason": f"an interrupted run left its journal (step {_dict(journal).get('step', 'unknown')})"}


def renew_plan(
    info: Mapping[str, Any],
    mode: str,
    *,
    strategy: str = "documented",
    before_days: float = 30,
    before_percent: float = 0,
    force: bool = False,
    new_thumbprint: Any = None,
    pfx_path: Any = None,
    pfx_content_given: bool = False,
    ca_path: Any = None,
    remove_old: bool = True,
    run_id: Any = None,
) -> dict[str, Any]:
    """What the role does on one host, decided from xu_tls_info's report.

    ``action``: ``resume`` (a journal of an interrupted run is on the host, and its lease has
    expired), ``busy`` (another run holds a live lease on the host: nothing is touched), ``renew``,
    ``none`` (not due, or nothing to renew), ``blocked`` (due, but this mode cannot renew it), or
    ``unreachable`` / ``unreadable`` (the report is a failed task's result: nothing is done).
    The rest describes the renewal for the role's task files and for the journal.
    """
    mode = _check_choice("xu_renew_mode", mode, MODES)
    strategy = _check_choice("xu_renew_strategy", strategy, STRATEGIES)
    info = _dict(info)
    if info.get("unreachable") or info.get("failed"):
        return _unread_plan(info, mode, strategy)
    due = renew_due(info, before_days, force, before_percent)
    web = _dict(info.get("web_server"))
    config = _dict(info.get("config_server"))
    old = due["old_thumbprint"]
    config_tls = bool(config.get("tls"))
    config_thumbprint = _upper(config.get("certificate_thumbprint"))
    plan: dict[str, Any] = {
        "action": "none",
        "status": due["status"],
        "reason": due["reason"],
        "mode": mode,
        "strategy": strategy,
        # replace's strategies differ only in where the old certificate goes: one sequence for both.
        "tasks": "replace.yml" if mode == "replace" else f"{mode}_{strategy}.yml",
        "old_thumbprint": old,
        "days_left": due["days_left"],
        "not_after": due["not_after"],
        "previous_web_protocol": web.get("protocol"),
        "config_tls": config_tls,
        "config_separate": bool(config_tls and config_thumbprint and config_thumbprint != old),
        "http_port": web.get("http_port"),
        "original_sha256": tls_settings_file(info).get("sha256"),
        "tls_path": tls_settings_file(info).get("path"),
        "fqdn": info.get("fqdn"),
        "source": "adcs" if mode == "reuse_key" else None,
        "new_thumbprint": None,
        "pfx_path": None,
        # reuse_key as documented turns TLS off: only behind the closed gate.
        "close_gate": mode == "reuse_key" and strategy == "documented",
        "remove_old": bool(remove_old) and mode == "replace",
        "remove_old_in_swap": False,
        "controller_check": bool(ca_path),
        # Left closed by an earlier run: the role opens it, whatever else it does.
        "gate_closed": _dict(info.get("gate")).get("state") == "closed",
    }
    held = _journal_action(info, run_id)
    if held is not None:
        plan.update(held)
        return plan
    if info.get("read_errors"):
        # An unread store is not an empty one: whether the host is due, and how, is unknown.
        unread = "; ".join(str(error) for error in info["read_errors"])
        plan.update(action="blocked", reason=f"part of its state could not be read ({unread}); nothing was done")
        return plan
    if not due["due"]:
        return plan
    if mode == "replace":
        source, blocker = _new_source(info, old, new_thumbprint, pfx_path, pfx_content_given)
        plan.update(source)
    else:
        blocker = _renewal_blocker(info)
    if blocker is not None:
        plan.update(action="blocked", reason=f"{due['reason']}; {blocker}")
        return plan
    # minimal_outage removes the old certificate in the swap's own remote call, right after the
    # host has seen the new one served; with a controller check or a separate configuration server
    # certificate to bind, the removal waits until everything is verified.
    plan["remove_old_in_swap"] = plan["remove_old"] and strategy == "minimal_outage" and not plan["controller_check"] and not plan["config_separate"]
    plan["action"] = "renew"
    return plan


def renew_precheck(
    plan: Any,
    *,
    pfx_path: Any = None,
    pfx_content: Any = None,
    pfx_password: Any = None,
    ca_path: Any = None,
    strict_san: Any = True,
) -> dict[str, Any]:
    """The plan, ``blocked`` with the reason when the swap would refuse the host's new PFX; unchanged otherwise.

    ``pfx_path`` and ``ca_path`` are the files as found on the controller (empty: not found).
    """
    checked: dict[str, Any] = dict(_dict(plan))
    if checked.get("action") != "renew" or checked.get("source") not in ("pfx", "pfx_content"):
        return checked
    if checked["source"] == "pfx" and not pfx_path:
        blocker: str | None = f"the PFX {checked.get('pfx_path')} (xu_renew_pfx_path) was not found on the controller"
    else:
        blocker = pfx_blocker(
            checked,
            pfx_path=str(pfx_path) if checked["source"] == "pfx" else None,
            pfx_content=str(pfx_content) if checked["source"] == "pfx_content" else None,
            password=str(pfx_password) if pfx_password else None,
            ca_path=str(ca_path) if ca_path else None,
            strict_san=bool(strict_san),
            now=utc_now(),
        )
    if blocker is not None:
        checked.update(action="blocked", reason=f"{checked.get('reason')}; the new certificate cannot be used: {blocker}")
    return checked


# -- the journal --------------------------------------------------------------------------------


def renew_journal_start(plan: Mapping[str, Any], run_id: str, started: str) -> dict[str, Any]:
    """The journal written before a renewal changes anything: what a later run needs to complete or undo it."""
    plan = _dict(plan)
    return {
        "run_id": run_id,
        "mode": plan.get("mode"),
        "strategy": plan.get("strategy"),
        "step": "started",
        "old_thumbprint": plan.get("old_thumbprint"),
        "new_thumbprint": plan.get("new_thumbprint"),
        "backup_files": {},
        "previous_web_protocol": plan.get("previous_web_protocol"),
        "config_tls": bool(plan.get("config_tls")),
        "original_sha256": plan.get("original_sha256"),
        "tls_path": plan.get("tls_path"),
        "remove_old": bool(plan.get("remove_old")),
        "gate": bool(plan.get("close_gate")),
        "started": started,
    }


def renew_journal(
    journal: Mapping[str, Any] | None,
    step: str | None = None,
    new_thumbprint: Any = None,
    backup_file: Any = None,
    backup_files: Any = None,
) -> dict[str, Any]:
    """The journal after a step: the step reached, the new thumbprint once known, and every backup made.

    Only the first backup of each file is kept: it holds the settings from before the run,
    which a rollback restores. Values that are None (a step that made no backup) change nothing.
    """
    updated = _dict(journal)
    if step:
        updated["step"] = step
    new = _upper(new_thumbprint)
    if new is not None and not updated.get("new_thumbprint"):
        updated["new_thumbprint"] = new
    backups = _dict(updated.get("backup_files"))
    made = dict(_dict(backup_files))
    if isinstance(backup_file, str) and backup_file and updated.get("tls_path"):
        made.setdefault(str(updated["tls_path"]), backup_file)
    for path, backup in made.items():
        if isinstance(backup, str) and backup and not any(str(p).lower() == str(path).lower() for p in backups):
            backups[str(path)] = backup
    updated["backup_files"] = backups
    return updated


# -- verification -------------------------------------------------------------------------------


def serving_tls(info: Mapping[str, Any]) -> bool:
    """Whether the server answers HTTPS with a certificate and nothing answers plain HTTP (the HTTP hold may go)."""
    info = _dict(info)
    https = _served(info, "web_https")
    return _service_running(info) and bool(https.get("answering") and https.get("thumbprint")) and not _served(info, "web_http").get("answering")


def _verify_certificate(certificate: Mapping[str, Any], expected: str, require_valid: bool) -> list[str]:
    problems = []
    if not certificate.get("in_store"):
        problems.append(f"the certificate {expected} is not in LocalMachine\\My")
    elif certificate.get("key_readable_by_service") is False:
        problems.append(f"the service account cannot read the private key of {expected}")
    if require_valid:
        if certificate.get("expired") or certificate.get("not_yet_valid"):
            problems.append(f"the certificate {expected} is not valid now ({certificate.get('not_before')} to {certificate.get('not_after')})")
        if certificate.get("san_covers_fqdn") is not True:
            problems.append(f"the certificate {expected} does not name the host in its Subject Alternative Name")
    return problems


def renew_verify(
    info: Mapping[str, Any],
    expected: str | None,
    web_protocol: str | None = None,
    config_tls: bool | None = None,
    require_valid: bool = True,
) -> dict[str, Any]:
    """Whether the host serves ``expected`` as a renewal (or a rollback) should leave it: {ok, problems}.

    Checks, from xu_tls_info's report: the service runs; the settings bind ``expected`` with the
    HTTPS protocol ``web_protocol`` (and on the configuration server when ``config_tls``); the
    HTTPS port and the configuration server port present ``expected``; ``GET /version`` answers
    200 over HTTPS; the service account can read the key; and, with ``require_valid``, the
    certificate is valid now and its SAN covers the host's name.
    """
    info = _dict(info)
    wanted = _upper(expected)
    problems: list[str] = []
    if wanted is None:
        return {"ok": False, "problems": ["no certificate to verify"], "thumbprint": None, "serving_tls": serving_tls(info)}
    if not _service_running(info):
        problems.append(f"the service is {_dict(info.get('service')).get('state', 'missing')}")
    web = _dict(info.get("web_server"))
    config = _dict(info.get("config_server"))
    if web_protocol is not None and web.get("protocol") != web_protocol:
        problems.append(f"the web server protocol is {web.get('protocol')}, not {web_protocol}")
    if _upper(web.get("certificate_thumbprint")) != wanted:
        problems.append(f"the settings bind {web.get('certificate_thumbprint')} to the web server, not {wanted}")
    https = _served(info, "web_https")
    if _upper(https.get("thumbprint")) != wanted:
        problems.append(f"the HTTPS port {https.get('port')} presents {https.get('thumbprint') or 'no certificate'}, not {wanted}")
    elif https.get("http_status") != 200:
        problems.append(f"GET /version over HTTPS answered {https.get('http_status')}, not 200")
    if _served(info, "web_http").get("answering"):
        problems.append(f"the web server still answers plain HTTP on port {_served(info, 'web_http').get('port')}")
    if config_tls is None:
        config_tls = bool(config.get("tls"))
    if config_tls:
        if _upper(config.get("certificate_thumbprint")) != wanted:
            problems.append(f"the settings bind {config.get('certificate_thumbprint')} to the configuration server, not {wanted}")
        served = _served(info, "config_server")
        if _upper(served.get("thumbprint")) != wanted:
            problems.append(f"the configuration server port {served.get('port')} presents {served.get('thumbprint') or 'no certificate'}, not {wanted}")
    problems += _verify_certificate(_dict(web.get("certificate")), wanted, require_valid)
    return {"ok": not problems, "problems": problems, "thumbprint": wanted, "serving_tls": serving_tls(info)}


# -- resuming and recovering --------------------------------------------------------------------


def _restart_mode(info: Mapping[str, Any], in_force: bool) -> str:
    return "if_changed" if in_force and _service_running(info) else "always"


def _journal_new(journal: Mapping[str, Any], info: Mapping[str, Any], old: str | None) -> str | None:
    """The new certificate of the journal's run; from the settings when the run died before recording it."""
    new = _upper(journal.get("new_thumbprint"))
    if new is not None:
        return new
    bound = _upper(_dict(info.get("web_server")).get("certificate_thumbprint"))
    return bound if bound is not None and bound != old else None


def _restores(journal: Mapping[str, Any], restart: str) -> list[dict[str, Any]]:
    """The backups to put back, tls.json last; only the last one restarts the service."""
    backups = _dict(journal.get("backup_files"))
    ordered = sorted(backups.items(), key=lambda item: str(item[0]).lower().endswith(TLS_FILE_SUFFIX))
    return [
        {"path": path, "backup_file": backup, "restart": restart if index == len(ordered) - 1 else "never"}
        for index, (path, backup) in enumerate(ordered)
    ]


def _empty_recovery(action: str, reason: str, journal: Mapping[str, Any], expect: str | None) -> dict[str, Any]:
    return {
        "action": action,
        "reason": reason,
        "expect": expect,
        "web_protocol": journal.get("previous_web_protocol"),
        "config_tls": bool(journal.get("config_tls")),
        "require_valid": action == "complete",
        "restores": [],
        "swap": None,
        "rebind": None,
        "remove_old": False,
        "old_thumbprint": _upper(journal.get("old_thumbprint")),
        "new_thumbprint": None,
    }


def _rollback(journal: Mapping[str, Any], info: Mapping[str, Any], old: str, old_in_force: bool, file_original: bool) -> dict[str, Any]:
    recovery = _empty_recovery("rollback", f"the previous certificate {old} is put back", journal, old)
    if old_in_force:
        recovery["reason"] = f"the previous settings are in force and the server serves {old}"
        return recovery
    backups = _dict(journal.get("backup_files"))
    rebind = {
        "web_protocol": journal.get("previous_web_protocol"),
        "web_certificate": old,
        "config_server_certificate": old if journal.get("config_tls") else None,
        "restart": "always",
    }
    if file_original:
        # The settings file holds the bytes from before the run (a write planned with its backup never
        # happened, so that backup may not exist): only a restart is missing; the values match, nothing is written.
        recovery["rebind"] = rebind
        recovery["reason"] = f"the previous settings are unchanged; the service is restarted to serve {old}"
        return recovery
    if backups:
        recovery["restores"] = _restores(journal, "if_changed")
        recovery["reason"] = f"the previous settings are restored from {', '.join(backups.values())}, serving {old}"
        return recovery
    # The last resort: neither this run nor the host recorded a copy of the previous bytes; set the values back.
    recovery["rebind"] = {**rebind, "restart": "if_changed"}
    recovery["reason"] = f"no backup was recorded; the previous values are set back, serving {old}"
    return recovery


def _forward(journal: Mapping[str, Any], info: Mapping[str, Any], old: str, new: str | None, new_in_force: bool) -> dict[str, Any]:
    recovery = _empty_recovery("complete", "", journal, new)
    recovery["new_thumbprint"] = new
    recovery["remove_old"] = bool(journal.get("remove_old")) and store_entry(info, old) is not None
    renewal = journal.get("mode") == "reuse_key"
    gone = "was archived by the AD CS renewal" if renewal else "is no longer in LocalMachine\\My"
    if new_in_force:
        recovery["reason"] = f"the new certificate {new} is bound and served"
        if not usable(info, old):
            recovery["reason"] = f"the previous certificate {old} {gone}, so it cannot be put back; {recovery['reason']}"
        return recovery
    backups = _dict(journal.get("backup_files"))
    if backups:
        # The previous settings first, byte for byte; then only the thumbprints move to the new certificate.
        recovery["restores"] = _restores(journal, "never")
    recovery["swap"] = {
        "old_thumbprint": old,
        "new_thumbprint": None if renewal else new,
        "renew_reusing_key": True if renewal else None,
        "restart": "if_changed" if backups else "always",
    }
    web = _dict(info.get("web_server"))
    if not backups and web.get("protocol") != journal.get("previous_web_protocol"):
        recovery["rebind"] = {"web_protocol": journal.get("previous_web_protocol"), "web_certificate": None,
                              "config_server_certificate": None, "restart": "if_changed"}
    what = f"the renewed certificate {new or '(found by its key)'}" if renewal else f"the new certificate {new}"
    recovery["reason"] = f"the previous certificate {old} {gone}, so the previous settings cannot start the service; they are bound to {what}"
    if renewal and new is None:
        recovery["expect"] = None
    return recovery


def _unusable_journal(journal: Mapping[str, Any], info: Mapping[str, Any]) -> str | None:
    """Why the journal cannot be acted on, or None."""
    if not info or info.get("failed") or not info.get("installed"):
        return f"the server could not be read ({info.get('msg') or 'no answer'}), so nothing was put back; the journal stays for the next run"
    if "unreadable" in journal or not _upper(journal.get("old_thumbprint")) or journal.get("previous_web_protocol") not in HTTPS_PROTOCOLS:
        return "the journal cannot be read as this role's journal; check the host and remove it by hand"
    return None


def _with_hosts_record(journal: dict[str, Any], info: Mapping[str, Any]) -> dict[str, Any]:
    """The run's journal completed from the copy on the host, when that copy is this run's.

    A step whose answer was lost (a dropped connection) wrote its journal entry, naming the backup
    it made and the new certificate, in the same call: the host knows what the controller missed.
    """
    on_host = _dict(info.get("journal"))
    if not on_host or not journal.get("run_id") or on_host.get("run_id") != journal.get("run_id"):
        return journal
    return renew_journal(journal, None, new_thumbprint=on_host.get("new_thumbprint"), backup_files=on_host.get("backup_files"))


def _recover(journal: Mapping[str, Any], info: Mapping[str, Any], prefer: str) -> dict[str, Any]:
    info = _dict(info)
    journal = _with_hosts_record(_dict(journal), info)
    if not journal:
        return _empty_recovery("none", "nothing had been changed", journal, None)
    unusable = _unusable_journal(journal, info)
    if unusable is not None:
        return _empty_recovery("manual", unusable, journal, None)
    old = str(_upper(journal.get("old_thumbprint")))
    protocol = journal["previous_web_protocol"]
    config_tls = bool(journal.get("config_tls"))
    new = _journal_new(journal, info, old)
    file_original = bool(journal.get("original_sha256")) and tls_settings_file(info).get("sha256") == journal.get("original_sha256")
    new_in_force = new is not None and renew_verify(info, new, protocol, config_tls).get("ok") is True
    old_in_force = file_original and renew_verify(info, old, protocol, config_tls, require_valid=False).get("ok") is True
    if prefer == "complete" and new_in_force:
        return _forward(journal, info, old, new, True)
    if usable(info, old):
        return _rollback(journal, info, old, old_in_force, file_original)
    if usable(info, new) or (new is None and journal.get("mode") == "reuse_key"):
        return _forward(journal, info, old, new, new_in_force)
    return _empty_recovery(
        "manual",
        f"neither the previous certificate {old} nor a new one is usable in LocalMachine\\My; the settings are left as they are",
        journal,
        None,
    )


def renew_resume(journal: Mapping[str, Any] | None, info: Mapping[str, Any]) -> dict[str, Any]:
    """What to do with the journal an interrupted run left: complete it or roll it back.

    The rule, deterministic: when the new certificate is bound and served as the run meant it
    (verified like a renewal), the run is **completed**. Otherwise it is **rolled back** to the
    previous certificate (from the recorded backups, byte for byte), unless that certificate is
    no longer usable (AD CS archived it, or it was deleted from the store): then the previous
    settings are restored and bound to the new certificate, which also **completes** the run.
    """
    return _recover(_dict(journal), info, "complete")


def renew_recovery(journal: Mapping[str, Any] | None, info: Mapping[str, Any]) -> dict[str, Any]:
    """What to undo after a failed step: as renew_resume, but a new certificate is rolled back even when served.

    A step failed, so the new state is suspect (for example the controller's check against the CA
    bundle failed): the previous certificate is put back whenever it is still usable.
    """
    return _recover(_dict(journal), info, "rollback")


# -- outcome and summary ------------------------------------------------------------------------


def step_of(task_name: Any) -> str:
    """The step a task belongs to: the role's tasks are named ``<Step> | <what it does>`` (``TLS off`` -> ``tls_off``)."""
    name = str(task_name or "")
    if " : " in name:  # Ansible prefixes a role's task names with "<role> : "
        name = name.split(" : ", 1)[1]
    step = name.split(" | ", 1)[0] if " | " in name else name
    return "_".join(step.lower().split()) or "unknown"


def renew_outcome(
    failed_task: Any,
    failed_result: Mapping[str, Any] | None,
    recovery: Mapping[str, Any] | None,
    verify: Mapping[str, Any] | None,
    recovery_errors: list[Any] | None = None,
) -> dict[str, Any]:
    """The result of a failed host: {step, message, restored, recovered, served}.

    ``failed_task`` is the task that failed (its name gives the step), ``failed_result`` its
    result, ``recovery`` what renew_recovery decided, ``verify`` renew_verify after the recovery,
    ``recovery_errors`` the messages of recovery tasks that failed.
    """
    recovery = _dict(recovery)
    result = _dict(failed_result)
    step = step_of(failed_task.get("name") if isinstance(failed_task, Mapping) else failed_task)
    cause = role_wording(str(result.get("msg") or "failed").strip())
    if not failed_task:
        cause = "the play stopped this host (another host's failure exceeded max_fail_percentage, or the host was unreachable)"
    restored = [r["backup_file"] for r in recovery.get("restores") or [] if isinstance(r, Mapping)]
    errors = [str(e) for e in recovery_errors or [] if e]
    recovered = bool(verify and verify.get("ok")) and not errors
    action = recovery.get("action")
    parts = [f"step {step} failed: {cause}"]
    if action in ("rollback", "complete") and recovered:
        if restored:
            what = f"restored {', '.join(restored)}"
        elif action == "complete":
            what = "the failed step's change had taken effect on the host, and it is kept"
        else:
            what = "the previous settings were still in force, so nothing was written back"
        imported = _upper(result.get("imported_thumbprint"))
        if imported and action == "rollback":
            what += f"; the imported certificate {imported} stays in LocalMachine\\My"
        parts.append(f"recovery: {recovery.get('reason')} ({what}); verified: the server serves {recovery.get('expect') or 'the renewed certificate'}")
    elif action in ("rollback", "complete"):
        problems = errors + list(_dict(verify).get("problems") or [])
        parts.append(f"recovery did not complete ({recovery.get('reason')}): {'; '.join(problems) or 'not verified'}; the journal is kept for the next run")
    else:
        parts.append(f"no recovery: {recovery.get('reason') or 'nothing had been changed'}")
    return {
        "step": step,
        "message": "; ".join(parts),
        "restored": restored,
        "recovered": recovered,
        "serves": recovery.get("expect") if recovered else None,
    }


def summary_result(plan: Mapping[str, Any], new_thumbprint: Any, resumed: Any, failure: Any, check_mode: bool) -> str:
    """One word for what happened on the host."""
    action = _dict(plan).get("action")
    outcomes = (
        (action == "unreachable", "unreachable"),
        (bool(failure) or action == "unreadable", "failed"),
        (_upper(new_thumbprint) is not None, "renewed"),
        (check_mode and action in ("renew", "resume"), f"would_{action}"),
        (action == "blocked", "blocked"),
        (action == "busy", "busy"),
        (bool(resumed), "rolled_back" if resumed == "rolled_back" else "completed"),
        (_dict(plan).get("status") == "skip", "skipped"),
    )
    return next((word for happened, word in outcomes if happened), "not_due")


def renew_summary(
    plan: Mapping[str, Any],
    *,
    info: Mapping[str, Any] | None = None,
    new_thumbprint: str | None = None,
    outage_s: Any = None,
    resumed: str | None = None,
    resume_reason: str | None = None,
    failure: Mapping[str, Any] | None = None,
    check_mode: bool = False,
    gate_reopened: bool = False,
    resumed_thumbprints: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The per-host summary: result, old -> new thumbprint, new expiry, outage seconds, and why.

    ``resumed_thumbprints`` (``old``, ``new``) are the interrupted run's certificates: for a host
    whose resumed run was the only change, they are what the summary reports.

    ``result`` is ``renewed``, ``not_due``, ``skipped`` (nothing to renew: TLS off, not installed),
    ``blocked`` (due, but the mode cannot renew it), ``busy`` (another run holds the host), ``failed`` (rolled back), ``rolled_back`` or
    ``completed`` (an interrupted run was finished and nothing else was due), or ``would_renew`` /
    ``would_resume`` in check mode.
    """
    plan = _dict(plan)
    info = _dict(info)
    failure = _dict(failure)
    web = _dict(info.get("web_server"))
    certificate = _dict(web.get("certificate"))
    new = _upper(new_thumbprint)
    result = summary_result(plan, new, resumed, failure, check_mode)
    reason = str(plan.get("reason") or "")
    if result == "failed":
        reason = str(failure.get("message") or reason or "failed")
    elif result == "renewed":
        reason = f"renewed: {reason}" if plan.get("status") == "due" else "renewed"
    elif result in ("rolled_back", "completed"):
        reason = f"resumed an interrupted run ({resume_reason}); {reason}"
    if resumed and result == "renewed":
        reason = f"resumed an interrupted run: {resumed} ({resume_reason}); {reason}"
    if gate_reopened and result in ("not_due", "skipped", "blocked"):
        reason += "; the gate an earlier run left closed was opened"
    try:
        outage = round(float(outage_s), 1) if outage_s not in (None, "") else None
    except (TypeError, ValueError):
        outage = None
    old = plan.get("old_thumbprint")
    if result in ("completed", "rolled_back") and resumed_thumbprints:
        # The plan was made after the resume, from a server that serves the resumed run's outcome.
        old = _upper(_dict(resumed_thumbprints).get("old")) or old
        new = _upper(_dict(resumed_thumbprints).get("new")) if result == "completed" else None
    served_new = new is not None and _upper(web.get("certificate_thumbprint")) == new
    return {
        "result": result,
        "reason": reason,
        "mode": plan.get("mode"),
        "strategy": plan.get("strategy"),
        "old_thumbprint": old,
        "new_thumbprint": new,
        "new_expiry": certificate.get("not_after") if served_new else None,
        "days_left": certificate.get("days_left") if certificate else plan.get("days_left"),
        "outage_s": outage,
        "resumed": resumed,
        "failed_step": failure.get("step"),
        "restored": list(failure.get("restored") or []),
    }


def renew_errors(results: Any) -> list[str]:
    """The messages of the registered results (or loop results) that failed; skipped and missing ones count as fine.

    Only the keys needed are read, so a skipped result's deprecated keys are never touched.
    """
    errors: list[str] = []
    for result in results if isinstance(results, list) else [results]:
        if not isinstance(result, Mapping) or result.get("skipped"):
            continue
        if isinstance(result.get("results"), list):
            errors += renew_errors(result["results"])
        elif result.get("failed") or result.get("unreachable"):
            errors.append(str(result.get("msg") or "failed"))
    return errors


def renew_totals(summaries: Any) -> dict[str, int]:
    """How many hosts ended with each result; a host without a summary counts as ``unreachable``."""
    totals: dict[str, int] = {}
    values = summaries.values() if isinstance(summaries, Mapping) else summaries or []
    for summary in values:
        result = str(_dict(summary).get("result") or "unreachable")
        totals[result] = totals.get(result, 0) + 1
    return dict(sorted(totals.items()))


def _host_lists(value: Any, what: str) -> dict[str, list[str]]:
    if not isinstance(value, Mapping) or not all(isinstance(hosts, list) for hosts in value.values()):
        raise AnsibleFilterError(f"{what} must map host names to lists of host names")
    return {str(host): [str(h) for h in hosts] for host, hosts in value.items()}


def _summaries(value: Any) -> dict[str, Mapping[str, Any]]:
    if not isinstance(value, Mapping):
        raise AnsibleFilterError("the summaries must map host names to their xu_renew_summary")
    return {str(host): summary for host, summary in value.items() if isinstance(summary, Mapping)}


def renew_halt(summaries: Any, batches: Any, current: Any, max_fail_percentage: Any) -> dict[str, Any]:
    """{halt, reason}: whether this batch must not start, because an earlier one failed more than allowed."""
    try:
        percentage = int(max_fail_percentage)
    except (TypeError, ValueError):
        raise AnsibleFilterError(f"xu_renew_max_fail_percentage must be a whole number, not {max_fail_percentage!r}") from None
    if not isinstance(current, list):
        raise AnsibleFilterError("current must be the list of the hosts of this batch")
    reason = batch_halt(_host_lists(batches, "batches"), _summaries(summaries), [str(h) for h in current], percentage)
    return {"halt": reason is not None, "reason": reason}


def renew_fleet(summaries: Any, group_hosts: Any, targeted: Any, fail_on_blocked: Any = True) -> dict[str, Any]:
    """{lines, totals, results, failures}: the fleet summary of a renew run over every host of the group."""
    if not isinstance(group_hosts, list) or not isinstance(targeted, list):
        raise AnsibleFilterError("group_hosts and targeted must be lists of host names")
    try:
        fail = boolean(fail_on_blocked, strict=True)
    except TypeError:
        raise AnsibleFilterError(f"xu_renew_fail_on_blocked must be a boolean, not {fail_on_blocked!r}") from None
    return fleet_report(_summaries(summaries), [str(h) for h in group_hosts], [str(h) for h in targeted], fail)


class FilterModule:
    """The decisions of the renew role."""

    def filters(self) -> dict[str, Any]:
        return {
            "renew_options": renew_options,
            "renew_due": renew_due,
            "renew_plan": renew_plan,
            "renew_precheck": renew_precheck,
            "renew_journal_start": renew_journal_start,
            "renew_journal": renew_journal,
            "renew_verify": renew_verify,
            "renew_resume": renew_resume,
            "renew_recovery": renew_recovery,
            "renew_outcome": renew_outcome,
            "renew_summary": renew_summary,
            "renew_errors": renew_errors,
            "renew_totals": renew_totals,
            "renew_halt": renew_halt,
            "renew_fleet": renew_fleet,
        }
