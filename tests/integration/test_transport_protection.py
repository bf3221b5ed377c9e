"""A PFX and its password go to a host only over a connection that encrypts them (or when the play says so).

Over WinRM Basic on plain HTTP (the lab's --auth basic, as AllowUnencrypted quick starts configure it) the call that
would carry them is never sent, and the host is left as it was: its state, files, event log and transcript. Over
NTLM with message encryption (the lab's default) the same swap works; with xu_allow_unprotected_transport it goes
over Basic too, with a warning.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

from labtools import REPO, Lab
from test_renew_role import CHANGE_EVENTS, issue_pfx, summaries
from test_xu_cert_swap import bound, issue, new_password, swap_task

ALLOW = "xu_allow_unprotected_transport"
INFO = [{"name": "info", "xtractuniversal.tls.xu_tls_info": {}}]


def swap(lab: Lab, tmp_path: pathlib.Path, password: str, *extra: str) -> Any:
    task = swap_task(old_thumbprint=bound(lab), pfx_path="new.pfx", pfx_password=password, grant_key_access=True, remove_old=True)
    return lab.playbook([task], tmp_path=tmp_path, extra_args=extra)


def host_record(lab: Lab, host: str = "xu01") -> dict[str, Any]:
    """Everything the host keeps: its state, its files, its event log and its transcript."""
    host_dir = lab.dir / "hosts" / host
    return {
        "state": lab.state(host),
        "files": lab.host_files(host),
        "events": lab.events(host),
        "transcript": (host_dir / "transcript.log").read_bytes() if (host_dir / "transcript.log").exists() else b"",
    }


def test_a_pfx_swap_over_basic_http_is_refused_and_leaves_the_host_untouched(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "1", "--scenario", "healthy", "--restart-delay", "0.1", "--auth", "basic")
    password = new_password()
    minted = issue(lab, tmp_path, "new.pfx", password)
    before = host_record(lab)

    run = swap(lab, tmp_path, password)
    assert run.rc != 0
    result = run.of("xu01", "swap")
    assert result["_status"] == "failed" and result["changed"] is False
    assert "Refusing to send the PFX (its private key) and its password to xu01" in result["msg"]
    assert "winrm over http, port 5985, transport basic" in result["msg"] and "Nothing was sent" in result["msg"]
    assert f"set {ALLOW}: true" in result["msg"]
    assert result["transport"]["protected"] is False
    assert "imported_thumbprint" not in result

    after = host_record(lab)
    assert after["state"] == before["state"]
    assert after["files"] == before["files"]
    assert minted["thumbprint"] not in json.dumps(after["state"])
    # Only the read reached the host; the call that carried the PFX never did.
    new_events = after["events"][len(before["events"]):]
    assert [e["type"] for e in new_events] == ["remote_call"]
    assert "pfx_import" not in new_events[0]["ops"] and not any(e["type"] in CHANGE_EVENTS for e in new_events)
    # One command reached the host (the read): one transcript entry, and neither the PFX nor its password in it.
    assert after["transcript"].count(b"**********************") == before["transcript"].count(b"**********************") + 1
    assert password.encode() not in after["transcript"] and password not in run.stdout + run.stderr


def test_the_same_swap_over_ntlm_with_message_encryption_works(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "1", "--scenario", "healthy", "--restart-delay", "0.1")
    assert "ansible_winrm_transport: ntlm" in lab.inventory.read_text()
    password = new_password()
    minted = issue(lab, tmp_path, "new.pfx", password)
    run = swap(lab, tmp_path, password)
    assert run.rc == 0, run.stdout + run.stderr
    result = run.of("xu01", "swap")
    assert result["imported"] is True and result["new_thumbprint"] == minted["thumbprint"]
    assert not any(ALLOW in warning for warning in result.get("warnings", []))
    assert bound(lab) == minted["thumbprint"]
    assert {listener["thumbprint"] for listener in lab.state("xu01")["service"]["listeners"] if listener["scheme"] == "https"} == {
        minted["thumbprint"],
    }


def test_the_opt_in_sends_it_over_basic_with_a_warning(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "1", "--scenario", "healthy", "--restart-delay", "0.1", "--auth", "basic")
    password = new_password()
    minted = issue(lab, tmp_path, "new.pfx", password)
    run = swap(lab, tmp_path, password, "-e", f"{ALLOW}=true")
    assert run.rc == 0, run.stdout + run.stderr
    result = run.of("xu01", "swap")
    assert result["imported"] is True and bound(lab) == minted["thumbprint"]
    warning = next(w for w in result["warnings"] if ALLOW in w)
    assert warning.startswith("xu01: the PFX (its private key) and its password went to the host over a connection that neither")
    assert "[WARNING]" in run.stdout + run.stderr
    assert any(e["type"] == "remote_call" and "pfx_import" in e["ops"] for e in lab.events("xu01"))


def test_xu_tls_info_says_which_protection_each_connection_has(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    basic: Lab = lab_factory("--hosts", "1", "--scenario", "healthy", "--auth", "basic")
    ntlm: Lab = lab_factory("--hosts", "1", "--scenario", "healthy")
    over_basic = basic.playbook(INFO, tmp_path=tmp_path).of("xu01", "info")["transport"]
    over_ntlm = ntlm.playbook(INFO, tmp_path=tmp_path).of("xu01", "info")["transport"]
    assert over_basic["protected"] is False and over_basic["encrypted_by"] == [] and over_basic["auth"] == "basic"
    assert over_ntlm["protected"] is True and over_ntlm["encrypted_by"] == ["message_encryption"] and over_ntlm["auth"] == "ntlm"
    report = basic.playbook(str(REPO / "playbooks" / "tls_report.yml"), tmp_path=tmp_path)
    assert report.rc == 0, report.stdout + report.stderr
    lines = report.of("xu01", "Print the fleet summary")["msg"]
    # Said once, for every host it applies to.
    assert any(line.startswith("NOTE   xu01: the connection (winrm over http, port 5985, transport basic") for line in lines), lines


def test_the_renew_role_refuses_a_pfx_over_basic_and_changes_nothing(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "1", "--scenario", "healthy", "--expiring-in", "5", "--restart-delay", "0.1", "--auth", "basic")
    before = host_record(lab)
    run = lab.playbook(
        str(REPO / "playbooks" / "renew.yml"), tmp_path=tmp_path,
        extra_args=("-e", "xu_renew_mode=replace", *issue_pfx(lab, tmp_path, {"xu01"})),
    )
    assert run.rc != 0
    summary = summaries(run)["xu01"]
    assert summary["result"] == "failed", summary
    assert "Refusing to send the PFX" in summary["reason"] and ALLOW in summary["reason"]
    after = host_record(lab)
    assert after["state"]["certificates"] == before["state"]["certificates"]
    assert after["files"] == before["files"]
    new_events = after["events"][len(before["events"]):]
    assert not [e for e in new_events if e["type"] in CHANGE_EVENTS or e["type"] == "journal"]
    assert not any("pfx_import" in e.get("ops", []) for e in new_events)
