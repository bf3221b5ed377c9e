# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The report of xu_tls_info, built from one snapshot. Private to this collection."""

from __future__ import annotations

from typing import Any

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._hostname import clean_fqdn
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.gate._gate import check_group_name, gate_summary
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._action_base import ModuleRun
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._agent import format_host_time
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import XuError
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._snapshot import Snapshot, read_snapshot
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.journal._journal import check_journal_name, parse_journal
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._profiles import resolve_profile
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._settings import find_thumbprint_references


def run_tls_info(run: ModuleRun) -> dict[str, Any]:
    return read_tls_info(run)[1]


def read_tls_info(run: ModuleRun) -> tuple[Snapshot, dict[str, Any]]:
    """The host's snapshot, and xu_tls_info's report of it."""
    params = run.params
    profile = resolve_profile(params)
    try:
        gate_group = check_group_name(params["gate_rule_group"])
    except ValueError as e:
        raise XuError(str(e)) from e
    journal_name = check_journal_name(params["journal_name"])
    fqdn = clean_fqdn(params.get("fqdn"))
    snapshot = read_snapshot(run.agent, profile, gate_group, journal_name=journal_name, server_name=fqdn)
    report = build_report(snapshot, fqdn=fqdn or snapshot.fqdn, expiry_warning_days=params["expiry_warning_days"], run_id=params.get("run_id"))
    report["transport"] = run.transport
    for problem in report["problems"]:
        run.warn(f"{run.host}: {problem}" if run.host else problem)
    return snapshot, report


def certificate_report(snapshot: Snapshot, thumbprint: str | None, fqdn: str | None) -> dict[str, Any] | None:
    """Details of a certificate the settings reference; ``in_store`` false when it is gone."""
    if thumbprint is None:
        return None
    stored = snapshot.certificates.get(thumbprint)
    if stored is None:
        served = [p.certificate for p in snapshot.probes.values() if p.certificate and p.certificate.thumbprint == thumbprint]
        details: dict[str, Any] = served[0].to_result(snapshot.now, fqdn) if served else {"thumbprint": thumbprint}
        details.update(in_store=False, has_private_key=False, key_readable_by_service=False)
        return details
    details = stored.facts.to_result(snapshot.now, fqdn)
    details.update(
        in_store=True,
        has_private_key=stored.has_private_key,
        key_readable_by_service=snapshot.key_readable(stored),
        friendly_name=stored.friendly_name,
    )
    return details


def certificate_problems(role: str, details: dict[str, Any] | None, expiry_warning_days: int) -> list[str]:
    if details is None:
        return [f"the {role} uses TLS but no certificate is configured"]
    thumbprint = details["thumbprint"]
    problems = []
    if not details.get("in_store"):
        problems.append(f"the {role} certificate {thumbprint} is not in LocalMachine\\My: the next restart will fail")
    elif not details.get("has_private_key"):
        problems.append(f"the {role} certificate {thumbprint} has no private key")
    elif details.get("key_readable_by_service") is False:
        problems.append(f"the service account cannot read the private key of the {role} certificate {thumbprint}")
    if "days_left" in details:
        if details["expired"]:
            problems.append(f"the {role} certificate {thumbprint} expired on {details['not_after']}")
        elif details["not_yet_valid"]:
            problems.append(f"the {role} certificate {thumbprint} is not valid before {details['not_before']}")
        elif details["days_left"] < expiry_warning_days:
            problems.append(f"the {role} certificate {thumbprint} expires in {details['days_left']} days ({details['not_after']})")
        if details["san_covers_fqdn"] is False:
            problems.append(f"the {role} certificate {thumbprint} does not name the host in its SAN")
        if not details["server_auth"]:
            problems.append(f"the {role} certificate {thumbprint} lacks the Server Authentication EKU")
    return problems


# Past this, a host's clock is reported as a problem: Kerberos refuses a skew above 5 minutes by default (its "maximum
# tolerance for computer clock synchronization"), so the host's logons, WinRM over Kerberos among them, and its
# enrolment at the CA fail; and the times it writes into its logs mislead whoever lines them up with others.
MAX_CLOCK_OFFSET_S = 300


def clock_report(snapshot: Snapshot) -> tuple[dict[str, Any], str | None]:
    """The host's clock against the controller's (``host_clock``), and a problem when it is off by more than 5 minutes."""
    clock = snapshot.clock
    if clock is None:
        return {"now": None, "offset_s": None, "uncertainty_s": None}, None
    report = {"now": format_host_time(snapshot.host_now), **clock.as_fact()}
    offset, uncertainty = clock.offset.total_seconds(), clock.uncertainty.total_seconds()
    if abs(offset) - uncertainty <= MAX_CLOCK_OFFSET_S:
        return report, None
    problem = (
        f"the host's clock is {abs(offset):.0f} s {'ahead of' if offset > 0 else 'behind'} the controller's (more than"
        f" {MAX_CLOCK_OFFSET_S // 60} minutes): Kerberos logons and enrolment fail past 5 minutes; fix the host's time"
        " synchronisation (w32tm). The collection's deadlines and leases run on the host's own clock"
    )
    return report, problem


def build_report(snapshot: Snapshot, *, fqdn: str | None, expiry_warning_days: int, run_id: str | None = None) -> dict[str, Any]:
    profile = snapshot.profile
    problems: list[str] = list(snapshot.read_errors)
    report: dict[str, Any] = {
        "installed": snapshot.installed,
        "product": {"name": profile.product, "title": profile.title, "version": snapshot.version},
        "fqdn": fqdn,
        "install_dir": snapshot.install_dir,
        "service": snapshot.service,
        "settings_files": [
            {"path": f.full_path, "exists": f.exists, "sha256": f.sha256, "backups": list(f.backups)} for f in snapshot.files.values()
        ],
        "assumptions": {
            "settings_map": dict(profile.settings_map),
            "service_lookup": {"name": profile.service_name} if profile.service_name else {"display_name": profile.service_display_name},
            "install_dir": "given" if profile.install_dir_explicit else "folder of the service executable",
        },
        "gate": {**snapshot.gate_summary(), "hold": gate_summary(snapshot.hold_rules, None)["state"]},
    }
    report["host_clock"], clock_problem = clock_report(snapshot)
    if clock_problem is not None:
        problems.append(clock_problem)
    if not snapshot.installed:
        problems.append(f"{profile.title} is not installed (no service {profile.service_display_name!r} or no install dir)")
    if snapshot.settings_error:
        problems.append(snapshot.settings_error)
    tls = snapshot.tls
    web: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    if tls is not None:
        web_certificate = certificate_report(snapshot, tls.web_certificate, fqdn) if tls.web_uses_tls else None
        web = {
            "protocol": tls.web_protocol,
            "protocol_setting": tls.web_protocol_raw,
            "tls": tls.web_uses_tls,
            "http_port": tls.web_http_port,
            "https_port": tls.web_https_port,
            "certificate_thumbprint": tls.web_certificate,
            "certificate": web_certificate,
        }
        config_certificate = certificate_report(snapshot, tls.config_server_certificate, fqdn) if tls.config_server_uses_tls else None
        config = {
            "authentication": tls.config_server_authentication,
            "authentication_setting": tls.config_server_authentication_raw,
            "tls": tls.config_server_uses_tls,
            "port": tls.config_server_port,
            "certificate_thumbprint": tls.config_server_certificate,
            "certificate": config_certificate,
        }
        if tls.tls_file_exists and tls.web_protocol is None:
            problems.append(f"the web server protocol setting {tls.web_protocol_raw!r} is not one this collection knows; check settings_map")
        if not tls.web_uses_tls and tls.web_protocol is not None:
            problems.append("the web server serves plain HTTP (TLS is off)")
        # One certificate bound to both servers is judged once, naming both.
        bound: dict[str | None, tuple[list[str], dict[str, Any] | None]] = {}
        if tls.web_uses_tls:
            bound.setdefault(tls.web_certificate, ([], web_certificate))[0].append("web server")
        if tls.config_server_uses_tls:
            bound.setdefault(tls.config_server_certificate, ([], config_certificate))[0].append("configuration server")
        for roles, details in bound.values():
            problems += certificate_problems(" and ".join(roles), details, expiry_warning_days)
        problems += [f"{mismatch} (restart pending?)" for mismatch in snapshot.pending_mismatches(tls)]
    report["web_server"] = web
    report["config_server"] = config
    report["served"] = {name: probe.to_result() for name, probe in snapshot.probes.items()}
    report["thumbprint_references"] = [r.to_result() for r in find_thumbprint_references(list(snapshot.files.values()))]
    report["store_certificates"] = [
        {
            "thumbprint": c.thumbprint,
            "subject": c.facts.subject,
            "issuer": c.facts.issuer,
            "dns_names": list(c.facts.dns_names),
            "not_before": c.facts.to_result(snapshot.now, fqdn)["not_before"],
            "not_after": c.facts.to_result(snapshot.now, fqdn)["not_after"],
            "days_left": c.facts.to_result(snapshot.now, fqdn)["days_left"],
            "san_covers_fqdn": c.facts.covers(fqdn),
            "server_auth": c.facts.server_auth,
            "has_private_key": c.has_private_key,
            "key_readable_by_service": snapshot.key_readable(c),
        }
        for c in sorted(snapshot.certificates.values(), key=lambda c: c.facts.not_after, reverse=True)
    ]
    if report["gate"]["state"] == "closed":
        problems.append("the maintenance gate is closed: the XU ports are blocked for outside clients")
    report["journal"] = parse_journal(snapshot.journal)
    # Not knowing whether a journal is there is not "no journal": another run may be working on the host.
    report["journal_error"] = next((error for error in snapshot.read_errors if error.startswith("journal_read:")), None)
    report["read_errors"] = [error for error in snapshot.read_errors if not error.startswith("journal_read:")]
    if report["journal"] is not None and (run_id is None or report["journal"].get("run_id") != run_id):
        step = report["journal"].get("step", "unknown")
        problems.append(
            f"an interrupted run left its journal (step {step});"
            " the next run of the renew role completes or rolls it back"
        )
    if snapshot.service and snapshot.service.get("state") != "Running":
        problems.append(f"the service is {snapshot.service.get('state')}")
    report["problems"] = problems
    return report
