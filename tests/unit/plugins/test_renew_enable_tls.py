"""The renew role's decisions for a host that serves plain HTTP: turning TLS on (xu_renew_enable_tls), and its recovery."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.journal._keeper import parse_journal
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._engine import sequence_of
from support import renew_decisions as f
from support.renew_decisions import parse_plan
from support.renew_reports import BACKUP, NEW, OLD, ORIGINAL_SHA, TLS_PATH, info, journal

NOW = datetime.datetime(2026, 11, 29, tzinfo=datetime.timezone.utc)


def candidate(thumbprint: str = NEW, **changes: Any) -> dict[str, Any]:
    """A store entry of xu_tls_info that adopt may bind: valid, with its key, for Server Authentication, naming the host."""
    entry = {
        "thumbprint": thumbprint, "subject": "CN=xu01.example.com", "issuer": "CN=Example Issuing CA", "not_before": "2026-11-01T00:00:00Z",
        "not_after": "2027-11-01T00:00:00Z", "days_left": 337, "dns_names": ["xu01.example.com"], "server_auth": True,
        "has_private_key": True, "key_readable_by_service": False, "san_covers_fqdn": True,
    }
    entry.update(changes)
    return entry


def plain(*certificates: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A report of a server that serves plain HTTP; ``certificates`` are in its store, bound to nothing."""
    report = info(None, protocol="http_unrestricted", config_tls=False, certificates=list(certificates), **changes)  # type: ignore[arg-type]
    report["web_server"]["certificate_thumbprint"] = None
    report["config_server"]["certificate_thumbprint"] = None
    return report


def plan(report: dict[str, Any], mode: str, **options: Any) -> dict[str, Any]:
    return f.renew_plan(report, mode, **{"enable_tls": True, **options})


def test_without_enable_tls_a_plain_http_host_is_skipped_with_the_way_to_turn_it_on() -> None:
    decided = f.renew_plan(plain(candidate()), "adopt")
    assert decided["action"] == "none" and decided["status"] == "skip" and decided["enable_tls"] is False
    assert "TLS is off" in decided["reason"] and "xu_renew_enable_tls (playbook enable_tls.yml)" in decided["reason"]


def test_adopt_binds_the_certificate_in_the_store_with_one_restart_and_no_gate() -> None:
    decided = plan(plain(candidate()), "adopt")
    assert decided["action"] == "renew" and decided["status"] == "due" and sequence_of(parse_plan(decided)) == "enable_tls"
    assert decided["source"] == "thumbprint" and decided["new_thumbprint"] == NEW and decided["old_thumbprint"] is None
    assert decided["previous_web_protocol"] == "http_unrestricted" and decided["web_protocol"] == "https_unrestricted"
    assert decided["enable_tls"] is True and decided["close_gate"] is False and decided["remove_old"] is False
    assert decided["bind_config"] is False
    assert decided["reason"] == f"TLS is off (plain HTTP on port 8065); TLS is turned on (https_unrestricted) with {NEW}"


def test_adopt_without_a_certificate_that_qualifies_blocks_the_host_naming_each_one_passed_over() -> None:
    decided = plan(plain(candidate(has_private_key=False), candidate(OLD, san_covers_fqdn=False, dns_names=["other.example.com"])), "adopt")
    assert decided["action"] == "blocked" and decided["enable_tls"] is True
    assert "no certificate in LocalMachine\\My can serve it" in decided["reason"] and "it has no private key" in decided["reason"]


@pytest.mark.parametrize(
    ("mode", "options", "action", "fragment"),
    [
        ("enroll", {}, "blocked", "set xu_renew_template"),
        ("enroll", {"template": "WebServer", "extra_dns_names": ["xu.example.com"]}, "renew", "a certificate enrolled from the template WebServer"),
        ("replace", {}, "blocked", "no new certificate for this host"),
        ("replace", {"new_thumbprint": NEW.lower()}, "renew", f"with {NEW}"),
        ("replace", {"new_thumbprint": OLD}, "blocked", f"xu_renew_new_thumbprint {OLD} is not in LocalMachine\\My"),
        ("replace", {"pfx_content_given": True}, "renew", "with the new PFX"),
        ("reuse_key", {}, "blocked", "reuse_key renews a bound certificate and none is bound"),
    ],
)
def test_each_mode_brings_its_own_certificate_or_says_why_not(mode: str, options: dict[str, Any], action: str, fragment: str) -> None:
    decided = plan(plain(candidate()), mode, **options)
    assert decided["action"] == action and fragment in decided["reason"], decided["reason"]
    if mode == "enroll" and action == "renew":
        assert decided["source"] == "enroll"
        assert decided["enroll"] == {"template": "WebServer", "ca_config": None, "dns_names": ["xu01.example.com", "xu.example.com"],
                                     "key_provider": "schannel_csp"}


def test_the_protocol_and_the_configuration_server_are_the_callers_choice() -> None:
    decided = plan(plain(candidate()), "adopt", web_protocol="https_ad_users", bind_config_server=True)
    assert decided["web_protocol"] == "https_ad_users" and decided["bind_config"] is True
    with pytest.raises(AnsibleFilterError, match="xu_renew_web_protocol must be one of https_unrestricted, https_ad_users, https_custom_users"):
        plan(plain(candidate()), "adopt", web_protocol="http_unrestricted")


def test_a_host_that_serves_tls_is_renewed_as_ever_or_left_alone_with_tls_off_only() -> None:
    expiring = info(days_left=3, certificates=[candidate(OLD), candidate()])
    renewal = plan(expiring, "adopt")
    assert renewal["action"] == "renew" and renewal["enable_tls"] is False and sequence_of(parse_plan(renewal)) == "new_certificate"
    assert renewal["web_protocol"] == renewal["previous_web_protocol"] == "https_unrestricted"
    left = plan(expiring, "adopt", tls_off_only=True)
    assert left["action"] == "none" and left["status"] == "not_due"
    assert left["reason"] == f"TLS is on already (https_unrestricted, {OLD}); enable_tls.yml leaves it alone"
    # Nothing to renew on a host that cannot be read: still a skip, whatever the scope.
    unknown = plan({"installed": False}, "adopt", tls_off_only=True)
    assert unknown["status"] == "skip"


def test_an_interrupted_run_and_an_unread_store_come_first() -> None:
    held = plain(candidate(), journal=journal(run_id="other", lease_expires="2999-01-01T00:00:00Z"))
    assert plan(held, "adopt", run_id="mine")["action"] == "busy"
    unread = plain(candidate())
    unread["read_errors"] = ["cert_list: access denied"]
    assert plan(unread, "adopt")["action"] == "blocked"


def test_the_journal_of_an_enable_tls_run_names_no_old_certificate_and_the_protocol_it_leaves() -> None:
    decided = plan(plain(candidate()), "adopt")
    started = f.renew_journal_start(decided, "job-1", "2026-11-29T08:00:00Z")
    assert started["old_thumbprint"] is None and started["previous_web_protocol"] == "http_unrestricted"
    assert started["web_protocol"] == "https_unrestricted" and started["gate"] is False
    parsed = parse_journal(started)
    assert parsed is not None and parsed.enables_tls and parsed.target_protocol == "https_unrestricted"
    # A renewal's journal is not one (it replaces a certificate), nor is a journal of an earlier version without web_protocol.
    assert not parse_journal(journal()).enables_tls  # type: ignore[union-attr]


def enable_journal(**changes: Any) -> dict[str, Any]:
    return journal(mode="adopt", strategy="documented", old_thumbprint=None, previous_web_protocol="http_unrestricted",
                   web_protocol="https_unrestricted", config_tls=False, gate=False, **changes)


def tls_on(served: str = NEW, **changes: Any) -> dict[str, Any]:
    """The server after the run's TLS-on step: NEW bound with HTTPS."""
    return info(NEW, config_tls=False, served=served, sha="2" * 64, certificates=[candidate()], **changes)


def test_a_resumed_enable_tls_run_is_complete_when_the_host_serves_the_new_certificate() -> None:
    resumed = f.renew_resume(enable_journal(step="installed", new_thumbprint=NEW, backup_files={TLS_PATH: BACKUP}), tls_on())
    assert resumed["action"] == "complete" and resumed["expect"] == NEW and resumed["web_protocol"] == "https_unrestricted"
    assert resumed["restores"] == [] and resumed["swap"] is None and resumed["rebind"] is None and resumed["remove_old"] is False


def test_a_failed_enable_tls_run_goes_back_to_plain_http_byte_for_byte() -> None:
    # After a failed step the new state is suspect: rolled back even though the new certificate is served.
    recovered = f.renew_recovery(enable_journal(new_thumbprint=NEW, backup_files={TLS_PATH: BACKUP}), tls_on())
    assert recovered["action"] == "rollback" and recovered["expect"] is None and recovered["web_protocol"] == "http_unrestricted"
    assert recovered["restores"] == [{"path": TLS_PATH, "backup_file": BACKUP, "restart": "if_changed"}] and recovered["rebind"] is None
    # The backup only the host's journal names (the step's answer was lost) is found there.
    report = tls_on(running=False)
    report["journal"] = enable_journal(step="installed", backup_files={TLS_PATH: BACKUP})
    assert f.renew_recovery(enable_journal(), report)["restores"] == recovered["restores"]


def test_an_enable_tls_rollback_without_a_write_restarts_and_without_a_backup_sets_plain_http_back() -> None:
    unchanged = f.renew_recovery(enable_journal(original_sha256=ORIGINAL_SHA), plain(candidate(), running=False))
    assert unchanged["restores"] == [] and unchanged["rebind"] == {
        "web_protocol": None, "web_certificate": None, "config_server_certificate": None, "restart": "always"}
    unrecorded = f.renew_recovery(enable_journal(), tls_on())
    assert unrecorded["rebind"] == {"web_protocol": "http_unrestricted", "web_certificate": None, "config_server_certificate": None,
                                    "restart": "if_changed"}


def test_a_tls_json_that_did_not_exist_before_the_run() -> None:
    # XU without tls.json serves plain HTTP; the binding creates the file, and puts its absence back when its restart fails.
    absent = plain(candidate())
    absent["settings_files"] = [{"path": TLS_PATH, "exists": False, "sha256": None}]
    put_back = f.renew_recovery(enable_journal(original_sha256=None), absent)
    assert put_back["action"] == "rollback" and put_back["restores"] == [] and put_back["rebind"] is None
    assert put_back["reason"] == "the previous settings are in force and the server serves plain HTTP as before"
    # The run died after creating it, before its own rollback: plain HTTP is set back in it (the file stays).
    created = f.renew_recovery(enable_journal(original_sha256=None), tls_on())
    assert created["rebind"] == {"web_protocol": "http_unrestricted", "web_certificate": None, "config_server_certificate": None,
                                 "restart": "if_changed"}


def test_the_rollback_of_an_enable_tls_run_is_verified_as_plain_http() -> None:
    assert f.renew_verify(plain(candidate()), None, "http_unrestricted")["ok"] is True
    still_https = f.renew_verify(tls_on(), None, "http_unrestricted")
    assert still_https["ok"] is False and "the web server protocol is https_unrestricted, not http_unrestricted" in still_https["problems"]
    stopped = f.renew_verify(plain(candidate(), running=False), None, "http_unrestricted")
    assert stopped["problems"] == ["the service is Stopped", "the web server does not answer plain HTTP on port 8065"]


def test_the_summary_says_tls_was_turned_on() -> None:
    decided = plan(plain(candidate()), "adopt")
    done = f.renew_summary(decided, info=tls_on(), new_thumbprint=NEW)
    assert done["result"] == "tls_enabled" and done["old_thumbprint"] is None and done["new_thumbprint"] == NEW
    assert done["reason"].startswith("TLS turned on: TLS is off (plain HTTP on port 8065)")
    assert f.renew_summary(decided, info=plain(candidate()), check_mode=True)["result"] == "would_enable_tls"
