"""A step of a run in one remote call: the host's state carried from task to task, and the run's journal in the modules' own calls."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._certificate import iso, utc_now
from support.action import run_action
from support.certs import mint
from support.fake_changes import ChangingFakeHost
from support.fake_firewall import FirewallFakeHost
from support.fake_host import FakeHost, tls_json

FQDN = "xu01.example.com"
TLS = "config\\servers\\tls.json"
JOURNAL = {"name": "renew", "content": {"step": "started", "mode": "replace"}, "lease_minutes": 30}


def bound_host() -> tuple[ChangingFakeHost, str, str]:
    """Certificate A bound to both servers and served; certificate B in the store, readable."""
    host = ChangingFakeHost()
    old = host.add_certificate(mint(FQDN)[0])
    new = host.add_certificate(mint(FQDN)[0])
    host.files[TLS] = tls_json(web=old, config=old)
    assert host.start_service()
    return host, old, new


def ops(call: list[dict[str, Any]]) -> list[str]:
    return [str(op["op"]) for op in call]


def guarded(call: list[dict[str, Any]]) -> list[str]:
    """The operations of a call planned from a carried state, after the settings files' guards it starts with."""
    names = ops(call)
    guards = len(names) - len(names[next(i for i, n in enumerate(names) if n != "file_check"):])
    # Every file the carried discover read: tls.json, both general.json in both layouts, version.txt.
    assert guards == 6, names
    return names[guards:]


def carried(host: FakeHost) -> dict[str, Any]:
    """What xu_tls_info hands to the next task."""
    info = run_action("xu_tls_info", {"host_state": {}}, host)
    assert not info.get("failed"), info
    state: dict[str, Any] = info["host_state"]
    return state


def test_a_step_given_the_previous_state_makes_one_call_and_hands_on_the_state_after_it() -> None:
    host, old, new = bound_host()
    state = carried(host)
    assert len(host.calls) == 1 and state["host"] == "xu01" and state["format"] == 1

    result = run_action("xu_tls_binding", {"web_certificate": new, "config_server_certificate": new, "host_state": state}, host)
    assert not result.get("failed"), result
    # No read of its own: the apply call, which reads everything known again after the change.
    assert len(host.calls) == 2
    assert guarded(host.calls[1])[:6] == ["file_write", "service_restart", "port_probe", "port_probe", "event_write", "discover"]
    tls_guard = next(op["args"] for op in host.calls[1] if op["op"] == "file_check" and op["args"]["path"].endswith("tls.json"))
    assert tls_guard["sha256"] == next(f for f in next(a for a in state["answers"] if a["op"] == "discover")["result"]["files"]
                                       if f["path"].endswith("tls.json"))["sha256"]
    after = result["host_state"]
    discover = next(a for a in after["answers"] if a["op"] == "discover")
    tls = next(f for f in discover["result"]["files"] if f["path"].endswith("tls.json"))
    assert new in tls["content"] and old not in tls["content"]

    # The verification reads nothing from the host: the state after the restart answers it.
    info = run_action("xu_tls_info", {"host_state": after}, host)
    assert len(host.calls) == 2
    assert info["web_server"]["certificate_thumbprint"] == new and info["served"]["web_https"]["thumbprint"] == new


def test_a_module_used_alone_reads_first_and_reads_nothing_more() -> None:
    host, _old, new = bound_host()
    result = run_action("xu_tls_binding", {"web_certificate": new, "config_server_certificate": new, "host_state": None}, host)
    assert not result.get("failed"), result
    assert len(host.calls) == 2 and "discover" not in ops(host.calls[1])
    # Nothing was read after the change: no state to hand on.
    assert result["host_state"] is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda s: s | {"host": "xu02"}, "it was read from 'xu02', not from 'xu01'"),
        (lambda s: s | {"read_at": iso(utc_now() - datetime.timedelta(minutes=16))}, "more than 15 minutes ago"),
        (lambda s: s | {"format": 99}, "it is not a host_state this collection returned"),
    ],
)
def test_a_foreign_or_old_state_is_not_used(change: Any, reason: str) -> None:
    host, _old, _new = bound_host()
    state = change(carried(host))
    result = run_action("xu_tls_info", {"host_state": state}, host)
    assert len(host.calls) == 2  # read again
    assert any(reason in w and "host_state was not used" in w for w in result["warnings"]), result


def test_a_guard_that_finds_the_host_changed_makes_the_module_read_again_and_go_on() -> None:
    host, old, new = bound_host()
    state = carried(host)
    # Someone edits tls.json after the state was read: the guard before the change is refused on the host.
    host.files[TLS] = tls_json(web=old, config=old, protocol="HttpsRestrictedAdUsers")
    result = run_action("xu_tls_binding", {"web_certificate": new, "host_state": state}, host)
    assert not result.get("failed"), result
    assert [c[0]["op"] for c in host.calls[1:]] == ["file_check", "discover", "file_write"]
    refused_write = next(op["args"] for op in host.calls[1] if op["op"] == "file_write")
    assert host.file(refused_write["backup_path"]) is None  # sent after the guard, never run
    document = json.loads(host.file(TLS) or "")
    # The edit made meanwhile is kept: the plan was made again from what the host holds now.
    assert document["WebServer"]["Protocol"] == "HttpsRestrictedAdUsers" and document["WebServer"]["Certificate"]["Thumbprint"] == new


@pytest.mark.parametrize("module", ["xu_tls_binding", "xu_firewall_gate"])
def test_a_caller_that_decided_from_the_state_is_told_and_nothing_is_changed(module: str) -> None:
    # Another run renewed the host between this run's read and its first change: the decision itself is stale.
    bound, old, new = bound_host()
    host: FakeHost = FirewallFakeHost(files=dict(bound.files)) if module == "xu_firewall_gate" else bound
    state = carried(host)
    host.files[TLS] = tls_json(web=new, config=new)
    before = dict(host.files)
    args = {"web_certificate": old} if module == "xu_tls_binding" else {"state": "closed"}
    result = run_action(module, {**args, "host_state": state, "host_state_changed": "fail", "run_id": "run-b", "journal": JOURNAL}, host)
    assert result.get("stale") is True, result
    assert result["failed"] is True and result["changed"] is False
    assert "the host changed since host_state was read (HashMismatch" in result["msg"] and "decide again" in result["msg"]
    # One call, refused at its first guard: no journal, no rule, no write.
    assert len(host.calls) == 2 and ops(host.calls[1])[0] == "file_check"
    assert host.files == before and "renew" not in host.journals and not host.rules
    assert not isinstance(host, FirewallFakeHost) or not any(host.groups.values())


def test_a_module_used_alone_sends_no_guard_of_its_own_read() -> None:
    host, _old, new = bound_host()
    run_action("xu_tls_binding", {"web_certificate": new, "config_server_certificate": new}, host)
    assert "file_check" not in ops(host.calls[1])


def test_the_journal_rides_in_the_apply_call_and_names_the_backup_it_makes() -> None:
    host, _old, new = bound_host()
    result = run_action("xu_tls_binding", {"web_certificate": new, "config_server_certificate": new, "run_id": "run-1", "journal": JOURNAL}, host)
    assert not result.get("failed"), result
    assert len(host.calls) == 2 and host.calls[0][-1]["op"] == "journal_read"
    write = host.calls[1][0]
    assert write["op"] == "journal_write" and write["args"]["expected_sha256"] == "absent"
    journal = json.loads(host.journals["renew"])
    assert journal["run_id"] == "run-1" and journal["step"] == "started" and journal["lease_expires"] > iso(utc_now())
    # The backup the call's write made, named before the call: a later run finds it even if this one never learns the answer.
    assert journal["backup_files"] == {next(iter(journal["backup_files"])): result["backup_file"]}
    assert result["backup_file"] is not None and host.file(result["backup_file"]) is not None


def test_the_journal_goes_after_the_change_only_once_the_host_sees_it_served() -> None:
    host, _old, new = bound_host()
    host.journals["renew"] = json.dumps({"run_id": "run-1", "step": "renewed"})
    args = {"web_certificate": new, "config_server_certificate": new, "run_id": "run-1", "journal": {"name": "renew", "state": "absent"}}
    result = run_action("xu_tls_binding", args, host)
    assert not result.get("failed"), result
    assert ops(host.calls[1])[-2:] == ["served_check", "journal_write"] and "renew" not in host.journals

    # The restarted service does not serve what it should: the journal stays for the next run, the change is rolled back.
    host, _old, new = bound_host()
    host.journals["renew"] = json.dumps({"run_id": "run-1", "step": "renewed"})

    def broken_web_server_once(h: Any) -> None:
        h.http_status = 500 if h.restarts == 1 else 200

    host.after_start.append(broken_web_server_once)
    result = run_action("xu_tls_binding", args | {"web_certificate": new, "config_server_certificate": new}, host)
    assert result["failed"] is True and result["rolled_back"] is True, result["msg"]
    assert "renew" in host.journals


def test_a_host_another_run_holds_is_left_alone() -> None:
    host, old, new = bound_host()
    lease = iso(utc_now() + datetime.timedelta(minutes=20))
    held = json.dumps({"run_id": "run-a", "step": "tls_off", "lease_expires": lease})
    host.journals["renew"] = held
    result = run_action("xu_tls_binding", {"web_certificate": new, "run_id": "run-b", "journal": JOURNAL}, host)
    assert result["failed"] is True and result["busy"] is True and result["owner"]["run_id"] == "run-a"
    assert len(host.calls) == 1 and host.journals["renew"] == held and old in (host.file(TLS) or "")


def test_the_gate_and_the_hold_close_and_open_in_one_call_each() -> None:
    host = FirewallFakeHost()
    state = carried(host)
    closed = run_action(
        "xu_firewall_gate",
        {"state": "closed", "hold": {"state": "closed", "ports": [8065]}, "host_state": state, "run_id": "run-1", "journal": JOURNAL},
        host,
    )
    assert not closed.get("failed"), closed
    assert len(host.calls) == 2 and guarded(host.calls[1])[:2] == ["journal_write", "fw_set"]
    assert closed["state"] == "closed" and closed["hold"]["state"] == "closed" and closed["hold"]["ports"] == [8065]
    assert closed["hold"]["rule_group"] == "xtractuniversal.tls gate http" and closed["hold"]["auto_open"] is None
    assert closed["auto_open"] is not None

    opened = run_action(
        "xu_firewall_gate",
        {"state": "open", "hold": {"state": "open"}, "host_state": closed["host_state"], "run_id": "run-1", "journal": {"state": "absent"}},
        host,
    )
    assert not opened.get("failed"), opened
    assert len(host.calls) == 3 and opened["state"] == "open" and opened["hold"]["state"] == "open"
    # The gate opens before the hold, and the journal goes once both are open.
    fw_sets = [op["args"]["group"] for op in host.calls[2] if op["op"] == "fw_set"]
    assert fw_sets == ["xtractuniversal.tls gate", "xtractuniversal.tls gate http"]
    assert ops(host.calls[2]).index("journal_write") > ops(host.calls[2]).index("task_remove") and "renew" not in host.journals


def test_a_hold_in_the_gates_own_group_is_refused() -> None:
    host, _old, _new = bound_host()
    result = run_action("xu_firewall_gate", {"state": "closed", "hold": {"state": "closed", "ports": [8065], "rule_group": "xtractuniversal.tls gate"}}, host)
    assert result["failed"] is True and "hold.rule_group is the gate's own rule_group" in result["msg"] and host.calls == []


def test_an_unexpected_error_after_a_change_is_a_failure_that_counts_as_a_change(monkeypatch: pytest.MonkeyPatch) -> None:
    from ansible_collections.xtractuniversal.tls.plugins.plugin_utils import _tls_binding  # noqa: PLC0415

    host, _old, new = bound_host()

    def broken(*_args: Any) -> dict[str, Any]:
        raise ValueError("a stray bug")

    calls = []

    def broken_after_the_apply_call(probes: Any) -> Any:
        calls.append(probes)
        if len(calls) > 1:
            raise ValueError("a stray bug")
        return {}

    monkeypatch.setattr(_tls_binding, "served_summary", broken_after_the_apply_call)
    result = run_action("xu_tls_binding", {"web_certificate": new}, host)
    assert result["failed"] is True and result["changed"] is True
    assert "Unexpected error in xtractuniversal.tls.xu_tls_binding: ValueError: a stray bug" in result["msg"]

    # Before any change it is a failure that changed nothing.
    host, _old, new = bound_host()
    monkeypatch.setattr(_tls_binding, "plan_binding", broken)
    result = run_action("xu_tls_binding", {"web_certificate": new}, host)
    assert result["failed"] is True and result["changed"] is False and len(host.calls) == 1


def test_an_unexpected_error_keeps_secrets_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    from ansible_collections.xtractuniversal.tls.plugins.plugin_utils import _cert_swap  # noqa: PLC0415

    secret = "S3cr3t-pfx-p@ss"  # noqa: S105 - a test secret

    def broken(params: dict[str, Any], *_args: Any) -> Any:
        raise ValueError(f"boom with {params['pfx_password']}")

    monkeypatch.setattr(_cert_swap, "parse_request", broken)
    host, old, _new = bound_host()
    result = run_action("xu_cert_swap", {"old_thumbprint": old, "pfx_content": "AAAA", "pfx_password": secret}, host)
    assert result["failed"] is True and secret not in json.dumps(result)


def test_backups_are_kept_to_the_newest_ten_per_file_and_never_the_runs_own() -> None:
    host, _old, new = bound_host()
    tls_path = "C:\\Program Files\\XtractUniversal\\config\\servers\\tls.json"
    old_backups = [f"{tls_path}.202601{day:02d}T000000000000Z.bak" for day in range(1, 13)]
    for backup in old_backups:
        host.files[backup.replace("C:\\Program Files\\XtractUniversal\\", "")] = "{}"
    # Windows lists this one for *.bak too; it is not a backup and is never removed.
    host.files["config\\servers\\tls.json.20250101T000000000000Z.bakup"] = "{}"
    run_first = old_backups[0]  # the oldest, but the run's journal names it: the bytes from before the run
    journal = {"name": "renew", "content": {"step": "tls_off", "backup_files": {tls_path: run_first}}, "lease_minutes": 30}
    result = run_action("xu_tls_binding", {"web_certificate": new, "config_server_certificate": new, "journal": journal, "run_id": "run-1"}, host)
    assert not result.get("failed"), result
    removed = [op["args"]["path"] for op in host.calls[1] if op["op"] == "file_remove"]
    # 12 old + 1 new: the 9 newest old ones stay with the new one, the oldest 3 go, except the run's own.
    assert removed == old_backups[1:3]
    assert host.file(run_first) is not None and all(host.file(b) is None for b in removed) and host.file(result["backup_file"]) is not None
    assert ops(host.calls[1])[-2:] == ["file_remove", "file_remove"]
    assert host.file("config\\servers\\tls.json.20250101T000000000000Z.bakup") is not None


def test_a_guard_that_cannot_check_fails_the_step_without_deciding_again() -> None:
    host, old, new = bound_host()
    state = carried(host)
    host.errors["file_check"] = {"type": "UnauthorizedAccessException", "message": "Access is denied."}
    before = dict(host.files)
    result = run_action("xu_tls_binding", {"web_certificate": new, "host_state": state, "run_id": "run-b", "journal": JOURNAL}, host)
    assert result["failed"] is True and "stale" not in result and result["changed"] is False
    assert result["msg"] == "Checking the settings files before the change failed (UnauthorizedAccessException: Access is denied.); nothing was changed"
    assert len(host.calls) == 2 and host.files == before and "renew" not in host.journals and old in (host.file(TLS) or "")
