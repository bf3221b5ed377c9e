"""enable_tls.yml on a mixed lab: TLS turned on for the host that serves plain HTTP, from each certificate source, and rolled back."""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

from invariants import baseline, check_backups, check_host, check_removals, served_thumbprint
from labtools import REPO, Lab, PlaybookRun
from test_renew_role import RESTART_DELAY, by_result, issue_pfx, summaries, untouched

PLAYBOOK = str(REPO / "playbooks" / "enable_tls.yml")
TLS_OFF = "xu04"  # mixed: xu01 healthy, xu02 expiring, xu03 expired, xu04 TLS off, xu05 bound certificate deleted by win-acme
TLS_ON = {"xu01", "xu02", "xu03", "xu05"}


def enable_tls(lab: Lab, tmp_path: pathlib.Path, *extra: str) -> PlaybookRun:
    return lab.playbook(PLAYBOOK, tmp_path=tmp_path, extra_args=("-f", "10", *extra))


def tls_json(lab: Lab, host: str) -> dict[str, Any]:
    path = lab.dir / "hosts" / host / "fs" / "C" / "Program Files" / "XtractUniversal" / "config" / "servers" / "tls.json"
    document: dict[str, Any] = json.loads(path.read_bytes().decode("utf-8-sig"))
    return document


def schemes(lab: Lab, host: str) -> dict[int, str]:
    return {entry["port"]: entry["scheme"] for entry in lab.state(host)["service"]["listeners"]}


def restarts(lab: Lab, host: str, since: int) -> int:
    """Service starts since event ``since``: each restart ends in one."""
    return sum(1 for e in lab.events(host)[since:] if e["type"] == "service" and e.get("state") == "Running")


def test_adopt_turns_tls_on_for_the_plain_http_host_only(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "5", "--scenario", "mixed", "--restart-delay", RESTART_DELAY)
    # The certificate provisioned for xu04 sits unbound in its store, its key not yet readable by the service.
    (waiting,) = [c["thumbprint"] for c in lab.state(TLS_OFF)["certificates"]]
    bases = {host: baseline(lab, host) for host in lab.hosts}
    # Without tls.json XU serves plain HTTP (its defaults); turning TLS on creates it.
    assert bases[TLS_OFF].tls_json == b""

    # An operator's dry run before the window: the plan, and not a single change anywhere.
    checked = enable_tls(lab, tmp_path, "--check", "-e", "xu_renew_mode=adopt")
    assert checked.rc == 0, checked.stdout[-3000:]
    assert by_result(summaries(checked)) == {"would_enable_tls": {TLS_OFF}, "not_due": TLS_ON}
    assert all(untouched(lab, host, bases[host]) == [] for host in lab.hosts)

    run = enable_tls(lab, tmp_path, "-e", "xu_renew_mode=adopt")
    assert run.rc == 0, run.stdout[-4000:]
    found = summaries(run)
    # The hosts that serve TLS are left alone, even the expiring, expired and missing ones the renew playbook would renew.
    assert by_result(found) == {"tls_enabled": {TLS_OFF}, "not_due": TLS_ON}, found
    assert all("enable_tls.yml leaves it alone" in found[host]["reason"] for host in TLS_ON)
    assert all(untouched(lab, host, bases[host]) == [] for host in TLS_ON)
    summary = found[TLS_OFF]
    assert summary["old_thumbprint"] is None and summary["new_thumbprint"] == waiting
    assert summary["reason"].startswith("TLS turned on: TLS is off (plain HTTP on port 8065); TLS is turned on (https_unrestricted)")

    # The host serves HTTPS with the adopted certificate and no plain HTTP, after one restart, with its key readable.
    assert served_thumbprint(lab, TLS_OFF) == waiting and "http" not in schemes(lab, TLS_OFF).values()
    assert check_host(lab, TLS_OFF, bases[TLS_OFF], new=waiting) == []
    assert restarts(lab, TLS_OFF, bases[TLS_OFF].events) == 1
    after = tls_json(lab, TLS_OFF)
    assert after["WebServer"]["Protocol"] == "HttpsUnrestricted" and after["WebServer"]["Certificate"]["Thumbprint"] == waiting
    # The configuration server was not asked for.
    assert waiting not in json.dumps(after.get("ConfigServer"))
    assert not lab.state(TLS_OFF)["journals"]

    # The next scheduled run: TLS is on everywhere, nothing changes.
    seen = len(lab.events(TLS_OFF))
    again = enable_tls(lab, tmp_path, "-e", "xu_renew_mode=adopt")
    assert again.rc == 0 and by_result(summaries(again)) == {"not_due": TLS_ON | {TLS_OFF}}
    assert untouched(lab, TLS_OFF, dataclasses.replace(baseline(lab, TLS_OFF), events=seen)) == []


def test_enroll_turns_tls_on_with_a_new_key_for_both_servers(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "5", "--scenario", "mixed", "--restart-delay", RESTART_DELAY)
    base = baseline(lab, TLS_OFF)
    (provisioned,) = [c["thumbprint"] for c in lab.state(TLS_OFF)["certificates"]]
    run = enable_tls(lab, tmp_path, "-e", "xu_renew_mode=enroll", "-e", "xu_renew_template=WebServer", "-e", "xu_renew_bind_config_server=true",
                     "-e", "xu_renew_web_protocol=https_ad_users", "--limit", TLS_OFF)
    assert run.rc == 0, run.stdout[-4000:]
    found = summaries(run)
    assert by_result(found) == {"tls_enabled": {TLS_OFF}}, found
    new = found[TLS_OFF]["new_thumbprint"]
    assert new not in (None, provisioned) and served_thumbprint(lab, TLS_OFF) == new
    (entry,) = [c for c in lab.state(TLS_OFF)["certificates"] if c["thumbprint"] == new]
    assert entry["san"] == [f"{TLS_OFF}.xulab.test"]
    assert [e["type"] for e in lab.events(TLS_OFF)[base.events:]].count("enrol") == 1
    settings = tls_json(lab, TLS_OFF)
    assert settings["WebServer"]["Protocol"] == "HttpsRestrictedAdUsers", settings["WebServer"]
    assert settings["ConfigServer"]["Certificate"]["Thumbprint"] == new
    assert check_host(lab, TLS_OFF, base, new=new) == []
    assert restarts(lab, TLS_OFF, base.events) == 1


def test_a_failed_restart_puts_plain_http_back_byte_for_byte_and_the_next_run_turns_tls_on(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "5", "--scenario", "mixed", "--restart-delay", RESTART_DELAY)
    pfx = issue_pfx(lab, tmp_path, {TLS_OFF})
    base = baseline(lab, TLS_OFF)
    lab.fault(TLS_OFF, restart_fails=1)

    failed = enable_tls(lab, tmp_path, "-e", "xu_renew_mode=replace", *pfx, "--limit", TLS_OFF)
    assert failed.rc == 2, failed.stdout[-4000:]
    summary = summaries(failed)[TLS_OFF]
    assert summary["result"] == "failed" and summary["failed_step"] == "tls_on", summary
    # Back as it was: plain HTTP without tls.json (the file the binding created is gone), the service running, no journal left.
    assert schemes(lab, TLS_OFF)[8065] == "http" and lab.state(TLS_OFF)["service"]["state"] == "Running"
    assert not (lab.dir / "hosts" / TLS_OFF / "fs" / "C" / "Program Files" / "XtractUniversal" / "config" / "servers" / "tls.json").exists()
    events = lab.events(TLS_OFF)[base.events:]
    assert check_backups(events, base) == [] and check_removals(events, base) == []
    assert not lab.state(TLS_OFF)["journals"]

    run = enable_tls(lab, tmp_path, "-e", "xu_renew_mode=replace", *pfx, "--limit", TLS_OFF)
    assert run.rc == 0, run.stdout[-4000:]
    new = summaries(run)[TLS_OFF]["new_thumbprint"]
    assert summaries(run)[TLS_OFF]["result"] == "tls_enabled" and served_thumbprint(lab, TLS_OFF) == new
    assert "http" not in schemes(lab, TLS_OFF).values()
