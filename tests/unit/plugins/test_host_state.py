"""A step of a run in one remote call: the modules' logic sharing one snapshot of the host, as the renewal engine runs
them, and the run's journal in the modules' own calls."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._certificate import iso, utc_now
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._agent import AgentClient
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._host_state import CarriedStateAgent, StaleState, usable_state
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.journal._journal import JournalRide
from support.action import run_action
from support.certs import mint
from support.fake_changes import ChangingFakeHost, sha256_text
from support.fake_firewall import FirewallFakeHost
from support.fake_host import FakeHost, tls_json
from support.inprocess import Steps

FQDN = "xu01.example.com"
TLS = "config\\servers\\tls.json"
JOURNAL = JournalRide("renew", "present", {"step": "started", "mode": "replace"}, 30)


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


def read(steps: Steps) -> dict[str, Any]:
    info = steps.run("xu_tls_info", {})
    assert not info.get("failed"), info
    return info


def test_a_step_after_a_read_makes_one_call_and_reads_back_in_it_what_the_next_step_needs() -> None:
    host, old, new = bound_host()
    steps = Steps(host)
    read(steps)
    assert len(host.calls) == 1

    result = steps.run("xu_tls_binding", {"web_certificate": new, "config_server_certificate": new})
    assert not result.get("failed"), result
    # No read of its own: the apply call, which reads everything known again after the change.
    assert len(host.calls) == 2
    assert guarded(host.calls[1])[:6] == ["file_write", "service_restart", "port_probe", "port_probe", "event_write", "discover"]
    # The change is guarded by tls.json's hash as the read saw it.
    tls_guard = next(op["args"] for op in host.calls[1] if op["op"] == "file_check" and op["args"]["path"].endswith("tls.json"))
    assert tls_guard["sha256"] == sha256_text(tls_json(web=old, config=old))

    # The verification reads nothing from the host: what the apply call read back answers it.
    info = read(steps)
    assert len(host.calls) == 2
    assert info["web_server"]["certificate_thumbprint"] == new and info["served"]["web_https"]["thumbprint"] == new
    assert old not in (host.file(TLS) or "")


def test_a_module_used_alone_reads_first_and_reads_nothing_more() -> None:
    host, _old, new = bound_host()
    result = run_action("xu_tls_binding", {"web_certificate": new, "config_server_certificate": new}, host)
    assert not result.get("failed"), result
    assert len(host.calls) == 2 and "discover" not in ops(host.calls[1]) and "file_check" not in ops(host.calls[1])


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda s: s | {"host": "xu02"}, "it was read from 'xu02', not from 'xu01'"),
        (lambda s: s | {"read_at": iso(utc_now() - datetime.timedelta(minutes=16))}, "more than 15 minutes ago"),
        (lambda s: s | {"format": 99}, "it is not a host_state this collection returned"),
    ],
)
def test_a_foreign_or_old_snapshot_is_not_used(change: Any, reason: str) -> None:
    host, _old, _new = bound_host()
    steps = Steps(host)
    read(steps)
    state = steps.agent.state()
    answers, why = usable_state(change(state), "xu01")
    assert answers == [] and why is not None and reason in why
    agent, ignored = CarriedStateAgent.wrap(AgentClient(host.transport), "xu01", change(state))
    assert ignored is not None and reason in ignored and not agent.answers
    assert usable_state(state, "xu01") == (usable_state(state, "xu01")[0], None)


@pytest.mark.parametrize("module", ["xu_tls_binding", "xu_firewall_gate"])
def test_a_step_whose_snapshot_is_out_of_date_changes_nothing_and_says_so(module: str) -> None:
    # Another run renewed the host between this run's read and its first change: the decision itself is stale.
    bound, old, new = bound_host()
    host: FakeHost = FirewallFakeHost(files=dict(bound.files)) if module == "xu_firewall_gate" else bound
    steps = Steps(host)
    read(steps)
    host.files[TLS] = tls_json(web=new, config=new)
    before = dict(host.files)
    args = {"web_certificate": old} if module == "xu_tls_binding" else {"state": "closed"}
    result = steps.run(module, {**args, "run_id": "run-b"}, JOURNAL)
    assert isinstance(result["error"], StaleState), result
    assert "the host changed since host_state was read (HashMismatch" in result["msg"]
    # One call, refused at its first guard: no journal, no rule, no write.
    assert len(host.calls) == 2 and ops(host.calls[1])[0] == "file_check"
    assert host.files == before and "renew" not in host.journals and not host.rules
    assert not isinstance(host, FirewallFakeHost) or not any(host.groups.values())


def test_the_journal_rides_in_the_apply_call_and_names_the_backup_it_makes() -> None:
    host, _old, new = bound_host()
    result = Steps(host).run("xu_tls_binding", {"web_certificate": new, "config_server_certificate": new, "run_id": "run-1"}, JOURNAL)
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
    args = {"web_certificate": new, "config_server_certificate": new, "run_id": "run-1"}
    removal = JournalRide("renew", "absent", None, None)
    result = Steps(host).run("xu_tls_binding", args, removal)
    assert not result.get("failed"), result
    names = ops(host.calls[1])
    # The journal goes last of the change, right after the host saw its ports serve it (what follows reads back).
    assert names[names.index("served_check") + 1] == "journal_write" and names.index("served_check") > names.index("service_restart")
    assert names[names.index("journal_write") + 1:names.index("journal_write") + 2] == ["discover"] and "renew" not in host.journals

    # The restarted service does not serve what it should: the journal stays for the next run, the change is rolled back.
    host, _old, new = bound_host()
    host.journals["renew"] = json.dumps({"run_id": "run-1", "step": "renewed"})

    def broken_web_server_once(h: Any) -> None:
        h.http_status = 500 if h.restarts == 1 else 200

    host.after_start.append(broken_web_server_once)
    result = Steps(host).run("xu_tls_binding", args | {"web_certificate": new, "config_server_certificate": new}, removal)
    assert result["failed"] is True and result["rolled_back"] is True, result["msg"]
    assert "renew" in host.journals


def test_a_host_another_run_holds_is_left_alone() -> None:
    host, old, new = bound_host()
    lease = iso(utc_now() + datetime.timedelta(minutes=20))
    held = json.dumps({"run_id": "run-a", "step": "tls_off", "lease_expires": lease})
    host.journals["renew"] = held
    result = Steps(host).run("xu_tls_binding", {"web_certificate": new, "run_id": "run-b"}, JOURNAL)
    assert result["failed"] is True and result["busy"] is True and result["owner"]["run_id"] == "run-a"
    assert len(host.calls) == 1 and host.journals["renew"] == held and old in (host.file(TLS) or "")


def test_the_gate_and_the_hold_close_and_open_in_one_call_each() -> None:
    host = FirewallFakeHost()
    steps = Steps(host)
    read(steps)
    closed = steps.run("xu_firewall_gate", {"state": "closed", "hold": {"state": "closed", "ports": [8065]}, "run_id": "run-1"}, JOURNAL)
    assert not closed.get("failed"), closed
    assert len(host.calls) == 2 and guarded(host.calls[1])[:2] == ["journal_write", "fw_set"]
    assert closed["state"] == "closed" and closed["hold"]["state"] == "closed" and closed["hold"]["ports"] == [8065]
    assert closed["hold"]["rule_group"] == "xtractuniversal.tls gate http" and closed["hold"]["auto_open"] is None
    assert closed["auto_open"] is not None

    opened = steps.run("xu_firewall_gate", {"state": "open", "hold": {"state": "open"}, "run_id": "run-1"}, JournalRide("renew", "absent", None, None))
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
    from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu import _tls_binding  # noqa: PLC0415

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
    from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu import _cert_swap  # noqa: PLC0415

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
    journal = JournalRide("renew", "present", {"step": "tls_off", "backup_files": {tls_path: run_first}}, 30)
    result = Steps(host).run("xu_tls_binding", {"web_certificate": new, "config_server_certificate": new, "run_id": "run-1"}, journal)
    assert not result.get("failed"), result
    removed = [op["args"]["path"] for op in host.calls[1] if op["op"] == "file_remove"]
    # 12 old + 1 new: the 9 newest old ones stay with the new one, the oldest 3 go, except the run's own.
    assert removed == old_backups[1:3]
    assert host.file(run_first) is not None and all(host.file(b) is None for b in removed) and host.file(result["backup_file"]) is not None
    names = ops(host.calls[1])
    # The oldest backups go last of the change, once everything else is done (what follows reads back).
    assert names[names.index("event_write") + 1:names.index("event_write") + 4] == ["file_remove", "file_remove", "discover"]
    assert host.file("config\\servers\\tls.json.20250101T000000000000Z.bakup") is not None


def test_a_guard_that_cannot_check_fails_the_step_as_a_failure_not_a_stale_decision() -> None:
    host, old, new = bound_host()
    steps = Steps(host)
    read(steps)
    host.errors["file_check"] = {"type": "UnauthorizedAccessException", "message": "Access is denied."}
    before = dict(host.files)
    result = steps.run("xu_tls_binding", {"web_certificate": new, "run_id": "run-b"}, JOURNAL)
    assert result["failed"] is True and not isinstance(result["error"], StaleState)
    assert result["msg"] == "Checking the settings files before the change failed (UnauthorizedAccessException: Access is denied.); nothing was changed"
    assert len(host.calls) == 2 and host.files == before and "renew" not in host.journals and old in (host.file(TLS) or "")
