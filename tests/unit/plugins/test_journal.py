from __future__ import annotations

import datetime
import json
from collections.abc import Callable

import pytest

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host import _agent
from support.action import run_action
from support.fake_host import FakeHost, intercept

CONTENT = {"step": "gate_closed", "old_thumbprint": "AB" * 20}


def test_write_then_idempotent_then_remove() -> None:
    host = FakeHost()
    result = run_action("xu_journal", {"content": CONTENT}, host, diff=True)
    assert result["changed"] is True and result["previous"] is None
    assert json.loads(host.journals["renew"]) == CONTENT
    assert result["diff"]["before"] == "" and '"step": "gate_closed"' in result["diff"]["after"]
    assert [[op["op"] for op in call] for call in host.calls] == [["journal_read"], ["journal_write"]]

    again = run_action("xu_journal", {"content": CONTENT}, host)
    assert again["changed"] is False and again["previous"] == CONTENT
    assert len(host.calls) == 3

    removed = run_action("xu_journal", {"state": "absent"}, host)
    assert removed["changed"] is True and "renew" not in host.journals
    assert run_action("xu_journal", {"state": "absent"}, host)["changed"] is False


def test_check_mode_writes_nothing() -> None:
    host = FakeHost()
    result = run_action("xu_journal", {"content": CONTENT, "name": "other"}, host, check_mode=True)
    assert result["changed"] is True
    assert host.journals == {}
    assert [[op["op"] for op in call] for call in host.calls] == [["journal_read"]]


def test_bad_input_fails_before_any_remote_call() -> None:
    host = FakeHost()
    for args, fragment in (
        ({"name": "../evil", "content": CONTENT}, "journal name '../evil'"),
        ({}, "state is present but all of the following are missing: content"),
    ):
        result = run_action("xu_journal", args, host)
        assert result["failed"] and fragment in result["msg"], result
    assert host.calls == []


def test_unreadable_journal_is_replaced() -> None:
    host = FakeHost(journals={"renew": "not json"})
    result = run_action("xu_journal", {"content": CONTENT}, host)
    assert result["changed"] and result["previous"] == {"unreadable": "not json"}


# -- the journal as a run's lease on the host ---------------------------------------------------


def test_a_live_lease_of_another_run_leaves_the_host_alone() -> None:
    host = FakeHost()
    taken = run_action("xu_journal", {"content": CONTENT, "run_id": "run-a", "lease_minutes": 30}, host)
    assert not taken.get("failed"), taken
    journal = json.loads(host.journals["renew"])
    assert journal["run_id"] == "run-a" and journal["lease_expires"] == taken["lease_expires"]
    before = dict(host.journals)
    for args in ({"content": {"step": "other"}, "run_id": "run-b", "lease_minutes": 30}, {"state": "absent", "run_id": "run-b"},
                 {"content": {"step": "other"}}):
        busy = run_action("xu_journal", args, host)
        assert busy["failed"] and busy["busy"] is True and busy["owner"]["run_id"] == "run-a", busy
        assert "The host is busy: run run-a holds it" in busy["msg"] and host.journals == before
    # The owner goes on: its lease is renewed with each write, and it may remove the journal.
    renewed = run_action("xu_journal", {"content": {**CONTENT, "step": "tls_off"}, "run_id": "run-a", "lease_minutes": 30}, host)
    assert renewed["changed"] and json.loads(host.journals["renew"])["step"] == "tls_off"
    assert run_action("xu_journal", {"state": "absent", "run_id": "run-a"}, host)["changed"] is True


def test_an_expired_lease_may_be_taken_over() -> None:
    host = FakeHost()
    host.journals["renew"] = json.dumps({"step": "tls_off", "run_id": "run-a", "lease_expires": "2020-01-01T00:00:00Z"})
    taken = run_action("xu_journal", {"content": CONTENT, "run_id": "run-b", "lease_minutes": 30}, host)
    assert not taken.get("failed") and json.loads(host.journals["renew"])["run_id"] == "run-b", taken


def test_a_write_between_read_and_write_is_not_overwritten() -> None:
    host = FakeHost()

    def other_run_writes_first(stdin: bytes) -> None:
        if b'"journal_write"' in stdin and "renew" not in host.journals:
            host.journals["renew"] = json.dumps({"step": "started", "run_id": "run-a", "lease_expires": "2999-01-01T00:00:00Z"})

    intercept(host, other_run_writes_first)
    busy = run_action("xu_journal", {"content": CONTENT, "run_id": "run-b", "lease_minutes": 30}, host)
    assert busy["failed"] and busy["busy"] and busy["owner"]["run_id"] == "run-a", busy
    assert json.loads(host.journals["renew"])["run_id"] == "run-a"
    # The write was guarded by what was read: nothing there.
    writes = [op for call in host.calls for op in call if op["op"] == "journal_write"]
    assert writes[0]["args"]["expected_sha256"] == "absent"


def test_lease_minutes_out_of_range_fails_before_any_remote_call() -> None:
    host = FakeHost()
    for minutes in (0, 10081):
        result = run_action("xu_journal", {"content": CONTENT, "lease_minutes": minutes}, host)
        assert result["failed"] and "lease_minutes must be from 1 to 10080" in result["msg"]
    assert host.calls == []


# -- the lease is the host's: written and judged on its clock ------------------------------------


def controller_clock(monkeypatch: pytest.MonkeyPatch, ahead: datetime.timedelta) -> Callable[[], datetime.datetime]:
    """Set the controller's clock ``ahead`` of the real one (as the agent client reads it)."""
    def clock() -> datetime.datetime:
        return datetime.datetime.now(datetime.timezone.utc) + ahead

    monkeypatch.setattr(_agent, "utc_now", clock)
    return clock


def lease_of(host: FakeHost) -> datetime.datetime:
    return datetime.datetime.strptime(json.loads(host.journals["renew"])["lease_expires"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


def test_controllers_whose_clocks_differ_see_the_same_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    host = FakeHost(clock_offset_s=-20 * 60)  # the host's clock is 20 minutes behind
    taken = run_action("xu_journal", {"content": CONTENT, "run_id": "run-a", "lease_minutes": 30}, host)
    assert not taken.get("failed"), taken
    # Written on the host's clock: 30 minutes from the host's now.
    assert datetime.timedelta(minutes=29) < lease_of(host) - host.host_now() <= datetime.timedelta(minutes=30)
    # A second controller whose clock is 45 minutes ahead still finds the lease live: 30 minutes have not passed on the host.
    controller_clock(monkeypatch, datetime.timedelta(minutes=45))
    busy = run_action("xu_journal", {"content": CONTENT, "run_id": "run-b", "lease_minutes": 30}, host)
    assert busy["failed"] and busy["busy"] is True, busy
    assert json.loads(host.journals["renew"])["run_id"] == "run-a"


def test_a_lease_ends_when_the_hosts_clock_passes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    host = FakeHost(clock_offset_s=-20 * 60)
    run_action("xu_journal", {"content": CONTENT, "run_id": "run-a", "lease_minutes": 30}, host)
    # 31 minutes pass on the host (the controller's clock, meanwhile, is set back 10 minutes): the lease is over.
    host.clock_offset_s += 31 * 60
    controller_clock(monkeypatch, -datetime.timedelta(minutes=10))
    taken = run_action("xu_journal", {"content": CONTENT, "run_id": "run-b", "lease_minutes": 30}, host)
    assert not taken.get("failed"), taken
    assert json.loads(host.journals["renew"])["run_id"] == "run-b"
