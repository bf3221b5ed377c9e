"""Hosts whose clocks are off: the gate keeps its whole window on the host's clock, leases are the host's, the offset is reported.

An adversarial run found a host 120 s ahead reopening the gate 15 ms after it closed (the controller's now plus a
minute was already past on the host), and one 180 s behind reopening it 180 s late. The lab's hosts keep clocks of
their own (`up --clock-offset`, `xulab clock`); the tests move them forward instead of waiting.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

from labtools import Lab, parse_time

GROUP = "xtractuniversal.tls gate"
TASK = "xtractuniversal.tls gate auto-open"
XU_PORTS = ("8064", "8065", "8165")
SKEWED = ("--hosts", "3", "--scenario", "healthy", "--clock-offset", "xu01=120", "--clock-offset", "xu02=-180")
OFFSETS = {"xu01": 120.0, "xu02": -180.0, "xu03": 0.0}


def gate_closed(lab: Lab, host: str) -> bool:
    return set(lab.state(host)["firewall"]["exposure"].values()) == {"closed"}


def test_the_gate_stays_closed_for_its_whole_window_on_the_hosts_clock(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory(*SKEWED)
    assert {h: c["offset_s"] for h, c in lab.clock()["hosts"].items()} == OFFSETS
    close = [{"name": "gate", "xtractuniversal.tls.xu_firewall_gate": {"state": "closed", "auto_open_after": 1}}]
    run = lab.playbook(close, tmp_path=tmp_path)
    assert run.rc == 0, run.stdout + run.stderr
    # Closed on every host once the play is over: none reopened it at once.
    assert all(gate_closed(lab, host) for host in lab.hosts), {h: lab.state(h)["firewall"]["exposure"] for h in lab.hosts}
    registered = {}
    for host in lab.hosts:
        [event] = [e for e in lab.events(host, "task") if e["action"] == "registered"]
        registered[host] = event
        # Each host set its trigger a minute after its own now, rounded up to the whole second (`host_time` has milliseconds).
        assert 60 <= parse_time(event["run_at_utc"]) - parse_time(event["host_time"]) < 61.001, (host, event)
        assert run.of(host, "gate")["auto_open"]["run_at"] == event["run_at_utc"]

    # A minute and a bit on every host's clock: every gate has reopened, each at its own deadline.
    lab.advance_clock(65)
    for host in lab.hosts:
        assert not gate_closed(lab, host), host
        events = lab.events(host)
        closed = next(e for e in events if e["type"] == "firewall" and e["group"] == GROUP and e["rules"])
        opened = next(e for e in events if e["type"] == "firewall" and e["group"] == GROUP and not e["rules"])
        assert opened["by"] == f"task {TASK}"
        assert opened["ts"] == parse_time(registered[host]["run_at_utc"])
        # Closed for the whole window on the host's clock (the host's own stamps of its event log): a minute from the
        # registration, which came just before the rule in the same call.
        assert opened["ts"] - parse_time(registered[host]["host_time"]) >= 60
        assert parse_time(registered[host]["host_time"]) <= closed["ts"] < opened["ts"] - 59, (host, closed["ts"], opened["ts"])


def test_xu_tls_info_reports_the_hosts_clock(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory(*SKEWED)
    # Set at run time, as w32tm or an administrator would: xu03 runs ten minutes ahead from now on.
    assert lab.clock("--host", "xu03", "--offset", "600")["hosts"]["xu03"]["offset_s"] == 600
    run = lab.playbook([{"name": "info", "xtractuniversal.tls.xu_tls_info": {}}], tmp_path=tmp_path)
    assert run.rc == 0, run.stdout + run.stderr
    for host, offset in (OFFSETS | {"xu03": 600.0}).items():
        clock = run.of(host, "info")["host_clock"]
        # The estimate is off by at most its uncertainty: the agent ran between the controller's send and receive.
        assert abs(clock["offset_s"] - offset) <= clock["uncertainty_s"] + 0.002, (host, clock)
        problems = [p for p in run.of(host, "info")["problems"] if "the host's clock" in p]
        assert problems == ([] if abs(offset) <= 300 else [
            f"the host's clock is {clock['offset_s']:.0f} s ahead of the controller's (more than 5 minutes): Kerberos logons and"
            " enrolment fail past 5 minutes; fix the host's time synchronisation (w32tm). The collection's deadlines and leases run"
            " on the host's own clock"
        ]), host


def test_a_lease_runs_on_the_hosts_clock(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory(*SKEWED)

    def take(run_id: str) -> dict[str, Any]:
        task = {"name": "journal", "xtractuniversal.tls.xu_journal": {"run_id": run_id, "lease_minutes": 5, "content": {"step": "gate_closed"}}}
        return lab.playbook([task | {"ignore_errors": True}], hosts="xu02", tmp_path=tmp_path).of("xu02", "journal")

    taken = take("run-a")
    assert taken["_status"] == "ok", taken
    # Written on the host's clock (180 s behind the controller's): five minutes after the host's time of the write.
    written = [e for e in lab.events("xu02", "journal") if e["action"] == "write"][-1]
    lease = json.loads(lab.state("xu02")["journals"]["renew"])["lease_expires"]
    assert abs(parse_time(lease) - written["ts"] - 300) < 60, (lease, written["ts"])
    # Three minutes on the host's clock: the lease holds.
    lab.advance_clock(180)
    busy = take("run-b")
    assert busy["_status"] == "failed" and busy["busy"] is True, busy
    # Past it on the host's clock (the controller's has hardly moved): the next run takes the host over.
    lab.advance_past("xu02", lease)
    taken = take("run-b")
    assert taken["_status"] == "ok", taken
    assert json.loads(lab.state("xu02")["journals"]["renew"])["run_id"] == "run-b"
