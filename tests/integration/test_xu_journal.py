"""xu_journal against the lab: check mode, write, idempotence, removal, and what xu_tls_info then reports."""

from __future__ import annotations

import json
import pathlib
from typing import Any

from labtools import Lab

JOURNAL = {"step": "tls_off", "old_thumbprint": "AB" * 20}


def journal_file(lab: Lab, host: str) -> pathlib.Path:
    return lab.dir / "hosts" / host / "fs" / "C" / "ProgramData" / "xtractuniversal.tls" / "renew.json"


def test_journal_lifecycle(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "1", "--scenario", "healthy")
    write = [{"name": "journal", "xtractuniversal.tls.xu_journal": {"content": JOURNAL}}]

    checked = lab.playbook(write, tmp_path=tmp_path, check=True, diff=True)
    assert checked.rc == 0, checked.stdout + checked.stderr
    assert checked.of("xu01", "journal")["changed"] is True
    assert not journal_file(lab, "xu01").exists()
    assert '"step": "tls_off"' in checked.stdout

    written = lab.playbook(write, tmp_path=tmp_path)
    assert written.of("xu01", "journal")["changed"] is True
    assert json.loads(journal_file(lab, "xu01").read_text()) == JOURNAL
    assert [e["action"] for e in lab.events("xu01", "journal")][-1:] == ["write"]

    again = lab.playbook(write, tmp_path=tmp_path)
    assert again.of("xu01", "journal")["changed"] is False
    assert lab.events("xu01", "remote_call")[-1]["ops"] == ["journal_read"]

    info = lab.playbook([{"name": "info", "xtractuniversal.tls.xu_tls_info": {}}], tmp_path=tmp_path)
    assert info.of("xu01", "info")["journal"] == JOURNAL
    assert any("interrupted run" in p for p in info.of("xu01", "info")["problems"])

    removed = lab.playbook([{"name": "journal", "xtractuniversal.tls.xu_journal": {"state": "absent"}}], tmp_path=tmp_path)
    assert removed.of("xu01", "journal")["changed"] is True
    assert not journal_file(lab, "xu01").exists()
