from __future__ import annotations

import json

from support.action import run_action
from support.fake_host import FakeHost

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
