"""The decisions of the renew role (plugins/filter/renew.py), on reports shaped like xu_tls_info's."""

from __future__ import annotations

import copy
import datetime
import pathlib
from typing import Any

import pytest

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._engine import sequence_of
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._fleet import fleet_report
from support import renew_decisions as f
from support.renew_decisions import parse_plan
from support.renew_reports import BACKUP, NEW, OLD, ORIGINAL_SHA, OTHER, TLS_PATH, certificate, info, journal, store

# -- due ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("report", "status", "fragment"),
    [
        (info(days_left=200), "not_due", "expires in 200 days, not fewer than 30"),
        (info(days_left=10), "due", "expires in 10 days"),
        (info(days_left=29), "due", "fewer than 30"),
        (info(days_left=30), "not_due", "not fewer than 30"),
        (info(days_left=-3), "due", "expired on"),
        (info(in_store=False), "due", "not in LocalMachine\\My: the next restart would fail"),
        (info(protocol="http_unrestricted"), "skip", "TLS is off"),
        ({"installed": False}, "skip", "not installed"),
        ({"failed": True, "msg": "boom"}, "skip", "could not be read: boom"),
        ({"installed": True, "web_server": None, "problems": ["unreadable tls.json"]}, "skip", "unreadable tls.json"),
    ],
)
def test_due(report: dict[str, Any], status: str, fragment: str) -> None:
    due = f.renew_due(report, 30)
    assert due["status"] == status and due["due"] == (status == "due")
    assert fragment in due["reason"]


def test_force_and_a_separate_configuration_server_certificate() -> None:
    assert f.renew_due(info(), 30, force=True)["reason"] == "renewal forced (xu_renew_force)"
    report = info(config_thumbprint=OTHER)
    report["config_server"]["certificate"] = certificate(OTHER, days_left=5)
    due = f.renew_due(report, 30)
    assert due["due"] and f"configuration server certificate {OTHER} expires in 5 days" in due["reason"]
    assert due["old_thumbprint"] == OLD


# -- plan -----------------------------------------------------------------------------------------


def test_plan_reuse_key_documented_closes_the_gate_and_never_removes() -> None:
    plan = f.renew_plan(info(days_left=10), "reuse_key")
    assert plan["action"] == "renew" and sequence_of(parse_plan(plan)) == "reuse_key/documented"
    assert plan["close_gate"] is True and plan["remove_old"] is False and plan["source"] == "adcs"
    assert plan["previous_web_protocol"] == "https_unrestricted" and plan["config_tls"] is True and plan["http_port"] == 8065
    assert plan["original_sha256"] == ORIGINAL_SHA and plan["tls_path"] == TLS_PATH
    assert f.renew_plan(info(days_left=10), "reuse_key", strategy="minimal_outage")["close_gate"] is False


@pytest.mark.parametrize(
    ("report", "fragment"),
    [
        (info(days_left=-1), "a CA refuses to renew an expired certificate"),
        (info(in_store=False), "AD CS renews only a certificate that is in LocalMachine\\My"),
    ],
)
def test_plan_blocks_what_ad_cs_cannot_renew(report: dict[str, Any], fragment: str) -> None:
    plan = f.renew_plan(report, "reuse_key")
    assert plan["action"] == "blocked" and fragment in plan["reason"] and "use xu_renew_mode: replace" in plan["reason"]


def test_plan_replace_sources(tmp_path: pathlib.Path) -> None:
    pfx = tmp_path / "xu01.pfx"
    missing = f.renew_plan(info(days_left=10), "replace", pfx_path=str(pfx))
    assert missing["action"] == "blocked" and f"the PFX {pfx} (xu_renew_pfx_path) does not exist on the controller" in missing["reason"]
    # The message names the variable the user set.
    from_dir = f.renew_plan(info(days_left=10), "replace", pfx_path=str(pfx), pfx_variable="xu_renew_pfx_dir")
    assert f"the PFX {pfx} (xu_renew_pfx_dir) does not exist" in from_dir["reason"]
    pfx.write_bytes(b"x")
    plan = f.renew_plan(info(days_left=10), "replace", pfx_path=str(pfx))
    assert plan["action"] == "renew" and plan["source"] == "pfx" and plan["pfx_path"] == str(pfx) and plan["remove_old"] is True
    assert f.renew_plan(info(days_left=10), "replace", pfx_content_given=True)["source"] == "pfx_content"
    # A relative path is the module's to find (like copy's src), not checked here.
    assert f.renew_plan(info(days_left=10), "replace", pfx_path="certs/xu01.pfx")["action"] == "renew"
    nothing = f.renew_plan(info(days_left=10), "replace")
    assert nothing["action"] == "blocked" and "set xu_renew_pfx_path" in nothing["reason"]


def test_plan_replace_with_a_thumbprint_in_the_store() -> None:
    report = info(days_left=10, certificates=[*store(OLD), *store(NEW)])
    plan = f.renew_plan(report, "replace", new_thumbprint="bb " * 20)
    assert plan["action"] == "renew" and plan["source"] == "thumbprint" and plan["new_thumbprint"] == NEW
    for thumbprint, certificates, fragment in (
        (OTHER, store(OLD), "is not in LocalMachine\\My"),
        (OLD, store(OLD), "is the certificate already bound"),
        (NEW, [*store(OLD), *store(NEW, days_left=-1)], "has expired"),
        (NEW, [*store(OLD), *store(NEW, covers=False)], "does not name xu01.example.com"),
    ):
        blocked = f.renew_plan(info(days_left=10, certificates=certificates), "replace", new_thumbprint=thumbprint)
        assert blocked["action"] == "blocked" and fragment in blocked["reason"], fragment


def test_plan_reads_a_pasted_thumbprint_as_every_module_does() -> None:
    report = info(days_left=10, certificates=[*store(OLD), *store(NEW)])
    # The certificate dialog's copy: an invisible left-to-right mark, spaces; another tool's colons.
    pasted = "\u200e" + " ".join(NEW[i:i + 2].lower() for i in range(0, 40, 2))
    assert f.renew_plan(report, "replace", new_thumbprint=pasted)["new_thumbprint"] == NEW
    assert f.renew_plan(report, "replace", new_thumbprint=":".join(NEW[i:i + 2] for i in range(0, 40, 2)))["new_thumbprint"] == NEW
    # str.upper() makes "FF" of the ligature U+FB00: 38 hex digits and a ligature are not a thumbprint.
    ligature = f.renew_plan(report, "replace", new_thumbprint=NEW[:38].lower() + "\ufb00")
    assert ligature["action"] == "blocked" and "xu_renew_new_thumbprint" in ligature["reason"], ligature
    assert "not a certificate thumbprint" in ligature["reason"]


def test_plan_removal_waits_for_the_controller_check_and_a_separate_configuration_certificate() -> None:
    report = info(days_left=10, certificates=[*store(OLD), *store(NEW)])
    assert f.renew_plan(report, "replace", strategy="minimal_outage", new_thumbprint=NEW)["remove_old_in_swap"] is True
    assert f.renew_plan(report, "replace", strategy="documented", new_thumbprint=NEW)["remove_old_in_swap"] is False
    checked = f.renew_plan(report, "replace", strategy="minimal_outage", new_thumbprint=NEW, ca_path="ca.pem")
    assert checked["remove_old_in_swap"] is False and checked["controller_check"] is True
    assert f.renew_plan(report, "replace", strategy="minimal_outage", new_thumbprint=NEW, remove_old=False)["remove_old_in_swap"] is False


def test_plan_resumes_a_journal_first_and_rejects_unknown_modes() -> None:
    plan = f.renew_plan(info(journal=journal(step="tls_off")), "replace")
    assert plan["action"] == "resume" and "step tls_off" in plan["reason"]
    assert f.renew_plan(info(), "reuse_key")["action"] == "none"
    assert f.renew_plan(info(protocol="http_unrestricted"), "reuse_key")["status"] == "skip"
    with pytest.raises(f.RenewFilterError, match="xu_renew_mode must be one of replace, reuse_key"):
        f.renew_plan(info(), "renew")
    with pytest.raises(f.RenewFilterError, match="xu_renew_strategy"):
        f.renew_plan(info(), "replace", strategy="fast")


def test_a_host_another_run_holds_is_busy_and_left_alone() -> None:
    live = journal(step="tls_off", run_id="awx-1", lease_expires="2999-01-01T00:00:00Z")
    report = info(journal=live, days_left=5)
    report["gate"] = {"state": "closed"}
    plan = f.renew_plan(report, "reuse_key", run_id="awx-2")
    assert plan["action"] == "busy" and plan["gate_closed"] is False
    assert plan["owner"] == {"run_id": "awx-1", "step": "tls_off", "lease_expires": "2999-01-01T00:00:00Z", "lease_renewed": None,
                             "call_budget_s": None}
    assert plan["reason"].startswith("another run (awx-1) is working on this host (last step finished: tls_off), its lease runs until 2999-01-01T00:00:00Z;")
    # The way out of a run that is gone is named.
    assert "-e xu_renew_take_over=awx-1" in plan["reason"]
    # The same run, an expired lease, or a journal without a lease (an older run): resumed as before.
    for held, run_id in ((live, "awx-1"), ({**live, "lease_expires": "2020-01-01T00:00:00Z"}, "awx-2"), (journal(step="tls_off"), "awx-2")):
        assert f.renew_plan(info(journal=held), "reuse_key", run_id=run_id)["action"] == "resume"
    summary = f.renew_summary(plan)
    assert summary["result"] == "busy" and summary["reason"] == plan["reason"]


def test_a_lease_is_judged_on_the_hosts_clock() -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    # Taken on a host whose clock is 20 minutes behind the controller's: it ends in 10 minutes of the host's time.
    lease = (now - datetime.timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    held = journal(step="tls_off", run_id="awx-1", lease_expires=lease)
    behind = info(journal=held) | {"host_clock": {"now": "", "offset_s": -1200.0, "uncertainty_s": 0.8}}
    assert f.renew_plan(behind, "reuse_key", run_id="awx-2")["action"] == "busy"
    # Once the host's clock is past it, whatever the controller's says: taken over.
    assert f.renew_plan(behind | {"host_clock": {"offset_s": -300.0}}, "reuse_key", run_id="awx-2")["action"] == "resume"
    ahead = info(journal=journal(step="tls_off", run_id="awx-1", lease_expires=(now + datetime.timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")))
    assert f.renew_plan(ahead | {"host_clock": {"offset_s": 900.0}}, "reuse_key", run_id="awx-2")["action"] == "resume"
    # A report without a measured clock (an older one): the controller's.
    assert f.renew_plan(ahead | {"host_clock": {"offset_s": None}}, "reuse_key", run_id="awx-2")["action"] == "busy"


def test_a_busy_host_is_counted_and_fails_the_run_as_not_renewed() -> None:
    summaries = {"xu01": {"result": "busy", "reason": "another run (awx-1) is working on this host"}, "xu02": {"result": "renewed"}}
    report = fleet_report(summaries, ["xu01", "xu02"], ["xu01", "xu02"])
    assert report["totals"] == {"busy": 1, "renewed": 1}
    assert report["failures"] == {"xu01": "Busy, so not renewed by this run (see the summary above): another run (awx-1) is working on this host"}
    # Reported only, as blocked hosts are, with xu_renew_fail_on_blocked false.
    assert fleet_report(summaries, ["xu01", "xu02"], ["xu01", "xu02"], fail_on_blocked=False)["failures"] == {}


# -- journal --------------------------------------------------------------------------------------


def test_journal_keeps_the_first_backup_and_the_first_new_thumbprint() -> None:
    start = f.renew_journal_start(f.renew_plan(info(days_left=10), "reuse_key"), "r1", "2026-11-26T20:00:00Z")
    assert start["step"] == "started" and start["gate"] is True and start["backup_files"] == {} and start["original_sha256"] == ORIGINAL_SHA
    first = f.renew_journal(start, "tls_off", backup_file=BACKUP)
    assert first["backup_files"] == {TLS_PATH: BACKUP} and first["step"] == "tls_off"
    later = f.renew_journal(first, "renewed", new_thumbprint=NEW.lower(), backup_files={TLS_PATH.upper(): BACKUP + "2"})
    assert later["backup_files"] == {TLS_PATH: BACKUP} and later["new_thumbprint"] == NEW
    assert f.renew_journal(later, None, new_thumbprint=OTHER, backup_file=None)["new_thumbprint"] == NEW
    assert f.renew_journal(later, None)["step"] == "renewed"
    assert start["backup_files"] == {}  # the input is not changed


# -- verify ---------------------------------------------------------------------------------------


def test_verify() -> None:
    good = f.renew_verify(info(NEW, certificates=store(NEW)), NEW, "https_unrestricted", True)
    assert good == {"ok": True, "problems": [], "thumbprint": NEW, "serving_tls": True}
    for report, fragment in (
        (info(NEW, served=OLD), f"presents {OLD}, not {NEW}"),
        (info(OLD), f"the settings bind {OLD} to the web server, not {NEW}"),
        (info(NEW, running=False), "the service is Stopped"),
        (info(NEW, http_answering=True), "still answers plain HTTP"),
        (info(NEW, protocol="https_ad_users"), "protocol is https_ad_users, not https_unrestricted"),
        (info(NEW, days_left=-1), "is not valid now"),
    ):
        verdict = f.renew_verify(report, NEW, "https_unrestricted", True)
        assert not verdict["ok"] and any(fragment in p for p in verdict["problems"]), fragment
    report = info(NEW)
    report["web_server"]["certificate"]["key_readable_by_service"] = False
    assert "cannot read the private key" in f.renew_verify(report, NEW)["problems"][0]
    report = info(NEW, config_thumbprint=OLD)
    assert any("configuration server, not" in p for p in f.renew_verify(report, NEW, config_tls=True)["problems"])
    # Without TLS on the configuration server only the web server counts.
    assert f.renew_verify(report, NEW, config_tls=False)["ok"] is True
    # A rollback to an expired certificate is verified without requiring validity.
    assert f.renew_verify(info(OLD, days_left=-3), OLD, require_valid=False)["ok"] is True
    assert f.renew_verify(info(), None)["ok"] is False


# -- resume and recovery --------------------------------------------------------------------------


def test_nothing_to_resume_and_journals_left_to_a_person() -> None:
    assert f.renew_resume(None, info())["action"] == "none"
    assert f.renew_resume({"unreadable": "{"}, info())["action"] == "manual"
    assert f.renew_resume(journal(previous_web_protocol=None), info())["action"] == "manual"
    failed = f.renew_recovery(journal(), {"failed": True, "msg": "connection refused"})
    assert failed["action"] == "manual" and "connection refused" in failed["reason"]


def test_resume_completes_when_the_new_certificate_is_in_force_and_recovery_rolls_it_back() -> None:
    report = info(NEW, certificates=[*store(OLD), *store(NEW)], sha="2" * 64)
    entry = journal(mode="replace", new_thumbprint=NEW, backup_files={TLS_PATH: BACKUP}, remove_old=True)
    resumed = f.renew_resume(entry, report)
    assert resumed["action"] == "complete" and resumed["expect"] == NEW and resumed["restores"] == [] and resumed["swap"] is None
    assert resumed["remove_old"] is True  # the completed run's last step
    recovered = f.renew_recovery(entry, report)
    assert recovered["action"] == "rollback" and recovered["expect"] == OLD and recovered["require_valid"] is False
    assert recovered["restores"] == [{"path": TLS_PATH, "backup_file": BACKUP, "restart": "if_changed"}]


def test_rollback_when_nothing_changed_or_when_only_a_restart_is_missing() -> None:
    nothing = f.renew_resume(journal(), info())
    assert nothing["action"] == "rollback" and nothing["restores"] == [] and nothing["rebind"] is None
    assert "are in force" in nothing["reason"]
    # The file holds its original bytes: the backup named beside them may never have been made (the write
    # was planned in the same call), so nothing is restored from it; only the missing restart is made.
    stopped = f.renew_recovery(journal(backup_files={TLS_PATH: BACKUP}), info(running=False))
    assert stopped["restores"] == [] and stopped["rebind"]["restart"] == "always" and stopped["rebind"]["web_certificate"] == OLD
    assert stopped["reason"] == f"the previous settings are unchanged; the service is restarted to serve {OLD}"
    unrecorded = f.renew_recovery(journal(), info(running=False))
    assert unrecorded["rebind"]["restart"] == "always" and unrecorded["rebind"]["web_certificate"] == OLD


def test_a_backup_only_the_hosts_journal_names_is_restored_byte_for_byte() -> None:
    # The step's answer was lost: the controller never learnt the backup its call made, the host's journal names it.
    report = info(protocol="http_unrestricted", sha="3" * 64)
    report["journal"] = journal(step="tls_off", backup_files={TLS_PATH: BACKUP}, new_thumbprint=None)
    recovery = f.renew_recovery(journal(step="started"), report)
    assert recovery["action"] == "rollback" and recovery["rebind"] is None
    assert recovery["restores"] == [{"path": TLS_PATH, "backup_file": BACKUP, "restart": "if_changed"}]
    # Another run's journal is not this run's record.
    report["journal"] = {**report["journal"], "run_id": "someone-else"}
    assert f.renew_recovery(journal(step="started"), report)["restores"] == []


def test_rollback_without_a_recorded_backup_sets_the_values_back() -> None:
    # The run died between turning TLS off and recording the backup.
    report = info(protocol="http_unrestricted", sha="3" * 64)
    recovery = f.renew_resume(journal(step="started"), report)
    assert recovery["action"] == "rollback" and recovery["restores"] == []
    assert recovery["rebind"] == {"web_protocol": "https_unrestricted", "web_certificate": OLD, "config_server_certificate": OLD,
                                  "restart": "if_changed"}


def test_after_an_ad_cs_renewal_the_run_is_completed_with_the_renewed_certificate() -> None:
    # certreq archived OLD; TLS is off and the settings already name NEW (the renew step's write).
    report = info(NEW, protocol="http_unrestricted", sha="4" * 64, certificates=store(NEW))
    entry = journal(step="tls_off", backup_files={TLS_PATH: BACKUP})
    for decide in (f.renew_resume, f.renew_recovery):
        recovery = decide(entry, report)
        assert recovery["action"] == "complete" and "was archived by the AD CS renewal" in recovery["reason"]
        assert recovery["restores"] == [{"path": TLS_PATH, "backup_file": BACKUP, "restart": "never"}]
        assert recovery["swap"] == {"old_thumbprint": OLD, "new_thumbprint": None, "renew_reusing_key": True, "restart": "if_changed"}
        assert recovery["expect"] == NEW  # found in the settings, since the journal did not record it yet
    # Died right after certreq, before anything named the renewed certificate: the swap finds it by its key.
    unknown = f.renew_resume(entry, info(OLD, protocol="http_unrestricted", sha="4" * 64, certificates=store(OTHER)))
    assert unknown["action"] == "complete" and unknown["expect"] is None and unknown["swap"]["renew_reusing_key"] is True


def test_replace_after_the_old_certificate_left_the_store() -> None:
    report = info(OLD, running=False, certificates=store(NEW), in_store=False, sha="5" * 64)
    recovery = f.renew_recovery(journal(mode="replace", new_thumbprint=NEW), report)
    assert recovery["action"] == "complete" and "is no longer in LocalMachine\\My" in recovery["reason"]
    assert recovery["swap"]["new_thumbprint"] == NEW and recovery["swap"]["restart"] == "always"
    gone = f.renew_recovery(journal(mode="replace"), info(OLD, in_store=False, certificates=[]))
    assert gone["action"] == "manual" and "neither the previous certificate" in gone["reason"]


def test_with_both_certificates_gone_the_successor_adopt_mode_chooses_is_bound() -> None:
    # win-acme renewed between the assessment and the write: it deleted the certificate the run chose (NEW) and the
    # bound one (OLD), and left its successor (OTHER); the settings name NEW, the service cannot start.
    successor = {**certificate(OTHER), "not_before": "2026-11-01T00:00:00Z", "not_after": "2027-02-01T00:00:00Z", "dns_names": ["xu01.example.com"]}
    report = info(NEW, running=False, in_store=False, certificates=[successor], sha="6" * 64)
    recovery = f.renew_recovery(journal(mode="adopt", new_thumbprint=NEW), report)
    assert recovery["action"] == "complete" and recovery["expect"] == OTHER, recovery
    assert recovery["swap"] == {"old_thumbprint": NEW, "new_thumbprint": OTHER, "renew_reusing_key": None, "restart": "always"}
    assert "the certificate adopt mode chooses" in recovery["reason"]
    # One that does not name the host is no successor.
    stranger = {**successor, "san_covers_fqdn": False, "dns_names": ["other.example.com"]}
    gone = f.renew_recovery(journal(mode="adopt", new_thumbprint=NEW), info(NEW, running=False, in_store=False, certificates=[stranger]))
    assert gone["action"] == "manual"


# -- outcome and summary --------------------------------------------------------------------------


def test_the_step_is_given_by_name() -> None:
    recovery = f.renew_recovery(None, info())
    assert f.renew_outcome("tls_off", {"msg": "m"}, recovery, None)["step"] == "tls_off"
    assert f.renew_outcome("close_gate", {"msg": "m"}, recovery, None)["message"].startswith("step close_gate failed: m;")
    assert f.renew_outcome("", {}, recovery, None)["step"] == "unknown"
    with pytest.raises(f.RenewFilterError, match="the failed step's name"):
        f.renew_outcome({"name": "Renew | x"}, {}, recovery, None)


def test_outcome_names_the_step_and_what_was_restored() -> None:
    recovery = f.renew_recovery(journal(backup_files={TLS_PATH: BACKUP}), info(protocol="http_unrestricted", sha="6" * 64))
    verify = {"ok": True, "problems": []}
    outcome = f.renew_outcome("renew", {"msg": "certreq exited with 1"}, recovery, verify, [])
    assert outcome["step"] == "renew" and outcome["recovered"] is True and outcome["restored"] == [BACKUP]
    assert outcome["message"].startswith("step renew failed: certreq exited with 1; recovery: the previous settings are restored from")
    assert f"verified: the server serves {OLD}" in outcome["message"]
    broken = f.renew_outcome("renew", {"msg": "m"}, recovery, {"ok": False, "problems": ["the service is Stopped"]}, ["restore failed"])
    assert broken["recovered"] is False and "recovery did not complete" in broken["message"] and "restore failed; the service is Stopped" in broken["message"]
    stopped = f.renew_outcome("", {}, f.renew_recovery(None, info()), None)
    assert "the play stopped this host" in stopped["message"] and "nothing had been changed" in stopped["message"]


def test_summary_results() -> None:
    plan = f.renew_plan(info(days_left=10), "reuse_key")
    after = info(NEW, certificates=store(NEW))
    renewed = f.renew_summary(plan, info=after, new_thumbprint=NEW, outage_s="2.04")
    assert renewed["result"] == "renewed" and renewed["new_expiry"] == "2027-06-01T00:00:00Z" and renewed["outage_s"] == 2.0
    assert renewed["old_thumbprint"] == OLD and renewed["reason"].startswith("renewed: the web server certificate")
    assert f.renew_summary(plan, check_mode=True)["result"] == "would_renew"
    assert f.renew_summary(plan, failure={"message": "step x failed", "step": "x", "restored": [BACKUP]})["failed_step"] == "x"
    idle = f.renew_plan(info(), "reuse_key")
    assert f.renew_summary(idle, info=info())["result"] == "not_due"
    assert f.renew_summary(idle, resumed="rolled_back", resume_reason="r")["result"] == "rolled_back"
    assert f.renew_summary(f.renew_plan(info(protocol="http_unrestricted"), "reuse_key"))["result"] == "skipped"
    assert f.renew_summary(f.renew_plan(info(days_left=-1), "reuse_key"))["result"] == "blocked"
    assert f.renew_summary(plan, outage_s="n/a")["outage_s"] is None


def test_inputs_are_not_changed() -> None:
    report = info(NEW, certificates=[*store(OLD), *store(NEW)])
    entry = journal(backup_files={TLS_PATH: BACKUP})
    before = copy.deepcopy((report, entry))
    f.renew_recovery(entry, report)
    f.renew_resume(entry, report)
    assert (report, entry) == before


def test_a_gate_left_closed_is_noted() -> None:
    report = info()
    report["gate"] = {"state": "closed"}
    plan = f.renew_plan(report, "reuse_key")
    assert plan["action"] == "none" and plan["gate_closed"] is True
    assert f.renew_summary(plan, gate_reopened=True)["reason"].endswith("; the gate an earlier run left closed was opened")


# -- the lifetime window --------------------------------------------------------------------------

LIFETIME_START = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)


def lifetime_info(days: int, now_day: float) -> tuple[dict[str, Any], datetime.datetime]:
    """A healthy report of a certificate valid for ``days`` days, read on day ``now_day`` of its life."""
    not_after = LIFETIME_START + datetime.timedelta(days=days)
    now = LIFETIME_START + datetime.timedelta(days=now_day)
    certificate = {
        "in_store": True, "expired": False, "days_left": int((not_after - now).days),
        "not_before": LIFETIME_START.strftime("%Y-%m-%dT%H:%M:%SZ"), "not_after": not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    info = {"installed": True, "settings_readable": True, "service": {"state": "Running"},
            "web_server": {"tls": True, "protocol": "https_unrestricted", "certificate_thumbprint": "A" * 40, "certificate": certificate},
            "config_server": {"tls": False}}
    return info, now


@pytest.mark.parametrize(("now_day", "due"), [(63.99, False), (64.0, False), (64.01, True), (90, True)])
def test_the_percent_window_at_its_edge(now_day: float, due: bool) -> None:
    # 96 days of life, a third is 32 days: due once fewer than 32 days (33.3%) are left, i.e. after day 64.
    info, now = lifetime_info(96, now_day)
    result = f.renew_due(info, before_days=0, before_percent=100 / 3, now=now)
    assert result["due"] is due, result
    if due:
        assert "of its lifetime left" in result["reason"] and "less than 33.3333%" in result["reason"]


def test_either_window_makes_a_host_due() -> None:
    # A 47-day certificate on day 20: 27 days left, fewer than 30 days; 57% of its life left, more than a third.
    info, now = lifetime_info(47, 20)
    assert f.renew_due(info, before_days=30, before_percent=33, now=now)["due"] is True
    assert f.renew_due(info, before_days=10, before_percent=33, now=now)["due"] is False
    # A 397-day certificate with 60 days left: not due by days (30) but by share (15% < 20%).
    info, now = lifetime_info(397, 337)
    assert f.renew_due(info, before_days=30, before_percent=20, now=now)["due"] is True
    assert f.renew_due(info, before_days=30, now=now)["due"] is False


def test_zero_percent_never_makes_a_host_due_by_share() -> None:
    info, now = lifetime_info(100, 99.5)
    assert f.renew_due(info, before_days=0, before_percent=0, now=now)["due"] is False


def test_an_unknown_lifetime_is_judged_by_days_only() -> None:
    info, now = lifetime_info(100, 99)
    info["web_server"]["certificate"]["not_before"] = "garbage"
    assert f.renew_due(info, before_days=0, before_percent=50, now=now)["due"] is False


def test_a_journal_that_could_not_be_read_blocks_the_host() -> None:
    report = info(days_left=5)
    report["journal_error"] = "journal_read: UnauthorizedAccessException: Access to the path is denied."
    report["gate"] = {"state": "closed"}
    plan = f.renew_plan(report, "reuse_key", run_id="r2")
    assert plan["action"] == "blocked" and plan["gate_closed"] is False
    assert "its journal could not be read (journal_read: UnauthorizedAccessException" in plan["reason"]


@pytest.mark.parametrize("mode", ["reuse_key", "replace"])
def test_an_unread_store_blocks_the_host_without_claiming_the_certificate_is_missing(mode: str) -> None:
    # cert_list failed: the bound certificate looks absent, and a missing certificate would be due.
    report = info(days_left=5)
    report["web_server"]["certificate"]["in_store"] = False
    report["read_errors"] = ["cert_list: UnauthorizedAccessException: Access is denied."]
    plan = f.renew_plan(report, mode, run_id="r2", new_thumbprint=NEW)
    assert plan["action"] == "blocked" and plan["gate_closed"] is False
    assert plan["reason"] == "part of its state could not be read (cert_list: UnauthorizedAccessException: Access is denied.); nothing was done"
    assert "not in LocalMachine" not in plan["reason"]


def test_a_completed_resume_reports_the_interrupted_runs_certificates() -> None:
    # The server is read again after the resume: it binds NEW now, and is not due.
    after = f.renew_plan(info(NEW, days_left=365), "reuse_key", run_id="r2")
    assert after["old_thumbprint"] == NEW
    summary = f.renew_summary(after, info=info(NEW, days_left=365), resumed="completed", resume_reason="the new certificate is in force",
                              resumed_thumbprints={"old": OLD, "new": NEW})
    assert (summary["result"], summary["old_thumbprint"], summary["new_thumbprint"]) == ("completed", OLD, NEW)
    assert summary["new_expiry"] is not None
    rolled_back = f.renew_summary(f.renew_plan(info(OLD, days_left=200), "reuse_key"), info=info(OLD, days_left=200),
                                  resumed="rolled_back", resume_reason="x", resumed_thumbprints={"old": OLD, "new": None})
    assert (rolled_back["result"], rolled_back["old_thumbprint"], rolled_back["new_thumbprint"]) == ("rolled_back", OLD, None)
