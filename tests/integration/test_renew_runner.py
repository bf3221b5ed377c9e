"""The renew playbook through ansible-runner, as AWX runs it: the per-host summary reaches the job's artifacts."""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import ansible_runner
import pytest
from invariants import baseline, check_host
from labtools import BIN, REPO, Lab


@pytest.mark.lab
# ansible-runner starts ansible-playbook on a pty; the test process has threads (xdist), which Python warns about.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded, use of forkpty:DeprecationWarning")
def test_runner_artifacts_carry_the_summary(lab_factory: Any, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lab: Lab = lab_factory("--hosts", "2", "--scenario", "mixed", "--restart-delay", "0.2")  # xu01 healthy, xu02 expiring
    bases = {host: baseline(lab, host) for host in lab.hosts}
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
    private = tmp_path / "runner"
    (private / "project").mkdir(parents=True)
    runner = ansible_runner.run(
        private_data_dir=str(private),
        # By its collection name, as once installed.
        playbook="xtractuniversal.tls.renew",
        inventory=str(lab.inventory),
        extravars={"xu_renew_mode": "reuse_key", "xu_renew_strategy": "minimal_outage"},
        envvars={"ANSIBLE_CONFIG": str(REPO / "ansible.cfg")},
        quiet=True,
    )
    assert runner.status == "successful" and runner.rc == 0, runner.stdout.read()[-4000:]

    # What AWX shows as the job's artifacts: the set_stats data of the playbook_on_stats event.
    events = [json.loads(path.read_text()) for path in (private / "artifacts").glob("*/job_events/*.json")]
    stats = [event for event in events if event.get("event") == "playbook_on_stats"]
    assert len(stats) == 1
    artifacts = stats[0]["event_data"]["artifact_data"]
    summary = artifacts["xu_renew"]
    assert set(summary) == {"xu01", "xu02"}
    assert summary["xu01"]["result"] == "not_due"
    renewed = summary["xu02"]
    assert renewed["result"] == "renewed" and renewed["strategy"] == "minimal_outage"
    assert renewed["old_thumbprint"] == bases["xu02"].thumbprint and renewed["new_thumbprint"] not in (None, renewed["old_thumbprint"])
    assert renewed["new_expiry"] and renewed["outage_s"] is not None
    assert artifacts["xu_renew_totals"] == {"not_due": 1, "renewed": 1}
    assert check_host(lab, "xu02", bases["xu02"], new=renewed["new_thumbprint"]) == []
