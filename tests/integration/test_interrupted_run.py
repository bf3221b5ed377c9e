"""Ctrl-C during a renewal, then the runs an operator makes next: at once (busy, naming the take-over), by name too
early (refused), and by name once the interrupted run's last call can no longer be running (it finishes the run)."""

from __future__ import annotations

import datetime
import json
import pathlib
import subprocess
from typing import Any

import pytest
from invariants import GATE_GROUP, baseline, check_host
from labtools import BIN, Lab, interrupt_controller, kill_controller, parse_time
from test_renew_role import PLAYBOOK, RESTART_DELAY, playbook_env, renew, summaries, wait_for

pytestmark = pytest.mark.lab
RUN = "ctrl-c"


def iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_ctrl_c_then_a_take_over_by_name_finishes_the_run(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "2", "--scenario", "healthy", "--expiring-in", "10", "--restart-delay", RESTART_DELAY)
    base = baseline(lab, "xu01")
    old = lab.state("xu01")["service"]["listeners"][0]["thumbprint"]
    # TLS off's restart hangs in its stop: the operator presses Ctrl-C while the run waits in that call.
    lab.fault("xu01", stop_hangs=1)
    command = [str(BIN / "ansible-playbook"), "-i", str(lab.inventory), PLAYBOOK, "-f", "10", "-e", "xu_renew_mode=reuse_key",
               "-e", f"xu_renew_run_id={RUN}", "-e", "xu_renew_wait_timeout=600"]
    with (tmp_path / "interrupted.log").open("wb") as log:
        # A terminal's Ctrl-C: SIGINT to the foreground process group (ansible-playbook's; its workers have their own).
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=playbook_env(), start_new_session=True)
    try:

        def gate_closed_and_tls_going_off() -> bool:
            events = lab.events("xu01")[base.events:]
            closed = any(e["type"] == "firewall" and e["group"] == GATE_GROUP and e["rules"] for e in events)
            return closed and any(e["type"] == "service" and e["state"] == "StopPending" for e in events)

        wait_for(gate_closed_and_tls_going_off, 120, "the gate to close and TLS off's restart to hang")
        interrupt_controller(process.pid)
        assert process.wait() != 0
    finally:
        if process.poll() is None:
            kill_controller(process.pid)
            process.wait()
    lab.fault("xu01", stop_hangs=0)  # the service finishes stopping; nobody starts it again
    journal = json.loads(lab.state("xu01")["journals"]["renew"])
    assert journal["run_id"] == RUN and journal["step"] == "gate_closed", journal

    # At once: the host is busy, and the message names the take-over.
    at_once = renew(lab, tmp_path, "-e", "xu_renew_mode=reuse_key", "-e", "xu_renew_run_id=at-once")
    assert at_once.rc == 2, at_once.stdout[-4000:]
    busy = summaries(at_once)["xu01"]
    assert busy["result"] == "busy" and f"-e xu_renew_take_over={RUN}" in busy["reason"], busy
    assert "last step finished: gate_closed" in busy["reason"], busy
    assert summaries(at_once)["xu02"]["result"] == "renewed"

    # By name, while the interrupted run's last call may still be running on the host: refused, nothing touched.
    events_before = len(lab.events("xu01"))
    early = renew(lab, tmp_path, "-e", "xu_renew_mode=reuse_key", "-e", "xu_renew_run_id=too-early", "-e", f"xu_renew_take_over={RUN}")
    assert early.rc == 2, early.stdout[-4000:]
    refused = summaries(early)["xu01"]
    assert refused["result"] == "busy" and f"xu_renew_take_over={RUN} was refused" in refused["reason"], refused
    assert [e for e in lab.events("xu01")[events_before:] if e["type"] != "remote_call"] == []
    assert json.loads(lab.state("xu01")["journals"]["renew"]) == journal

    # Once that call's time limit has passed on the host's clock (its lease still runs): the take-over finishes the run.
    last_call_ends = parse_time(journal["lease_renewed"]) + float(journal["call_budget_s"])
    assert last_call_ends < parse_time(journal["lease_expires"])
    lab.advance_past("xu01", iso(last_call_ends + 1))
    taken = renew(lab, tmp_path, "-e", "xu_renew_mode=reuse_key", "-e", "xu_renew_run_id=taker", "-e", f"xu_renew_take_over={RUN}")
    assert taken.rc == 0, taken.stdout[-4000:]
    summary = summaries(taken)["xu01"]
    assert summary["result"] == "renewed" and summary["resumed"] in ("rolled_back", "completed"), summary
    # The OLD column is the certificate served before the interrupted run, not the new one.
    assert summary["old_thumbprint"] == old and summary["new_thumbprint"] != old, summary
    assert check_host(lab, "xu01", base, new=summary["new_thumbprint"]) == []
    assert not lab.state("xu01")["journals"].get("renew")
