"""xu_firewall_gate against scripted hosts: the rule it plans, the calls it makes, what it refuses."""

from __future__ import annotations

import datetime
import json
import math
from dataclasses import dataclass, field
from typing import Any

import pytest

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.gate._firewall_gate import (
    auto_open_deadline,
    connection_ports,
    gate_request,
    port_set,
    same_rule,
)
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import XuError
from support.action import run_action
from support.fake_firewall import FirewallFakeHost
from support.fake_host import FakeHost

GROUP = "xtractuniversal.tls gate"
TASK = "xtractuniversal.tls gate auto-open"
# The same read as every module's, so that a carried host_state answers it: the port files are among them.
PORT_FILES = [
    "config\\servers\\tls.json",
    "config\\servers\\web\\general.json",
    "config\\server\\web\\general.json",
    "config\\servers\\config\\general.json",
    "config\\server\\config\\general.json",
    "config\\version.txt",
]
STATE_OPS = ["fw_get", "task_get"]
# An apply call reads the state back, then writes its entry in the host's event log.
APPLIED = [*STATE_OPS, "event_write"]
DEFAULTS: dict[str, Any] = {
    "state": "closed", "ports": None, "allow_from": [], "auto_open_after": 30.0, "rule_group": GROUP,
}
PROFILES: list[dict[str, Any]] = [
    {"name": name, "enabled": True, "local_rules_applied": True} for name in ("Domain", "Private", "Public")
]


@dataclass
class GateHost(FakeHost):
    """A host whose fw_get also says which rules are in effect and how the profiles stand, as the agent does."""

    profiles: list[dict[str, Any]] = field(default_factory=lambda: [dict(profile) for profile in PROFILES])
    # None: every stored rule of the group is in the active store.
    active_rules: list[str] | None = None

    def op_fw_get(self, args: dict[str, Any]) -> dict[str, Any]:
        active = [rule["name"] for rule in self.rules] if self.active_rules is None else self.active_rules
        return {"rules": self.rules, "active_rules": active, "profiles": self.profiles}


def profiles_with(name: str, **values: bool) -> list[dict[str, Any]]:
    return [profile | values if profile["name"] == name else dict(profile) for profile in PROFILES]


def ops(call: list[dict[str, Any]]) -> list[str]:
    return [op["op"] for op in call]


def gate(host: FakeHost, *, check_mode: bool = False, diff: bool = False, **args: Any) -> dict[str, Any]:
    return run_action("xu_firewall_gate", args, host, check_mode=check_mode, diff=diff)


def parse_utc(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def closed_rule(local_ports: list[str], remote_addresses: list[str]) -> dict[str, Any]:
    """The rule as Windows reports it back: its own spelling of ports and addresses."""
    return {
        "name": f"{GROUP} block", "display_name": "Xtract Universal maintenance gate (xtractuniversal.tls)",
        "direction": "Inbound", "action": "Block", "enabled": True, "protocol": "TCP",
        "local_ports": local_ports, "remote_addresses": remote_addresses,
    }


def test_close_reads_once_and_applies_once() -> None:
    host = GateHost()
    result = gate(host, state="closed", allow_from=["10.20.0.0/24", "fd00:20::/64"])
    assert not result.get("failed"), result
    assert result["changed"] is True
    assert [ops(call) for call in host.calls] == [
        ["discover", *STATE_OPS],
        # The way back is registered before the gate closes.
        ["task_register", "fw_set", *APPLIED],
    ]
    assert host.calls[0][0]["args"]["files"] == PORT_FILES
    assert host.calls[0][1]["args"] == {"group": GROUP}
    assert host.calls[0][2]["args"] == {"name": TASK}
    blocked = ["0.0.0.0/5", "8.0.0.0-10.19.255.255", "10.20.1.0-255.255.255.255", "::/1", "8000::-fd00:1f:ffff:ffff:ffff:ffff:ffff:ffff",
               "fd00:20:0:1::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]
    assert host.rules == [{
        "name": f"{GROUP} block", "display_name": "Xtract Universal maintenance gate (xtractuniversal.tls)",
        "direction": "Inbound", "action": "Block", "enabled": True, "protocol": "TCP",
        "local_ports": ["8064", "8065", "8165"], "remote_addresses": blocked,
    }]
    assert host.calls[1][1]["args"]["group"] == GROUP
    assert host.task is not None and host.task_group == GROUP
    # The host sets the deadline from its own clock: the controller sends only the delay.
    assert host.calls[1][0]["args"] == {"name": TASK, "delay_s": 1800, "fw_group_to_remove": GROUP, "description": host.task["description"]}
    assert json.loads(host.task["description"]) == {
        "collection": "xtractuniversal.tls", "purpose": "reopen the maintenance gate", "group": GROUP, "after_s": 1800,
    }
    assert result["state"] == "closed"
    assert result["rules"] == host.rules
    assert result["auto_open"] == {"task": TASK, "run_at": host.task["next_run_utc"], "state": "Ready"}
    assert result["ports"] == [8064, 8065, 8165]
    assert result["allow_from"] == ["10.20.0.0/24", "fd00:20::/64"]
    assert result["blocked_remote_addresses"] == blocked
    assert result["profiles"] == PROFILES
    assert "diff" not in result and "warnings" not in result


def test_ports_come_from_the_settings_files() -> None:
    host = GateHost()
    host.files["config\\servers\\web\\general.json"] = json.dumps({"HttpPort": 9065, "HttpsPort": 9165})
    host.files["config\\server\\config\\general.json"] = json.dumps({"Port": 9064})
    result = gate(host, state="closed")
    assert result["ports"] == [9064, 9065, 9165]
    assert host.rules[0]["local_ports"] == ["9064", "9065", "9165"]
    assert host.rules[0]["remote_addresses"] == ["Any"]


def test_profile_overrides_are_the_fallback() -> None:
    host = GateHost()
    result = gate(host, state="closed", web_http_port=7065, product="yunio")
    # yunIO has no configuration server; the override replaces the profile's HTTP port.
    assert result["ports"] == [7065, 8175]
    assert host.rules[0]["display_name"] == "yunIO maintenance gate (xtractuniversal.tls)"


def test_service_not_found_warns_and_closes_the_profile_ports() -> None:
    host = GateHost(service_found=False)
    result = gate(host, state="closed")
    assert result["ports"] == [8064, 8065, 8165]
    assert any("No service with display name 'Xtract Universal'" in w for w in result["warnings"])


def test_unreadable_port_settings_fail_before_any_change() -> None:
    host = GateHost()
    host.files["config\\servers\\web\\general.json"] = "{not json"
    result = gate(host, state="closed")
    assert result["failed"] is True
    assert "Unable to parse" in result["msg"] and "set ports" in result["msg"]
    assert len(host.calls) == 1 and host.rules == []


def test_explicit_ports_need_no_discovery() -> None:
    host = GateHost()
    result = gate(host, state="closed", ports=[8165, 8065, 8165])
    assert ops(host.calls[0]) == STATE_OPS
    assert result["ports"] == [8065, 8165]
    assert host.rules[0]["local_ports"] == ["8065", "8165"]


def test_second_close_changes_nothing_and_keeps_the_deadline() -> None:
    host = GateHost()
    first = gate(host, state="closed", allow_from=["10.0.0.0/8"])
    deadline = host.task["next_run_utc"] if host.task else None
    second = gate(host, state="closed", allow_from=["10.0.0.0/8"], auto_open_after=90)
    assert first["changed"] is True and second["changed"] is False
    assert len(host.calls) == 3
    assert ops(host.calls[2]) == ["discover", *STATE_OPS]
    assert second["auto_open"]["run_at"] == deadline
    assert second["rules"] == first["rules"]


def test_windows_spelling_of_the_same_rule_is_no_change() -> None:
    # Get-NetFirewallRule shows IPv4 networks with a netmask, single ports merged into ranges.
    host = GateHost(
        rules=[closed_rule(["8064-8065", "8165"], ["0.0.0.0/128.0.0.0", "::/0"])],
        task={"name": TASK, "state": "Ready", "next_run_utc": "2030-01-01T00:00:00Z", "description": "{}"},
    )
    before = json.dumps([host.rules, host.task])
    result = gate(host, state="closed", allow_from=["128.0.0.0/1"])
    assert result["changed"] is False, result
    assert len(host.calls) == 1
    assert json.dumps([host.rules, host.task]) == before


def test_other_allow_list_rewrites_the_rule_but_keeps_the_task() -> None:
    host = GateHost()
    gate(host, state="closed", allow_from=["10.0.0.1"])
    task = host.task
    result = gate(host, state="closed", allow_from=["10.0.0.2"])
    assert result["changed"] is True
    assert ops(host.calls[-1]) == ["fw_set", *APPLIED]
    assert host.task == task
    assert result["blocked_remote_addresses"][:3] == ["0.0.0.0/5", "8.0.0.0-10.0.0.1", "10.0.0.3-255.255.255.255"]


def test_closing_renews_a_task_left_from_an_open_gate() -> None:
    stale = {"name": TASK, "state": "Ready", "next_run_utc": "2020-01-01T00:00:00Z", "description": "{}"}
    host = GateHost(task=dict(stale))
    result = gate(host, state="closed", ports=[8165])
    assert ops(host.calls[-1]) == ["task_register", "fw_set", *APPLIED]
    assert result["auto_open"]["run_at"] != stale["next_run_utc"]


def test_closing_without_auto_open_removes_the_task_after_the_rules() -> None:
    host = GateHost()
    gate(host, state="closed", ports=[8165])
    result = gate(host, state="closed", ports=[8165], auto_open_after=0)
    assert result["changed"] is True and result["auto_open"] is None
    assert ops(host.calls[-1]) == ["task_remove", *APPLIED]
    assert host.task is None and host.rules
    result = gate(host, state="closed", ports=[8165, 8065], auto_open_after=0)
    # The rules change first; nothing is registered.
    assert ops(host.calls[-1]) == ["fw_set", *APPLIED]


@pytest.mark.parametrize("offset_s", [120, -180, -7200])
def test_a_skewed_host_gets_its_whole_window_on_its_own_clock(offset_s: int) -> None:
    # A host 120 s ahead once reopened the gate 15 ms after it closed; one 180 s behind, 180 s late.
    host = GateHost(clock_offset_s=offset_s)
    result = gate(host, state="closed", ports=[8165], auto_open_after=1)
    assert not result.get("failed"), result
    assert host.calls[-1][0] == {"id": 1, "op": "task_register", "args": {
        "name": TASK, "delay_s": 60, "fw_group_to_remove": GROUP, "description": host.calls[-1][0]["args"]["description"]}}
    # The trigger is the host's now plus a minute: no time the controller computed reaches it.
    deadline = parse_utc(result["auto_open"]["run_at"])
    assert datetime.timedelta(seconds=59) < deadline - host.host_now() <= datetime.timedelta(seconds=61)
    # Check mode predicts it on the host's clock too, by the offset the read measured.
    host = GateHost(clock_offset_s=offset_s)
    predicted = parse_utc(gate(host, state="closed", ports=[8165], auto_open_after=1, check_mode=True)["auto_open"]["run_at"])
    assert datetime.timedelta(seconds=59) < predicted - host.host_now() <= datetime.timedelta(seconds=61)


def test_a_trigger_the_host_shifted_fails_the_close() -> None:
    class ShiftingHost(GateHost):
        """Registers as asked, but its Task Scheduler keeps the trigger an hour off (a time zone taken wrongly)."""

        def op_task_register(self, args: dict[str, Any]) -> dict[str, Any]:
            registered = super().op_task_register(args)
            assert self.task is not None
            shifted = parse_utc(registered["run_at_utc"]) + datetime.timedelta(hours=1)
            self.task["next_run_utc"] = shifted.strftime("%Y-%m-%dT%H:%M:%SZ")
            return registered

    host = ShiftingHost()
    result = gate(host, state="closed", ports=[8165], auto_open_after=1)
    assert result["failed"] is True
    assert "was registered for" in result["msg"] and "reports its next run at" in result["msg"]


def test_fractional_minutes() -> None:
    now = datetime.datetime(2026, 11, 26, 20, 0, 0, 250_000, tzinfo=datetime.UTC)
    # 0.05 minutes is 3 seconds, rounded up to the next whole second.
    assert auto_open_deadline(now, 0.05) == "2026-11-26T20:00:04Z"
    assert auto_open_deadline(now.replace(microsecond=0), 0.05) == "2026-11-26T20:00:03Z"


def test_open_removes_rules_then_the_task() -> None:
    host = GateHost()
    gate(host, state="closed", ports=[8165])
    result = gate(host, state="open")
    assert ops(host.calls[-2]) == STATE_OPS
    assert ops(host.calls[-1]) == ["fw_set", "task_remove", *APPLIED]
    assert host.calls[-1][0]["args"] == {"group": GROUP, "rules": []}
    assert host.rules == [] and host.task is None
    assert result == result | {"changed": True, "state": "open", "rules": [], "auto_open": None, "ports": [],
                               "allow_from": [], "blocked_remote_addresses": []}
    again = gate(host, state="open")
    assert again["changed"] is False
    assert ops(host.calls[-1]) == STATE_OPS


def test_open_with_only_a_task_left() -> None:
    host = GateHost(task={"name": TASK, "state": "Ready", "next_run_utc": None, "description": None})
    result = gate(host, state="open")
    assert result["changed"] is True
    assert ops(host.calls[-1]) == ["task_remove", *APPLIED]


def test_check_mode_reads_only_and_predicts() -> None:
    host = GateHost()
    result = gate(host, state="closed", allow_from=["192.0.2.10"], check_mode=True)
    assert result["changed"] is True
    assert len(host.calls) == 1 and host.rules == [] and host.task is None
    assert result["state"] == "closed"
    assert result["rules"][0]["remote_addresses"][:3] == ["0.0.0.0/1", "128.0.0.0-192.0.2.9", "192.0.2.11-255.255.255.255"]
    assert result["auto_open"]["task"] == TASK and result["auto_open"]["run_at"]

    gate(host, state="closed", ports=[8165])
    before = json.dumps([host.rules, host.task])
    opened = gate(host, state="open", check_mode=True)
    assert opened["changed"] is True and opened["state"] == "open" and opened["auto_open"] is None
    assert json.dumps([host.rules, host.task]) == before


def test_diff_shows_the_rule_and_the_task() -> None:
    host = GateHost()
    closed = gate(host, state="closed", ports=[8165], diff=True)
    diff = closed["diff"]
    assert diff["before"] == {"state": "open", "rules": [], "auto_open": None}
    assert diff["after"]["state"] == "closed"
    assert diff["after"]["rules"] == host.rules
    assert diff["after"]["auto_open"]["task"] == TASK
    opened = gate(host, state="open", diff=True, check_mode=True)
    assert opened["diff"]["before"] == diff["after"]
    assert opened["diff"]["after"] == {"state": "open", "rules": [], "auto_open": None}


BAD_INPUTS = [
    ({"ports": [8165, 5985]}, "5985 is the WinRM over HTTP management port"),
    ({"ports": [5986]}, "5986 is the WinRM over HTTPS management port"),
    ({"ports": [22]}, "22 is the SSH management port"),
    ({"ports": [0]}, "0 is not a TCP port; give ports from 1 to 65535"),
    ({"ports": [70000]}, "70000 is not a TCP port"),
    ({"ports": []}, "ports is empty"),
    ({"allow_from": ["10.0.0.0/33"]}, "allow_from: '10.0.0.0/33' is not an IP address, network or range"),
    ({"allow_from": ["10.0.0.9-10.0.0.1"]}, "not a range from a lower to a higher address"),
    ({"allow_from": ["LocalSubnet"]}, "allow_from: 'LocalSubnet'"),
    ({"allow_from": ["0.0.0.0/0", "::/0"]}, "would block nobody"),
    # One family admitted whole: the gate would be reported closed with every IPv4 (IPv6) client still let in.
    ({"allow_from": ["0.0.0.0/0"]}, "allow_from admits every IPv4 address, so a closed gate would not close for IPv4 clients"),
    ({"allow_from": ["0.0.0.0/1", "128.0.0.0/1", "10.0.0.1"]}, "admits every IPv4 address"),
    ({"allow_from": ["::/1", "8000::/1"]}, "admits every IPv6 address"),
    ({"rule_group": "gate/1"}, "rule_group: gate rule group 'gate/1' must be 1 to 64 letters"),
    ({"rule_group": "x" * 65}, "must be 1 to 64"),
    ({"auto_open_after": -1}, "auto_open_after is -1"),
    ({"auto_open_after": "nan"}, "auto_open_after is nan"),
    ({"auto_open_after": 10081}, "auto_open_after is 10081, more than 10080 minutes (7 days); give at most 10080"),
    ({"auto_open_after": "inf"}, "auto_open_after is inf"),
    ({"state": "ajar"}, "Invalid arguments"),
    ({"ports": ["https"]}, "Invalid arguments"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS)
def test_bad_input_fails_before_any_remote_call(args: dict[str, Any], message: str) -> None:
    host = GateHost()
    result = gate(host, **({"state": "closed"} | args))
    assert result["failed"] is True
    assert message in result["msg"], result["msg"]
    assert host.calls == []


def test_bad_ports_are_refused_when_opening_too() -> None:
    host = GateHost()
    result = gate(host, state="open", ports=[5985])
    assert result["failed"] is True and host.calls == []
    assert gate(host, state="open", ports=[])["changed"] is False


def test_management_port_in_the_settings_is_refused_before_applying() -> None:
    host = GateHost()
    host.files["config\\servers\\web\\general.json"] = json.dumps({"HttpPort": 5985, "HttpsPort": 8165})
    result = gate(host, state="closed")
    assert result["failed"] is True
    assert "the product's ports (from its settings files): 5985 is the WinRM over HTTP management port" in result["msg"]
    assert len(host.calls) == 1 and host.rules == []


def test_the_connection_port_is_refused() -> None:
    in_use = connection_ports(["2222", None, True, "{{ port }}", 70000])
    assert in_use == {2222}
    with pytest.raises(XuError, match="2222 is the port this play connects to the host on"):
        gate_request(DEFAULTS | {"ports": [8165, 2222]}, in_use)
    assert gate_request(DEFAULTS | {"ports": [8165]}, in_use).ports == (8165,)


def test_a_failing_fw_set_reports_what_the_host_did() -> None:
    host = GateHost(errors={"fw_set": {"type": "CimException", "message": "Access is denied."}})
    result = gate(host, state="closed", ports=[8165])
    assert result["failed"] is True
    assert result["msg"].startswith("fw_set failed on the host: CimException: Access is denied.")
    assert "Already done on the host: task_register" in result["msg"]
    assert "auto-open task stays registered" in result["msg"]
    assert result["operations"] == [
        {"op": "task_register", "status": "ok"}, {"op": "fw_set", "status": "error"},
        {"op": "fw_get", "status": "skipped"}, {"op": "task_get", "status": "skipped"},
    ]
    assert host.rules == []


def test_a_failing_read_changes_nothing() -> None:
    host = GateHost(errors={"task_get": {"type": "UnauthorizedAccessException", "message": "Access is denied."}})
    result = gate(host, state="open")
    assert result["failed"] is True
    assert result["msg"] == "task_get failed on the host: UnauthorizedAccessException: Access is denied."
    assert len(host.calls) == 1


class ForgetfulHost(GateHost):
    """Acknowledges fw_set but keeps its rules, as a host with a group policy overriding local rules would."""

    def op_fw_set(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"removed": 0, "added": len(args["rules"])}


def test_a_rule_the_host_does_not_keep_is_a_failure() -> None:
    host = ForgetfulHost()
    result = gate(host, state="closed", ports=[8165], auto_open_after=0)
    assert result["failed"] is True
    assert "The host reports other rules in group 'xtractuniversal.tls gate' than were just set; the gate is open" in result["msg"]


def test_rule_comparison() -> None:
    desired = closed_rule(["8064", "8065", "8165"], ["0.0.0.0-9.255.255.255", "11.0.0.0-255.255.255.255", "::/0"])
    windows = ["0.0.0.0/255.0.0.0", "1.0.0.0-9.255.255.255", "11.0.0.0-255.255.255.255", "::/0"]
    assert same_rule(closed_rule(["8165", "8064-8065"], windows), desired)
    assert same_rule(desired | {"enabled": "True", "action": "block", "name": desired["name"].upper()}, desired)
    assert not same_rule(desired | {"enabled": False}, desired)
    assert not same_rule(desired | {"local_ports": ["Any"]}, desired)
    assert not same_rule(desired | {"remote_addresses": ["LocalSubnet"]}, desired)
    assert not same_rule(desired | {"remote_addresses": ["Any"]}, desired)
    assert not same_rule(desired | {"display_name": "other"}, desired)
    assert port_set(["8064-8066", "22"]) == frozenset({22, 8064, 8065, 8066})
    assert port_set(["RPC"]) is None


def test_request_keeps_options_as_given() -> None:
    request = gate_request(DEFAULTS | {"allow_from": [" 10.0.0.1 "], "auto_open_after": 0.5}, set())
    assert request.allow_from == ("10.0.0.1",)
    assert math.isclose(request.auto_open_after, 0.5)
    assert request.task_name == TASK
    assert gate_request(DEFAULTS | {"auto_open_after": 10080}, set()).auto_open_after == 10080


# -- whether the gate is in effect -------------------------------------------------------------------


@pytest.mark.parametrize("check_mode", [False, True])
def test_a_profile_that_is_off_fails_before_any_change(check_mode: bool) -> None:
    host = GateHost(profiles=profiles_with("Public", enabled=False))
    result = gate(host, state="closed", ports=[8165], check_mode=check_mode)
    assert result["failed"] is True and result["changed"] is False
    assert result["msg"].startswith(
        "The gate cannot take effect: Windows Firewall's Public profile is off, so a block rule would have no effect"
    ), result["msg"]
    assert "turn it on (Set-NetFirewallProfile -Profile Public -Enabled True)" in result["msg"]
    assert "Nothing was changed on the host" in result["msg"]
    assert result["profiles"] == host.profiles
    assert len(host.calls) == 1 and host.rules == [] and host.task is None


def test_every_profile_that_is_off_is_named() -> None:
    # Connections on the Domain profile would be blocked, but the agent cannot tell which profile a client uses.
    host = GateHost(profiles=[{"name": "Domain", "enabled": True, "local_rules_applied": True},
                              {"name": "Private", "enabled": False, "local_rules_applied": True},
                              {"name": "Public", "enabled": "False", "local_rules_applied": True}])
    result = gate(host, state="closed", ports=[8165])
    assert result["failed"] is True
    assert "Windows Firewall's Private and Public profiles are off" in result["msg"]
    assert "Set-NetFirewallProfile -Profile Private,Public -Enabled True" in result["msg"]
    assert len(host.calls) == 1 and host.rules == []


@pytest.mark.parametrize("check_mode", [False, True])
def test_policy_ignoring_local_rules_fails_before_any_change(check_mode: bool) -> None:
    host = GateHost(profiles=profiles_with("Domain", local_rules_applied=False))
    result = gate(host, state="closed", check_mode=check_mode)
    assert result["failed"] is True and result["changed"] is False
    assert "group policy ignores local firewall rules (AllowLocalFirewallRules False) on the Domain profile," in result["msg"]
    assert "Nothing was changed on the host" in result["msg"]
    # Refused right after the read call, before the product's ports or anything else.
    assert len(host.calls) == 1 and host.rules == [] and host.task is None


def test_an_already_closed_gate_is_judged_too() -> None:
    host = GateHost()
    gate(host, state="closed", ports=[8165])
    host.profiles = profiles_with("Private", enabled=False, local_rules_applied=False)
    before = json.dumps([host.rules, host.task])
    result = gate(host, state="closed", ports=[8165])
    assert result["failed"] is True and result["changed"] is False
    assert "Windows Firewall's Private profile is off" in result["msg"]
    assert "; and group policy ignores local firewall rules (AllowLocalFirewallRules False) on the Private profile" in result["msg"]
    assert ops(host.calls[-1]) == STATE_OPS
    assert json.dumps([host.rules, host.task]) == before


def test_a_rule_missing_from_the_active_store_fails_after_applying() -> None:
    host = GateHost(active_rules=[])
    result = gate(host, state="closed", ports=[8165])
    assert result["failed"] is True
    assert result["msg"].startswith(
        "The gate's rule 'xtractuniversal.tls gate block' is stored in group 'xtractuniversal.tls gate' but not in effect"
    ), result["msg"]
    # Something was written: the state is reported as usual.
    assert [ops(call) for call in host.calls] == [STATE_OPS, ["task_register", "fw_set", *APPLIED]]
    assert result["changed"] is True
    assert result["state"] == "closed" and result["rules"] == host.rules
    assert result["auto_open"]["task"] == TASK
    assert result["ports"] == [8165] and result["profiles"] == PROFILES

    # Nothing more to write on the next run, but the gate is still not in effect.
    again = gate(host, state="closed", ports=[8165])
    assert again["failed"] is True and again["changed"] is False
    assert "but not in effect" in again["msg"]
    assert ops(host.calls[-1]) == STATE_OPS


def test_the_active_store_must_list_the_gate_rule_by_name() -> None:
    other = GateHost(active_rules=["xtractuniversal.tls gate block (2)"])
    refused = gate(other, state="closed", ports=[8165])
    assert refused["failed"] is True and "but not in effect" in refused["msg"]
    # Windows compares rule names without regard to case.
    host = GateHost(active_rules=[f"{GROUP} BLOCK"])
    result = gate(host, state="closed", ports=[8165])
    assert not result.get("failed"), result
    assert result["changed"] is True and result["state"] == "closed"


def test_check_mode_judges_a_gate_that_is_already_closed() -> None:
    host = GateHost()
    gate(host, state="closed", ports=[8165])
    host.active_rules = []
    result = gate(host, state="closed", ports=[8165], check_mode=True)
    assert result["failed"] is True and result["changed"] is False
    assert "but not in effect" in result["msg"]


class LegacyHost(FakeHost):
    """An older agent: fw_get answers only ``rules``."""


@pytest.mark.parametrize("check_mode", [False, True])
def test_an_answer_without_profiles_is_not_taken_as_in_effect(check_mode: bool) -> None:
    host = LegacyHost()
    result = gate(host, state="closed", ports=[8165], check_mode=check_mode)
    assert result["failed"] is True and result["changed"] is False
    assert result["msg"].startswith(
        "The host's answer does not say whether the gate is in effect: its fw_get result has no profiles and no active_rules"
    ), result["msg"]
    assert "Nothing was changed on the host" in result["msg"]
    assert len(host.calls) == 1 and host.rules == [] and host.task is None


@pytest.mark.parametrize(
    ("answer", "missing"),
    [
        ({"profiles": PROFILES}, "has no active_rules"),
        ({"active_rules": []}, "has no profiles"),
        ({"active_rules": [], "profiles": []}, "lists no Windows Firewall profiles with name, enabled, local_rules_applied"),
        ({"active_rules": [], "profiles": [{"name": "Public", "enabled": True}]}, "lists no Windows Firewall profiles"),
    ],
)
def test_a_partial_answer_is_not_taken_as_in_effect(answer: dict[str, Any], missing: str) -> None:
    class PartialHost(FakeHost):
        def op_fw_get(self, args: dict[str, Any]) -> dict[str, Any]:
            return {"rules": self.rules, **answer}

    host = PartialHost()
    result = gate(host, state="closed", ports=[8165])
    assert result["failed"] is True
    assert "The host's answer does not say whether the gate is in effect" in result["msg"]
    assert missing in result["msg"], result["msg"]
    assert len(host.calls) == 1 and host.rules == []


@dataclass
class ForgetsAfterWritingHost(GateHost):
    """Answers the new keys until fw_set ran, then only ``rules``."""

    written: bool = False

    def op_fw_set(self, args: dict[str, Any]) -> dict[str, Any]:
        self.written = True
        return super().op_fw_set(args)

    def op_fw_get(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"rules": self.rules} if self.written else super().op_fw_get(args)


def test_a_read_back_without_active_rules_fails_after_applying() -> None:
    host = ForgetsAfterWritingHost()
    result = gate(host, state="closed", ports=[8165], auto_open_after=0)
    assert result["failed"] is True and result["changed"] is True
    assert "The host's answer does not say whether the gate is in effect" in result["msg"]
    assert result["state"] == "closed" and result["rules"] == host.rules and result["profiles"] is None


@pytest.mark.parametrize(
    "host",
    [
        LegacyHost(),
        GateHost(profiles=profiles_with("Public", enabled=False)),
        GateHost(profiles=profiles_with("Domain", local_rules_applied=False), active_rules=[]),
    ],
    ids=["older agent", "profile off", "local rules ignored"],
)
def test_opening_needs_no_judgement(host: FakeHost) -> None:
    host.rules = [closed_rule(["8165"], ["Any"])]
    host.task = {"name": TASK, "state": "Ready", "next_run_utc": "2030-01-01T00:00:00Z", "description": "{}"}
    result = gate(host, state="open")
    assert not result.get("failed"), result
    assert result["changed"] is True and result["state"] == "open"
    assert host.rules == [] and host.task is None
    assert result["profiles"] == getattr(host, "profiles", None)


HOLD_GROUP = "xtractuniversal.tls gate http"


def test_releasing_the_http_hold_by_hand_is_refused_while_plain_http_is_served_or_a_run_holds_the_host() -> None:
    host = FirewallFakeHost()
    host.groups[HOLD_GROUP] = [{"name": f"{HOLD_GROUP} block", "display_name": "hold", "direction": "Inbound", "action": "Block",
                                "enabled": True, "protocol": "TCP", "local_ports": ["8065"], "remote_addresses": ["Any"]}]
    # A renewal's TLS-off step: the web server answers plain HTTP on 8065, behind the hold.
    host.http_ports.add(8065)
    before = json.dumps(host.groups)
    refused = run_action("xu_firewall_gate", {"state": "open", "hold": {"state": "open"}}, host)
    assert refused["failed"] is True and "8065 serves plain HTTP" in refused["msg"] and json.dumps(host.groups) == before
    # A run holds the host: its journal's lease is live.
    host.http_ports.clear()
    host.journals["renew"] = json.dumps({"run_id": "run-a", "step": "tls_off", "lease_expires": "2999-01-01T00:00:00Z"})
    busy = run_action("xu_firewall_gate", {"state": "open", "hold": {"state": "open"}}, host)
    assert busy["failed"] is True and busy["busy"] is True and json.dumps(host.groups) == before
    # Neither: the hold goes.
    del host.journals["renew"]
    opened = run_action("xu_firewall_gate", {"state": "open", "hold": {"state": "open"}}, host)
    assert not opened.get("failed"), opened
    assert opened["hold"]["state"] == "open" and not host.groups[HOLD_GROUP]
