"""Runs that overlap on one host (an AWX schedule and a manual run): the journal is the running run's lease."""

from __future__ import annotations

import hashlib
import json
import pathlib
from typing import Any

import pytest
from invariants import baseline
from labtools import Lab
from test_renew_role import RESTART_DELAY, renew, summaries, untouched

JOURNAL = pathlib.Path("C/ProgramData/xtractuniversal.tls/renew.json")
TLS_JSON = pathlib.Path("C/Program Files/XtractUniversal/config/servers/tls.json")
TLS_WINDOWS = "C:\\Program Files\\XtractUniversal\\config\\servers\\tls.json"
GATE = "xtractuniversal.tls gate"


def run_a_stalls_with_the_gate_closed(lab: Lab, tmp_path: pathlib.Path) -> None:
    """What run A leaves while it is paused mid-renewal: its journal (a 30-minute lease) and its closed gate."""
    tls = lab.dir / "hosts" / "xu01" / "fs" / TLS_JSON
    content = {
        "mode": "reuse_key", "strategy": "documented", "step": "started",
        "old_thumbprint": json.loads(tls.read_bytes())["WebServer"]["Certificate"]["Thumbprint"], "new_thumbprint": None,
        "backup_files": {}, "previous_web_protocol": "https_unrestricted", "config_tls": True, "remove_old": False, "gate": True,
        "original_sha256": hashlib.sha256(tls.read_bytes()).hexdigest(), "tls_path": TLS_WINDOWS, "started": "2026-11-28T00:00:00Z",
    }
    tasks = [
        {"name": "journal", "xtractuniversal.tls.xu_journal": {"run_id": "run-a", "lease_minutes": 30, "content": content}},
        {"name": "gate", "xtractuniversal.tls.xu_firewall_gate": {"state": "closed", "run_id": "run-a", "rule_group": GATE, "auto_open_after": 30}},
    ]
    run = lab.playbook(tasks, tmp_path=tmp_path, hosts="xu01")
    assert run.rc == 0, run.stdout + run.stderr


@pytest.mark.lab
def test_a_host_another_run_holds_is_left_alone_until_its_lease_expires(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "2", "--scenario", "healthy", "--expiring-in", "10", "--restart-delay", RESTART_DELAY)
    run_a_stalls_with_the_gate_closed(lab, tmp_path)
    journal_file = lab.dir / "hosts" / "xu01" / "fs" / JOURNAL
    held = journal_file.read_bytes()
    base = baseline(lab, "xu01")
    exposure = lab.state("xu01")["firewall"]["exposure"]
    assert set(exposure.values()) == {"closed"}

    run_b = renew(lab, tmp_path, "-e", "xu_renew_mode=reuse_key", "-e", "xu_renew_run_id=run-b")
    # A host left busy was not renewed: the run fails for it (xu_renew_fail_on_blocked), after renewing the others.
    assert run_b.rc == 2, run_b.stdout[-4000:]
    assert "Busy, so not renewed by this run" in run_b.stdout, run_b.stdout[-4000:]
    found = summaries(run_b)
    assert found["xu01"]["result"] == "busy" and found["xu02"]["result"] == "renewed", found
    assert "another run (run-a) is working on this host (no step finished yet)" in found["xu01"]["reason"]
    # Run B touched nothing on xu01: not its journal, not run A's gate, not a setting, not a certificate.
    assert untouched(lab, "xu01", base) == [] and journal_file.read_bytes() == held
    assert lab.state("xu01")["firewall"]["exposure"] == exposure
    assert "TOTAL  2 hosts: 1 busy, 1 renewed" in run_b.stdout

    # Run A never came back: once the host's clock passes its lease (its gate reopens on the way), the next run resumes.
    deadline = next(e["run_at_utc"] for e in lab.events("xu01", "task") if e["action"] == "registered")
    lab.advance_past("xu01", max(json.loads(held)["lease_expires"], deadline))
    assert [e["name"] for e in lab.events("xu01", "task") if e["action"] == "ran"] == [f"{GATE} auto-open"]
    run_c = renew(lab, tmp_path, "-e", "xu_renew_mode=reuse_key", "-e", "xu_renew_run_id=run-c")
    assert run_c.rc == 0, run_c.stdout[-4000:]
    resumed = summaries(run_c)["xu01"]
    assert resumed["result"] == "renewed" and resumed["resumed"] == "rolled_back", resumed
    assert set(lab.state("xu01")["firewall"]["exposure"].values()) == {"open"} and not journal_file.exists()
