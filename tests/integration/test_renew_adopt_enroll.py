"""The renew role's adopt and enroll modes on a mixed lab: which hosts renew, which are passed over, and how."""

from __future__ import annotations

import json
import pathlib
from typing import Any

from invariants import baseline, check_host, served_thumbprint
from labtools import BIN, Lab
from test_renew_role import RESTART_DELAY, by_result, renew, summaries, untouched

NEAR_MISSES = ("wrong_san", "no_key", "no_eku", "other_issuer", "expired", "not_yet_valid", "shorter")


def lab_call(lab: Lab, *args: str) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(lab.xulab(args[0], "--dir", str(lab.dir), *args[1:]))
    return answer


def test_adopt_renews_exactly_the_hosts_with_a_better_certificate(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    # mixed: xu01 healthy, xu02 expiring, xu03 expired, xu04 TLS off, xu05 bound certificate deleted by win-acme.
    lab: Lab = lab_factory("--hosts", "5", "--scenario", "mixed", "--restart-delay", RESTART_DELAY)
    better = lab_call(lab, "plant", "--host", "xu01", "--kind", "better")["thumbprint"]  # healthy, but something better waits
    enrolled = lab_call(lab, "autoenroll", "--host", "xu02")["new_thumbprint"]  # auto-enrolment renewed it, nothing bound it
    misses = {
        lab_call(lab, "plant", "--host", "xu03", "--kind", kind)["thumbprint"]: kind
        for kind in NEAR_MISSES
        if kind != "shorter"  # nothing valid ends before an expired certificate
    }
    bases = {host: baseline(lab, host) for host in lab.hosts}

    # A value with spaces goes in as JSON (key=value pairs end at a space).
    pinned = json.dumps({"xu_renew_adopt_issuer": "CN=xulab Root CA"})
    run = renew(lab, tmp_path, "-e", "xu_renew_mode=adopt", "-e", "xu_renew_strategy=minimal_outage", "-e", pinned)
    found = summaries(run)
    assert found["xu03"]["new_thumbprint"] is None, misses.get(found["xu03"]["new_thumbprint"])
    assert by_result(found) == {"renewed": {"xu01", "xu02", "xu05"}, "blocked": {"xu03"}, "skipped": {"xu04"}}, found
    assert run.rc == 2  # the blocked host fails the run, at its end
    assert found["xu01"]["new_thumbprint"] == better and found["xu02"]["new_thumbprint"] == enrolled
    for host in ("xu01", "xu02", "xu05"):
        assert served_thumbprint(lab, host) == found[host]["new_thumbprint"]
        assert check_host(lab, host, bases[host], new=found[host]["new_thumbprint"]) == []
    reason = found["xu03"]["reason"]
    assert "no certificate in LocalMachine\\My can replace it" in reason and "does not match 'CN=xulab Root CA'" in reason
    for host in ("xu03", "xu04"):
        assert untouched(lab, host, bases[host]) == []

    # The next scheduled run: nothing better anywhere, nothing changes.
    again = renew(lab, tmp_path, "-e", "xu_renew_mode=adopt", "-e", pinned)
    assert by_result(summaries(again)) == {"not_due": {"xu01", "xu02", "xu05"}, "blocked": {"xu03"}, "skipped": {"xu04"}}


def test_enroll_recovers_expired_and_missing_certificates_with_a_new_key(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "5", "--scenario", "mixed", "--restart-delay", RESTART_DELAY)
    bases = {host: baseline(lab, host) for host in lab.hosts}
    run = renew(lab, tmp_path, "-e", "xu_renew_mode=enroll", "-e", "xu_renew_template=WebServer", "-e", "xu_renew_extra_dns_names=xu.xulab.test")
    assert run.rc == 0, run.stdout[-4000:]
    found = summaries(run)
    assert by_result(found) == {"renewed": {"xu02", "xu03", "xu05"}, "not_due": {"xu01"}, "skipped": {"xu04"}}, found
    for host in ("xu02", "xu03", "xu05"):
        new = found[host]["new_thumbprint"]
        assert served_thumbprint(lab, host) == new and check_host(lab, host, bases[host], new=new) == []
        (entry,) = [c for c in lab.state(host)["certificates"] if c["thumbprint"] == new]
        assert entry["san"] == [f"{host}.xulab.test", "xu.xulab.test"]
        assert [e["type"] for e in lab.events(host)[bases[host].events:]].count("enrol") == 1
    # Without plain HTTP at any moment: minimal restarts, TLS never off.
    assert all(untouched(lab, host, bases[host]) == [] for host in ("xu01", "xu04"))


def test_a_certificate_win_acme_deletes_between_the_assessment_and_the_write_is_never_bound(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    """win-acme renews once (the bound certificate deleted, a new one A left unbound), the assessment chooses A, and
    win-acme renews again before the write (A deleted, B left). The write's call finds A gone before it writes: the
    settings never name a missing certificate, the service never fails to start, and the recovery binds B, the
    certificate adopt mode chooses."""
    lab: Lab = lab_factory("--hosts", "1", "--scenario", "healthy", "--restart-delay", RESTART_DELAY)
    first = lab_call(lab, "winacme", "--host", "xu01")
    options = {"xu_renew_mode": "adopt", "xu_renew_strategy": "minimal_outage"}
    local = {"ansible_connection": "local", "ansible_python_interpreter": str(BIN / "python")}
    tasks: list[dict[str, Any]] = [
        {"name": "Assess", "xtractuniversal.tls.xu_renew": {"phase": "assess", "options": options}, "register": "assessed"},
        {"name": "win-acme renews again", "delegate_to": "localhost", "vars": local, "changed_when": False,
         "ansible.builtin.command": {"argv": [str(BIN / "python"), "-m", "xulab", "winacme", "--dir", str(lab.dir), "--host", "xu01"]}},
        {"name": "Act", "xtractuniversal.tls.xu_renew": {
            "phase": "act", "options": options, "assessment": "{{ assessed }}", "run_id": "{{ assessed.run_id }}"}},
    ]
    base = baseline(lab, "xu01")
    run = lab.playbook(tasks, hosts="xu01", tmp_path=tmp_path)
    assessed = run.of("xu01", "Assess")
    assert assessed["plan"]["new_thumbprint"] == first["new_thumbprint"], assessed["plan"]
    successor = json.loads(run.of("xu01", "win-acme renews again")["stdout"])["new_thumbprint"]
    acted = run.of("xu01", "Act")
    summary = acted["summary"]
    assert summary["failed_step"] == "install" and f"{first['new_thumbprint']} is not in LocalMachine\\My" in summary["reason"], summary
    assert "the certificate adopt mode chooses" in summary["reason"], summary["reason"]
    assert served_thumbprint(lab, "xu01") == successor and lab.state("xu01")["service"]["state"] == "Running"
    events = [event["type"] for event in lab.events("xu01")[base.events:]]
    # One write, the recovery's (to B); none naming A, and nothing to restore.
    assert events.count("settings_write") == 1 and "settings_restore" not in events, events
    assert check_host(lab, "xu01", base, new=successor) == []
