"""xu_firewall_gate against the lab: every step checked on the host's state, event log and sockets."""

from __future__ import annotations

import pathlib
import socket
import ssl
from typing import Any

from labtools import Lab, parse_time

HOST = "xu01"
GROUP = "xtractuniversal.tls gate"
TASK = "xtractuniversal.tls gate auto-open"
XU_PORTS = ["8064", "8065", "8165"]
# Source addresses of clients elsewhere in the network; labs claim 127.0.B.x, never 127.1.x.x.
OUTSIDE_CLIENT = "127.1.0.7"
ALLOWED_CLIENT = "127.1.0.8"
READ_OPS = ["discover", "fw_get", "task_get"]


def gate_task(name: str = "gate", **args: Any) -> dict[str, Any]:
    return {"name": name, "xtractuniversal.tls.xu_firewall_gate": args}


def https_version(lab: Lab, source: str) -> int | None:
    """GET /version on the host's HTTPS port from ``source``; None when the connection is refused or reset."""
    address = lab.state(HOST)["address"]
    context = ssl.create_default_context(cafile=str(lab.dir / "ca.pem"))
    context.check_hostname = False
    try:
        with socket.create_connection((address, 8165), timeout=5, source_address=(source, 0)) as raw, \
                context.wrap_socket(raw) as tls:
            tls.sendall(b"GET /version HTTP/1.1\r\nHost: xu01\r\nConnection: close\r\n\r\n")
            status_line = tls.recv(4096).split(b"\r\n", 1)[0]
    except OSError:
        return None
    parts = status_line.split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def group_rules(state: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for rule in state["firewall"]["rules"] if rule["group"] == GROUP]


def other_rules(state: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for rule in state["firewall"]["rules"] if rule["group"] != GROUP]


def exposure(state: dict[str, Any]) -> dict[str, str]:
    exposed: dict[str, str] = state["firewall"]["exposure"]
    return exposed


def calls_since(lab: Lab, count: int) -> list[list[str]]:
    """The ops of every remote call after the first ``count``."""
    return [event["ops"] for event in lab.events(HOST, "remote_call")[count:]]


def check_mode_changes_nothing(lab: Lab, close: dict[str, Any], initial: dict[str, Any], tmp_path: pathlib.Path) -> None:
    run = lab.playbook([close], check=True, tmp_path=tmp_path)
    assert run.rc == 0, run.stdout + run.stderr
    result = run.of(HOST, "gate")
    assert result["changed"] is True and result["state"] == "closed"
    assert lab.state(HOST) == initial
    assert calls_since(lab, 0) == [READ_OPS]
    assert lab.events(HOST, "firewall") == [] and lab.events(HOST, "task") == []


def close_with_diff(lab: Lab, close: dict[str, Any], initial: dict[str, Any], tmp_path: pathlib.Path) -> dict[str, Any]:
    """Close for real: one read and one apply; returns the module's result."""
    run = lab.playbook([close], diff=True, tmp_path=tmp_path)
    assert run.rc == 0, run.stdout + run.stderr
    result = run.of(HOST, "gate")
    state = lab.state(HOST)
    assert result["changed"] is True
    assert calls_since(lab, 1) == [READ_OPS, ["task_register", "fw_set", "fw_get", "task_get", "event_write"]]
    [rule] = group_rules(state)
    assert (rule["name"], rule["action"], rule["direction"], rule["enabled"]) == (f"{GROUP} block", "Block", "Inbound", True)
    assert sorted(rule["local_ports"]) == XU_PORTS
    # Never /0 (Windows rejects it) and never a range from 0.0.0.0 (not known to be accepted): a network instead,
    # which Windows shows with its mask.
    assert rule["remote_addresses"] == ["0.0.0.0/192.0.0.0", "64.0.0.0-127.1.0.7", "127.1.0.9-255.255.255.255", "::/1", "8000::/1"]
    assert other_rules(state) == other_rules(initial)
    assert exposure(state) == dict.fromkeys(XU_PORTS, "restricted")
    [firewall_event] = lab.events(HOST, "firewall")
    assert firewall_event["exposure"] == dict.fromkeys(XU_PORTS, "restricted") and firewall_event["group"] == GROUP
    [task] = state["tasks"]
    assert (task["name"], task["fw_group_to_remove"]) == (TASK, GROUP)
    assert result["auto_open"]["run_at"] == task["run_at_utc"]
    assert [e["action"] for e in lab.events(HOST, "task")] == ["registered"]
    assert result["ports"] == [8064, 8065, 8165]
    # What the module wrote, and what the host reads back in Windows' notation.
    assert result["blocked_remote_addresses"] == ["0.0.0.0/2", *rule["remote_addresses"][1:]]
    # The diff shows the rule appearing and the task being registered.
    assert result["diff"]["before"] == {"state": "open", "rules": [], "auto_open": None}
    assert result["diff"]["after"]["rules"][0]["remote_addresses"] == rule["remote_addresses"]
    assert "+    state: closed" in run.stdout and f"+        name: {GROUP} block" in run.stdout
    assert f"+        task: {TASK}" in run.stdout
    return result


def rerun_changes_nothing(lab: Lab, close: dict[str, Any], closed: dict[str, Any], tmp_path: pathlib.Path) -> None:
    state = lab.state(HOST)
    run = lab.playbook([close], diff=True, tmp_path=tmp_path)
    assert run.rc == 0, run.stdout + run.stderr
    again = run.of(HOST, "gate")
    assert again["changed"] is False
    assert calls_since(lab, 3) == [READ_OPS]
    assert lab.state(HOST) == state
    # The deadline set when the gate closed stays.
    assert again["auto_open"] == closed["auto_open"]
    assert again["diff"]["before"] == again["diff"]["after"]


def open_twice(lab: Lab, initial: dict[str, Any], tmp_path: pathlib.Path) -> None:
    opening = gate_task(state="open")
    run = lab.playbook([opening], diff=True, tmp_path=tmp_path)
    assert run.rc == 0, run.stdout + run.stderr
    opened = run.of(HOST, "gate")
    state = lab.state(HOST)
    assert opened["changed"] is True and opened["state"] == "open" and opened["auto_open"] is None
    assert calls_since(lab, 4) == [["fw_get", "task_get"], ["fw_set", "task_remove", "fw_get", "task_get", "event_write"]]
    assert group_rules(state) == [] and state["tasks"] == []
    assert other_rules(state) == other_rules(initial)
    assert exposure(state) == dict.fromkeys(XU_PORTS, "open")
    assert [e["action"] for e in lab.events(HOST, "task")] == ["registered", "removed"]
    assert f"-        name: {GROUP} block" in run.stdout

    run = lab.playbook([opening], tmp_path=tmp_path)
    assert run.of(HOST, "gate")["changed"] is False
    assert calls_since(lab, 6) == [["fw_get", "task_get"]]


def test_close_check_idempotence_diff_and_open(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "1", "--scenario", "healthy")
    initial = lab.state(HOST)
    assert group_rules(initial) == [] and exposure(initial) == dict.fromkeys(XU_PORTS, "open")
    assert https_version(lab, OUTSIDE_CLIENT) == 200
    close = gate_task(state="closed", allow_from=[ALLOWED_CLIENT], auto_open_after=30)

    check_mode_changes_nothing(lab, close, initial, tmp_path)
    closed = close_with_diff(lab, close, initial, tmp_path)
    # The gate really filters: an outside client is refused, the allow-listed one gets through.
    assert https_version(lab, OUTSIDE_CLIENT) is None
    assert https_version(lab, ALLOWED_CLIENT) == 200
    rerun_changes_nothing(lab, close, closed, tmp_path)
    open_twice(lab, initial, tmp_path)
    assert https_version(lab, OUTSIDE_CLIENT) == 200


def test_bad_inputs_touch_nothing(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "1", "--scenario", "healthy")
    initial = lab.state(HOST)
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "winrm port": ({"state": "closed", "ports": [8165, 5985]}, "5985 is the WinRM over HTTP management port"),
        "bad cidr": ({"state": "closed", "allow_from": ["10.0.0.0/33"]}, "allow_from: '10.0.0.0/33' is not an IP address"),
        "bad group": ({"state": "closed", "rule_group": "gate/1"}, "rule_group: gate rule group 'gate/1' must be"),
        "no ports": ({"state": "closed", "ports": []}, "ports is empty"),
        "negative auto-open": ({"state": "closed", "auto_open_after": -5}, "auto_open_after is -5"),
        "no state": ({"ports": [8165]}, "missing required arguments: state"),
    }
    tasks = [gate_task(name, **args) | {"ignore_errors": True} for name, (args, _message) in cases.items()]
    run = lab.playbook(tasks, tmp_path=tmp_path)
    for name, (_args, message) in cases.items():
        result = run.of(HOST, name)
        assert result["_status"] == "failed", name
        assert message in result["msg"], (name, result["msg"])
    assert lab.remote_calls(HOST) == 0
    assert lab.state(HOST) == initial


def test_abandoned_gate_reopens_by_itself(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "1", "--scenario", "healthy")
    run = lab.playbook([gate_task(state="closed", auto_open_after=30)], tmp_path=tmp_path)
    assert run.rc == 0, run.stdout + run.stderr
    assert exposure(lab.state(HOST)) == dict.fromkeys(XU_PORTS, "closed")
    assert https_version(lab, OUTSIDE_CLIENT) is None
    # The host set the deadline from its own clock: 30 minutes after it registered the task, rounded up to the whole
    # second (`host_time` has milliseconds).
    [registered] = [e for e in lab.events(HOST, "task") if e["action"] == "registered"]
    deadline = parse_time(registered["run_at_utc"])
    assert 1800 <= deadline - parse_time(registered["host_time"]) < 1801.001
    assert run.of(HOST, "gate")["auto_open"]["run_at"] == registered["run_at_utc"]

    # The lab's clock, not real time, brings the deadline: 29 minutes on, the gate is still closed.
    lab.advance_clock(29 * 60)
    assert exposure(lab.state(HOST)) == dict.fromkeys(XU_PORTS, "closed")
    lab.advance_past(HOST, registered["run_at_utc"])
    [ran] = [e for e in lab.events(HOST, "task") if e["action"] == "ran"]
    assert ran["name"] == TASK and ran["removed_rules"] == 1
    # At the deadline, not a moment before (the host's clock stamps its event log).
    assert ran["ts"] == deadline
    state = lab.state(HOST)
    assert group_rules(state) == [] and state["tasks"] == []
    assert exposure(state) == dict.fromkeys(XU_PORTS, "open")
    assert lab.events(HOST, "firewall")[-1]["by"] == f"task {TASK}"
    assert https_version(lab, OUTSIDE_CLIENT) == 200

    # Nothing is left for the module to open.
    run = lab.playbook([gate_task(state="open")], tmp_path=tmp_path)
    assert run.of(HOST, "gate")["changed"] is False


def test_host_error_fails_with_what_the_host_did(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "1", "--scenario", "healthy")
    lab.fault(HOST, fail_primitive="fw_set")
    run = lab.playbook([gate_task(state="closed", ports=[8165], auto_open_after=30)], tmp_path=tmp_path)
    assert run.rc != 0
    result = run.of(HOST, "gate")
    assert result["_status"] == "failed"
    assert result["msg"].startswith("fw_set failed on the host: UnauthorizedAccessException: Access is denied.")
    assert "Already done on the host: task_register" in result["msg"]
    assert calls_since(lab, 0) == [["fw_get", "task_get"], ["task_register", "fw_set", "fw_get", "task_get", "event_write"]]
    state = lab.state(HOST)
    # The gate never closed; only the auto-open task the host registered before the failure is there.
    assert group_rules(state) == [] and exposure(state) == dict.fromkeys(XU_PORTS, "open")
    assert [task["name"] for task in state["tasks"]] == [TASK]

    # The fault was one-shot: the next run closes the gate, with a fresh deadline since the gate was open.
    run = lab.playbook([gate_task(state="closed", ports=[8165], auto_open_after=30)], tmp_path=tmp_path)
    assert run.rc == 0, run.stdout + run.stderr
    state = lab.state(HOST)
    assert exposure(state)["8165"] == "closed" and exposure(state)["8065"] == "open"
    assert calls_since(lab, 2)[-1] == ["task_register", "fw_set", "fw_get", "task_get", "event_write"]
