"""The renew run's fleet outcome: batches that stop the run, the table, the hosts that fail the run."""

from __future__ import annotations

from typing import Any

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.xtractuniversal.tls.plugins.filter.renew import renew_fleet, renew_halt, renew_plan, renew_summary
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._renew_fleet import batch_halt, fleet_report


def summary(result: str, reason: str = "", **extra: Any) -> dict[str, Any]:
    return {"result": result, "reason": reason, **extra}


CANARY = {"xu01": ["xu01"]}


def test_the_first_batch_never_halts() -> None:
    assert batch_halt({"xu01": ["xu01"]}, {}, ["xu01"], 20) is None


def test_a_failed_canary_stops_the_next_batch() -> None:
    batches = {**CANARY, "xu02": ["xu02", "xu03"], "xu03": ["xu02", "xu03"]}
    reason = batch_halt(batches, {"xu01": summary("failed")}, ["xu02", "xu03"], 20)
    assert reason is not None and "xu01" in reason


def test_a_good_canary_lets_the_next_batch_start() -> None:
    batches = {**CANARY, "xu02": ["xu02", "xu03"], "xu03": ["xu02", "xu03"]}
    assert batch_halt(batches, {"xu01": summary("renewed")}, ["xu02", "xu03"], 20) is None


def test_a_canary_with_nothing_to_do_does_not_stop_the_run() -> None:
    # A host whose interrupted run was rolled back, or that was blocked on the second read, did not fail its batch.
    for result in ("rolled_back", "completed", "blocked", "not_due"):
        assert batch_halt(CANARY, {"xu01": summary(result)}, ["xu02"], 0) is None


@pytest.mark.parametrize(("failed", "percentage", "halts"), [(1, 20, False), (2, 20, False), (3, 20, True), (1, 0, True), (10, 100, False)])
def test_max_fail_percentage_is_exceeded_only_above_it(failed: int, percentage: int, halts: bool) -> None:
    batch = [f"xu{n:02}" for n in range(1, 11)]
    summaries = {host: summary("failed" if n < failed else "renewed") for n, host in enumerate(batch)}
    reason = batch_halt(dict.fromkeys(batch, batch), summaries, ["xu11"], percentage)
    assert (reason is not None) is halts
    if halts:
        assert f"{failed} of 10" in str(reason) and "xu_renew_max_fail_percentage" in str(reason)


def test_a_host_lost_on_the_way_counts_as_failed() -> None:
    # It started (it noted its batch) but never wrote a summary: the connection dropped for good.
    assert batch_halt(CANARY, {}, ["xu02"], 20) is not None


def test_outcomes_cover_the_group_and_the_limit() -> None:
    report = fleet_report({"xu02": summary("renewed", old_thumbprint="A" * 40, new_thumbprint="B" * 40, outage_s=1.04)},
                          ["xu01", "xu02", "xu03"], ["xu02", "xu03"])
    assert report["results"] == {"xu01": "not_targeted", "xu02": "renewed", "xu03": "unreachable"}
    assert report["totals"] == {"not_targeted": 1, "renewed": 1, "unreachable": 1}
    assert set(report["failures"]) == {"xu03"}


def test_the_table_is_as_wide_as_its_content() -> None:
    long_name = "xu-frankfurt-prod-01.sap.example.com"
    lines = fleet_report({long_name: summary("not_due"), "xu02": summary("blocked", "no PFX")}, [long_name, "xu02"], [long_name, "xu02"])["lines"]
    header, first, second = lines[0], lines[1], lines[2]
    assert header.startswith("HOST" + " " * (len(long_name) - 4 + 2) + "RESULT")
    assert first.startswith(long_name + "  not_due")
    # A column's cells start where its heading does.
    assert second.index("blocked") == header.index("RESULT")
    assert lines[3] == "  no PFX"
    assert lines[-2] == "TOTAL  1 blocked, 1 not_due"
    assert lines[-1] == "NOT RENEWED  xu02"


@pytest.mark.parametrize(
    ("result", "fail_on_blocked", "fails"),
    [("failed", True, True), ("blocked", True, True), ("blocked", False, False), ("not_attempted", False, True),
     ("unreachable", True, True), ("renewed", True, False), ("not_due", True, False), ("rolled_back", True, False),
     ("would_renew", True, False), ("skipped", True, False)],
)
def test_which_results_fail_the_run(result: str, fail_on_blocked: bool, fails: bool) -> None:
    report = fleet_report({"xu01": summary(result, "why")}, ["xu01"], ["xu01"], fail_on_blocked)
    assert ("xu01" in report["failures"]) is fails


def test_a_blocked_host_s_message_says_it_was_due() -> None:
    report = fleet_report({"xu01": summary("blocked", "expires in 3 days; set xu_renew_pfx_path")}, ["xu01"], ["xu01"])
    assert report["failures"]["xu01"] == "Due but not renewed (see the summary above): expires in 3 days; set xu_renew_pfx_path"


def test_filters_take_what_ansible_hands_them() -> None:
    assert renew_halt({}, {"xu01": ["xu01"]}, ["xu01"], "20") == {"halt": False, "reason": None}
    assert renew_fleet({"xu01": summary("blocked")}, ["xu01"], ["xu01"], "false")["failures"] == {}
    with pytest.raises(AnsibleFilterError, match="xu_renew_max_fail_percentage"):
        renew_halt({}, {}, [], "most")
    with pytest.raises(AnsibleFilterError, match="xu_renew_fail_on_blocked"):
        renew_fleet({}, [], [], "perhaps")
    with pytest.raises(AnsibleFilterError):
        renew_halt({}, {"xu01": "xu01"}, [], 20)


@pytest.mark.parametrize(
    ("read", "result"),
    [({"unreachable": True, "msg": "timed out"}, "unreachable"), ({"failed": True, "msg": "The agent failed on the host (rc=1)"}, "failed")],
)
def test_a_host_that_cannot_be_read_is_reported_not_dropped(read: dict[str, Any], result: str) -> None:
    plan = renew_plan(read, "replace")
    assert plan["action"] in ("unreachable", "unreadable") and not plan["gate_closed"]
    reported = renew_summary(plan, info=read)
    assert reported["result"] == result
    assert str(read["msg"]) in reported["reason"]


def test_long_reasons_wrap_without_breaking_a_thumbprint() -> None:
    reason = "renewed: the web server certificate " + "C" * 40 + " expires in 9 days (2026-12-08T18:52:47Z), fewer than 30"
    lines = fleet_report({"xu01": summary("renewed", reason)}, ["xu01"], ["xu01"])["lines"]
    wrapped = lines[2:-1]
    assert len(wrapped) > 1 and all(len(line) <= 76 for line in wrapped)
    assert any("C" * 40 in line for line in wrapped)
    assert " ".join(line.strip() for line in wrapped) == reason
