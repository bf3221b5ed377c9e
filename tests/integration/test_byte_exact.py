"""Every rollback and restore puts back the exact bytes that were there: a settings file with a BOM, CRLF line ends,
number forms and escapes a JSON library would rewrite, and fields this collection does not know."""

from __future__ import annotations

import base64
import hashlib
import json
import pathlib
from typing import Any

import pytest
from labtools import Lab
from test_renew_role import RESTART_DELAY, renew, summaries

from xulab import control

TLS_JSON = pathlib.Path("C/Program Files/XtractUniversal/config/servers/tls.json")
TLS_WINDOWS = "C:\\Program Files\\XtractUniversal\\config\\servers\\tls.json"
JOURNAL = pathlib.Path("C/ProgramData/xtractuniversal.tls/renew.json")


def odd_settings(lab: Lab, host: str = "xu01") -> bytes:
    """The host's tls.json rewritten with a BOM, CRLF, 2.50, 1e3, escaped characters and an unknown field; its bytes."""
    path = lab.dir / "hosts" / host / "fs" / TLS_JSON
    document = json.loads(path.read_bytes().decode("utf-8-sig"))
    body = json.dumps(document, indent=2)[:-2]
    text = body + ',\n  "Extra": {"Ratio": 2.50, "Limit": 1e3, "Name": "\\u00e9\\/x", "Empty": {}}\n}\n'
    data = b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8")
    path.write_bytes(data)
    return data


def settings_bytes(lab: Lab, host: str = "xu01") -> bytes:
    return (lab.dir / "hosts" / host / "fs" / TLS_JSON).read_bytes()


def another_certificate(lab: Lab, tmp_path: pathlib.Path) -> str:
    """A second certificate for the host, imported with its key."""
    answer = control.request(lab.dir, "issue", host="xu01", password="byte-exact")  # noqa: S106 - a lab PFX
    (tmp_path / "other.pfx").write_bytes(base64.b64decode(answer["pfx_b64"]))
    run = lab.playbook([{"name": "import", "xtractuniversal.tls.xu_cert_swap": {
        "old_thumbprint": served(lab), "pfx_path": str(tmp_path / "other.pfx"), "pfx_password": "byte-exact",
        "grant_key_access": True, "update_references": False,
    }}], tmp_path=tmp_path)
    result = run.of("xu01", "import")
    assert not result.get("failed"), result
    return str(result["new_thumbprint"])


def served(lab: Lab) -> str:
    document = json.loads(settings_bytes(lab).decode("utf-8-sig"))
    return str(document["WebServer"]["Certificate"]["Thumbprint"])


@pytest.mark.lab
def test_a_module_rollback_and_a_restore_put_back_the_exact_bytes(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "1", "--scenario", "healthy", "--restart-delay", RESTART_DELAY)
    other = another_certificate(lab, tmp_path)
    original = odd_settings(lab)

    # The restart with the new certificate fails: the binding rolls back from its backup.
    lab.fault("xu01", restart_fails=1)
    bind = {"name": "bind", "xtractuniversal.tls.xu_tls_binding": {"web_certificate": other, "config_server_certificate": other}}
    run = lab.playbook([bind], tmp_path=tmp_path)
    result = run.of("xu01", "bind")
    assert result["_status"] == "failed" and result["rolled_back"] is True, result
    assert settings_bytes(lab) == original

    # The same change, then xu_tls_restore from the backup it made: the original bytes again, and the file it
    # replaced (the change) is kept beside it, byte for byte.
    run = lab.playbook([bind], tmp_path=tmp_path)
    changed = run.of("xu01", "bind")
    assert changed["changed"] is True and changed["_status"] == "ok", changed
    written = settings_bytes(lab)
    # The change itself keeps the BOM and the line ends (it writes the settings anew: see docs/assumptions.md).
    assert written.startswith(b"\xef\xbb\xbf") and b"\r\n" in written and written != original
    restore = {"name": "restore", "xtractuniversal.tls.xu_tls_restore": {"backup_file": changed["backup_file"]}}
    run = lab.playbook([restore], tmp_path=tmp_path)
    restored = run.of("xu01", "restore")
    assert restored["_status"] != "failed", restored
    assert settings_bytes(lab) == original
    kept = lab.dir / "hosts" / "xu01" / "fs" / restored["current_backup_file"].replace("C:\\", "C/").replace("\\", "/")
    assert kept.read_bytes() == written


@pytest.mark.lab
def test_a_resume_restores_the_backup_a_dead_run_made_before_it_learned_of_it(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    """Run A turned TLS off and died: its journal names the backup. The next run rolls A back from it, byte for byte
    (never re-serialising the settings)."""
    lab: Lab = lab_factory("--hosts", "1", "--scenario", "healthy", "--restart-delay", RESTART_DELAY)
    original = odd_settings(lab)
    content: dict[str, Any] = {
        "mode": "reuse_key", "strategy": "documented", "step": "started", "old_thumbprint": served(lab), "new_thumbprint": None,
        "backup_files": {}, "previous_web_protocol": "https_unrestricted", "config_tls": True, "remove_old": False, "gate": False,
        "original_sha256": hashlib.sha256(original).hexdigest(), "tls_path": TLS_WINDOWS, "started": "2026-11-28T00:00:00Z",
    }
    # What run A leaves on the host when it dies right after its TLS-off call: its journal naming that call's backup.
    journal_task = {"name": "journal", "xtractuniversal.tls.xu_journal": {"run_id": "run-a", "lease_minutes": 30, "content": content}}
    tls_off = {"name": "tls_off", "xtractuniversal.tls.xu_tls_binding": {"web_protocol": "http_unrestricted"}}
    first = lab.playbook([journal_task, tls_off], tmp_path=tmp_path)
    backup = first.of("xu01", "tls_off")["backup_file"]
    content |= {"step": "tls_off", "backup_files": {TLS_WINDOWS: backup}}
    lab.playbook([journal_task], tmp_path=tmp_path)
    journal_file = lab.dir / "hosts" / "xu01" / "fs" / JOURNAL
    journal = json.loads(journal_file.read_bytes())
    assert journal["backup_files"] == {TLS_WINDOWS: backup} and journal["run_id"] == "run-a", journal
    assert settings_bytes(lab) != original and b"HttpUnrestricted" in settings_bytes(lab)
    # Run A never came back; the host's clock passes its lease.
    lab.advance_past("xu01", journal["lease_expires"])

    run = renew(lab, tmp_path, "-e", "xu_renew_mode=reuse_key", "-e", "xu_renew_run_id=run-b")
    assert run.rc == 0, run.stdout[-4000:]
    summary = summaries(run)["xu01"]
    assert summary["resumed"] == "rolled_back", summary
    assert backup in summary["reason"] or backup in json.dumps(summary)
    assert settings_bytes(lab) == original and not journal_file.exists()
