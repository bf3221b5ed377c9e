"""xu_tls_restore against the lab: a settings file put back byte for byte, and the service serving it again."""

from __future__ import annotations

import json
import pathlib
from typing import Any

from labtools import Lab

TLS_JSON = pathlib.Path("C/Program Files/XtractUniversal/config/servers/tls.json")
BACKUP_WINDOWS = "C:\\Program Files\\XtractUniversal\\config\\servers\\tls.json.20261126T000000Z.bak"
BACKUP = TLS_JSON.with_name("tls.json.20261126T000000Z.bak")


def restore(backup: str = BACKUP_WINDOWS, **options: Any) -> list[dict[str, Any]]:
    return [{"name": "restore", "xtractuniversal.tls.xu_tls_restore": {"backup_file": backup, "wait_timeout": 30, **options}}]


def test_restore_lifecycle(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "1", "--scenario", "healthy", "--restart-delay", "0.2")
    fs = lab.dir / "hosts" / "xu01" / "fs"
    original = (fs / TLS_JSON).read_bytes()
    served_before = {listener["port"]: listener["thumbprint"] for listener in lab.state("xu01")["service"]["listeners"]}
    # An admin's change after a backup was taken: TLS switched off in the file (not yet in force).
    (fs / BACKUP).write_bytes(original)
    changed = json.loads(original)
    changed["WebServer"]["Protocol"] = "HttpUnrestricted"
    (fs / TLS_JSON).write_text(json.dumps(changed, indent=2))
    modified = (fs / TLS_JSON).read_bytes()

    checked = lab.playbook(restore(), tmp_path=tmp_path, check=True, diff=True)
    assert checked.rc == 0, checked.stdout + checked.stderr
    assert checked.of("xu01", "restore")["changed"] is True
    assert (fs / TLS_JSON).read_bytes() == modified
    # Unified diff lines, with the indentation after the +/- marker dropped.
    diff_lines = [line[:1] + line[1:].strip() for line in checked.stdout.splitlines() if line[:1] in "+-"]
    assert '-"Protocol": "HttpUnrestricted",' in diff_lines
    assert '+"Protocol": "HttpsUnrestricted",' in diff_lines
    assert lab.events("xu01", "settings_restore") == []

    done = lab.playbook(restore(), tmp_path=tmp_path)
    assert done.rc == 0, done.stdout + done.stderr
    result = done.of("xu01", "restore")
    assert result["changed"] and result["restored"] and result["restarted"]
    assert (fs / TLS_JSON).read_bytes() == original
    assert len(lab.events("xu01", "settings_restore")) == 1
    # The admin's edit that the restore replaced is kept, byte for byte, and the host's log says what happened.
    kept = result["current_backup_file"]
    assert kept.endswith(".bak") and (fs / kept.replace("C:\\", "C/").replace("\\", "/")).read_bytes() == modified
    (entry,) = lab.events("xu01", "eventlog")
    assert entry["event_id"] == 1003 and entry["message"].startswith(f"{result['path']} restored from {BACKUP_WINDOWS}")
    state = lab.state("xu01")
    assert state["service"]["state"] == "Running"
    served_after = {listener["port"]: listener["thumbprint"] for listener in state["service"]["listeners"]}
    assert served_after == served_before
    assert result["served"]["web_https"] == served_before[8165]
    calls = lab.events("xu01", "remote_call")
    assert calls[-1]["ops"][:2] == ["file_restore", "service_restart"]

    again = lab.playbook(restore(), tmp_path=tmp_path)
    assert again.of("xu01", "restore")["changed"] is False
    assert lab.events("xu01", "remote_call")[-1]["ops"][0] == "discover"


def test_bad_input_changes_nothing(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "1", "--scenario", "healthy")
    before = lab.host_files("xu01")
    missing = lab.playbook(restore(BACKUP_WINDOWS + ".missing"), tmp_path=tmp_path)
    assert missing.of("xu01", "restore")["_status"] == "failed"
    assert "does not exist on the host" in missing.of("xu01", "restore")["msg"]
    relative = lab.playbook(restore("tls.json.bak"), tmp_path=tmp_path)
    assert "must be an absolute Windows path" in relative.of("xu01", "restore")["msg"]
    assert lab.host_files("xu01") == before
    assert all(call["ops"][0] == "discover" for call in lab.events("xu01", "remote_call"))
    assert len(lab.events("xu01", "remote_call")) == 1


def test_a_failed_restart_rolls_forward(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    """The restored settings do not come up: the content the file had before is written back, and the service serves it."""
    lab: Lab = lab_factory("--hosts", "1", "--scenario", "healthy", "--restart-delay", "0.2")
    fs = lab.dir / "hosts" / "xu01" / "fs"
    original = (fs / TLS_JSON).read_bytes()
    served_before = {listener["port"]: listener["thumbprint"] for listener in lab.state("xu01")["service"]["listeners"]}
    (fs / BACKUP).write_bytes(original.replace(b'"HttpsUnrestricted"', b'"HttpUnrestricted"'))
    lab.fault("xu01", restart_fails=1)

    run = lab.playbook(restore(), tmp_path=tmp_path)
    result = run.of("xu01", "restore")
    assert result["_status"] == "failed" and result["rolled_back"] is True, result
    assert "Restoring" in result["msg"] and "rolled back" in result["msg"]
    assert result["path"].endswith("tls.json") and result["backup_file"] == BACKUP_WINDOWS
    assert (fs / TLS_JSON).read_bytes() == original
    state = lab.state("xu01")
    assert state["service"]["state"] == "Running"
    assert {listener["port"]: listener["thumbprint"] for listener in state["service"]["listeners"]} == served_before
    calls = lab.events("xu01", "remote_call")
    assert len(calls) == 3
    assert calls[1]["ops"] == ["file_restore", "service_restart", "port_probe", "port_probe", "event_write"]
    assert calls[2]["ops"] == ["file_write", "service_restart", "port_probe", "port_probe", "event_write"]


def test_unknown_settings_in_the_backup_are_refused(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "1", "--scenario", "healthy")
    fs = lab.dir / "hosts" / "xu01" / "fs"
    (fs / BACKUP).write_bytes((fs / TLS_JSON).read_bytes().replace(b'"HttpsUnrestricted"', b'"HttpsWithClientCertificates"'))
    before = lab.host_files("xu01")
    run = lab.playbook(restore(), tmp_path=tmp_path)
    result = run.of("xu01", "restore")
    assert result["_status"] == "failed" and '"HttpsWithClientCertificates", not one of' in result["msg"], result
    assert lab.host_files("xu01") == before and lab.events("xu01", "settings_restore") == []
    assert len(lab.events("xu01", "remote_call")) == 1
