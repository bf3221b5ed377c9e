"""The renew run's fleet outcome: batches that stop the run, the table, the hosts that fail the run."""

from __future__ import annotations

from typing import Any

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.xtractuniversal.tls.plugins.filter.renew import renew_batches, renew_fleet, renew_halt
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._fleet import BatchesError, batch_halt, batch_sizes, fleet_report
from support.renew_decisions import renew_plan, renew_summary


def summary(result: str, reason: str = "", **extra: Any) -> dict[str, Any]:
    return {"result": result, "reason": reason, **extra}


CANARY = {"xu01": ["xu01"]}


def test_the_first_batch_never_halts() -> None:
    assert batch_halt({"xu01": ["xu01"]}, {}, ["xu01"], 20) is None


def test_a_failed_canary_stops_the_next_batch() -> None:
    batches = {**CANARY, "xu02": ["xu02", "xu03"], "xu03": ["xu02", "xu03"]}
    reason = batch_halt(batches, {"xu01": summary("failed")}, ["xu02", "xu03"], 20)
    assert reason == "not attempted: the canary (xu01) failed; the run stops after a failed canary"


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
        assert f"{failed} of the 10 hosts of the earlier batches failed" in str(reason) and "xu_renew_max_fail_percentage" in str(reason)


def batches_of(*sizes: int) -> tuple[dict[str, list[str]], list[list[str]]]:
    """The batches map of a run cut into batches of ``sizes`` (xu01, xu02, ... in order), and the batches."""
    cut: list[list[str]] = []
    number = 1
    for size in sizes:
        cut.append([f"xu{n:02}" for n in range(number, number + size)])
        number += size
    return {host: batch for batch in cut for host in batch}, cut


def test_the_failures_of_all_earlier_batches_count_together() -> None:
    # A canary, then batches of three with one failure each: each batch alone is 33 % failed, but the run has
    # failed 2 of 7 hosts (28.6 %), then 3 of 10 (30 %): within 30 %, so the run goes on.
    batches, cut = batches_of(1, 3, 3, 3)
    summaries = {host: summary("renewed") for host in batches}
    for failed in ("xu02", "xu05", "xu08"):
        summaries[failed] = summary("failed")
    assert batch_halt({h: b for h, b in batches.items() if h < "xu08"}, summaries, cut[2], 30) is None
    assert batch_halt(batches, summaries, ["xu11"], 30) is None
    # One more failure makes it 4 of 10: more than 30 %.
    summaries["xu09"] = summary("unreachable")
    reason = batch_halt(batches, summaries, ["xu11"], 30)
    assert reason == ("not attempted: 4 of the 10 hosts of the earlier batches failed (xu02, xu05, xu08, xu09),"
                      " more than xu_renew_max_fail_percentage (30%) allows")


def test_an_early_failure_weighs_more_than_a_late_one() -> None:
    # The rate is judged on the hosts attempted so far: one failure in the first batch after the canary is 1 of 4.
    batches, _cut = batches_of(1, 3)
    summaries = {host: summary("failed" if host == "xu03" else "renewed") for host in batches}
    assert batch_halt(batches, summaries, ["xu05"], 20) is not None
    # The same failure after 12 good hosts is 1 of 13.
    batches, _cut = batches_of(1, 9, 3)
    summaries = {host: summary("failed" if host == "xu12" else "renewed") for host in batches}
    assert batch_halt(batches, summaries, ["xu14"], 20) is None


def test_a_halted_run_stays_halted() -> None:
    # 2 of 4 failed, so the third batch was left alone; its hosts were not attempted and do not dilute the rate.
    batches, _cut = batches_of(1, 3, 3, 3)
    summaries = {host: summary("renewed") for host in batches}
    summaries.update({"xu02": summary("failed"), "xu03": summary("failed")})
    summaries.update({host: summary("not_attempted", "not attempted: ...") for host in ("xu05", "xu06", "xu07", "xu08", "xu09", "xu10")})
    reason = batch_halt(batches, summaries, ["xu11"], 20)
    assert reason is not None and "2 of the 4 hosts" in reason


def test_a_batch_that_failed_whole_stops_the_run() -> None:
    # 3 of 13 is within 30 %, but every host of the last batch failed: something changed, the run stops.
    batches, _cut = batches_of(1, 9, 3)
    summaries = {host: summary("failed" if host in ("xu11", "xu12", "xu13") else "renewed") for host in batches}
    reason = batch_halt(batches, summaries, ["xu14"], 30)
    assert reason == "not attempted: every host of an earlier batch failed (xu11, xu12, xu13); the run stops after a batch that failed whole"
    # A batch with a host left alone by an earlier halt judges the hosts it attempted.
    summaries["xu13"] = summary("not_attempted")
    assert batch_halt(batches, summaries, ["xu14"], 30) is not None
    # Only 100 percent lets every batch start.
    assert batch_halt(batches, summaries, ["xu14"], 100) is None


def test_only_100_percent_goes_on_after_a_failed_canary() -> None:
    assert batch_halt(CANARY, {"xu01": summary("failed")}, ["xu02"], 99) is not None
    assert batch_halt(CANARY, {"xu01": summary("failed")}, ["xu02"], 100) is None


def test_batch_mates_that_noted_a_smaller_batch_are_one_batch() -> None:
    # xu02 ended (or was lost) before xu03 and xu04 noted their batch: ansible_play_batch had shrunk.
    batches = {"xu01": ["xu01"], "xu03": ["xu03", "xu04"], "xu04": ["xu03", "xu04"], "xu02": ["xu02", "xu03", "xu04"]}
    summaries = {"xu01": summary("renewed"), "xu02": summary("failed"), "xu03": summary("renewed"), "xu04": summary("renewed")}
    # One batch of three with one failure, not a batch of one that failed whole: 1 of 4, within 30 %.
    assert batch_halt(batches, summaries, ["xu05"], 30) is None
    # Seen from inside that batch, while its hosts are still running, nothing of it counts.
    running = {"xu01": summary("renewed")}
    assert batch_halt(batches, running, ["xu03", "xu04"], 0) is None
    assert batch_halt(batches, running, ["xu02", "xu03", "xu04"], 0) is None


def test_the_current_batch_does_not_count() -> None:
    # Hosts of this batch that already finished (a free strategy lets them) are not an earlier batch's.
    batches, cut = batches_of(1, 3)
    summaries = {"xu01": summary("renewed"), "xu02": summary("failed"), "xu03": summary("failed")}
    assert batch_halt(batches, summaries, cut[1], 0) is None


def test_a_host_lost_on_the_way_counts_as_failed() -> None:
    # It started (it noted its batch) but never wrote a summary: the connection dropped for good.
    assert batch_halt(CANARY, {}, ["xu02"], 20) is not None


def test_the_default_batches_are_a_canary_then_the_rest() -> None:
    # Each host's steps are remote calls of one task: a lockout does not grow with the batch, whatever the mode.
    assert batch_sizes(None) == batch_sizes("  ") == renew_batches(None) == renew_batches("") == [1, "100%"]


@pytest.mark.parametrize(
    ("serial", "batches"),
    [(3, [3]), ("3", [3]), ("1,3", [1, 3]), ("1, 10%, 100%", [1, "10%", "100%"]), ("1 5\n20%", [1, 5, "20%"]),
     ('[1, "100%"]', [1, "100%"]), ("[1, '10%']", [1, "10%"]), ("[1, 010]", [1, 10]), ([1, "3", " 50% "], [1, 3, "50%"]),
     (["1", 2], [1, 2]), ("007%", ["7%"])],
)
def test_batches_given_as_strings_become_ansible_s_list(serial: Any, batches: list[int | str]) -> None:
    assert batch_sizes(serial) == batches


@pytest.mark.parametrize(
    "serial", [0, "0", -1, "-1", "1,0", "0%", "101%", "1.5", "10.5%", "many", "\u00b2", "1,\u00b2", True, [], "[]", "[1, [2]]", {"a": 1}, 2.0,
               # -e "xu_renew_serial=1, 3" ends the value at the space: "1," must not pass for "1".
               "1,", "1,,3", ",1", "[1,]"])
def test_a_wrong_batch_size_names_the_variable(serial: Any) -> None:
    with pytest.raises(BatchesError, match="xu_renew_serial"):
        batch_sizes(serial)
    with pytest.raises(AnsibleFilterError, match="xu_renew_serial"):
        renew_batches(serial)


def test_outcomes_cover_the_targeted_hosts_and_count_the_rest_of_the_group() -> None:
    report = fleet_report({"xu02": summary("renewed", old_thumbprint="A" * 40, new_thumbprint="B" * 40, outage_s=1.04)},
                          ["xu01", "xu02", "xu03", "xu04"], ["xu02", "xu03"])
    assert report["results"] == {"xu02": "renewed", "xu03": "unreachable"}
    assert report["totals"] == {"renewed": 1, "unreachable": 1}
    assert set(report["failures"]) == {"xu03"}
    # --limit: one line with the count, not a row for each host left out.
    assert report["lines"][:2] == ["TOTAL  2 hosts: 1 unreachable, 1 renewed", "NOT TARGETED  2 hosts of the group are outside --limit (AWX: Limit)"]
    assert not any(line.startswith(("xu01", "xu04")) for line in report["lines"])


def test_the_summary_puts_the_counts_first_and_failures_on_top_one_line_a_host() -> None:
    hosts = [f"xu{n:03}" for n in range(1, 1001)]
    summaries = {host: summary("renewed", "renewed: due", outage_s=1.0) for host in hosts}
    summaries["xu500"] = summary("failed", "step tls_on failed: the service did not come back")
    summaries["xu007"] = summary("not_due", "not due")
    lines = fleet_report(summaries, hosts, hosts)["lines"]
    assert lines[0] == "TOTAL  1000 hosts: 1 failed, 998 renewed, 1 not_due"
    assert lines[2].split()[:2] == ["xu500", "failed"] and lines[3] == "  step tls_on failed: the service did not come back"
    assert lines[4].split()[:2] == ["xu001", "renewed"] and lines[-2].split()[:2] == ["xu007", "not_due"]
    # Every host one line, the failed one with its reason below it, and the hosts that fail the run last.
    assert len(lines) == 1 + 1 + 1000 + 1 + 1 and lines[-1] == "NOT RENEWED  xu500"


def test_the_hosts_outside_the_limit_are_one_line() -> None:
    group = [f"xu{number:03}" for number in range(1, 201)]
    lines = fleet_report({"xu007": summary("renewed", new_thumbprint="B" * 40)}, group, ["xu007"])["lines"]
    assert lines[:2] == ["TOTAL  1 host: 1 renewed", "NOT TARGETED  199 hosts of the group are outside --limit (AWX: Limit)"]
    assert not [line for line in lines if "not_targeted" in line]
    # The counts, the group's remainder, the heading and the one host.
    assert len(lines) == 4


def test_the_table_is_as_wide_as_its_content() -> None:
    long_name = "xu-frankfurt-prod-01.sap.example.com"
    lines = fleet_report({long_name: summary("not_due"), "xu02": summary("blocked", "no PFX")}, [long_name, "xu02"], [long_name, "xu02"])["lines"]
    total, header, blocked, why, not_due = lines[0], lines[1], lines[2], lines[3], lines[4]
    assert total == "TOTAL  2 hosts: 1 blocked, 1 not_due"
    assert header.startswith("HOST" + " " * (len(long_name) - 4 + 2) + "RESULT")
    assert not_due.startswith(long_name + "  not_due")
    # A column's cells start where its heading does.
    assert blocked.index("blocked") == header.index("RESULT")
    assert why == "  no PFX"
    assert lines[-1] == "NOT RENEWED  xu02"


@pytest.mark.parametrize(
    ("result", "fail_on_blocked", "fails"),
    [("failed", True, True), ("blocked", True, True), ("blocked", False, False), ("not_attempted", False, True),
     ("unreachable", True, True), ("renewed", True, False), ("not_due", True, False), ("rolled_back", True, False),
     ("would_renew", True, False), ("skipped", True, False), ("busy", True, True), ("busy", False, False)],
)
def test_which_results_fail_the_run(result: str, fail_on_blocked: bool, fails: bool) -> None:
    report = fleet_report({"xu01": summary(result, "why")}, ["xu01"], ["xu01"], fail_on_blocked)
    assert ("xu01" in report["failures"]) is fails


def test_a_blocked_host_s_message_says_it_was_due() -> None:
    report = fleet_report({"xu01": summary("blocked", "expires in 3 days; set xu_renew_pfx_path")}, ["xu01"], ["xu01"])
    assert report["failures"]["xu01"] == "Due but not renewed (see the summary above): expires in 3 days; set xu_renew_pfx_path"


def test_filters_take_what_ansible_hands_them() -> None:
    acted = {"xu01": {"summary": summary("failed")}, "xu02": {}, "xu03": {}}
    halts = {"xu01": {"batch": ["xu01"]}, "xu02": {}, "xu03": {}}
    assert renew_halt({}, ["xu01"], "20") == {"halt": False, "reason": None, "batch": ["xu01"]}
    assert renew_halt(acted, ["xu02", "xu03"], "20", halts)["halt"] is True
    # An AWX survey's empty answer means the documented default (20).
    assert renew_halt(acted, ["xu02", "xu03"], None, halts)["halt"] is True
    assert renew_halt(acted, ["xu02", "xu03"], "", halts)["halt"] is True
    assert renew_halt(acted, ["xu02", "xu03"], "100", halts)["halt"] is False
    pairs = {"xu01": ({}, {"summary": summary("blocked")}), "xu02": ({"summary": summary("renewed")}, {"summary": summary("renewed")})}
    assert renew_fleet(pairs, ["xu01", "xu02"], ["xu01", "xu02"], "false")["failures"] == {}
    assert renew_fleet(pairs, ["xu01", "xu02"], ["xu01", "xu02"])["results"] == {"xu01": "blocked", "xu02": "renewed"}
    # Empty (an AWX answer left blank, null on ansible-core 2.19+) is the default: a blocked host fails the run.
    assert set(renew_fleet(pairs, ["xu01", "xu02"], ["xu01", "xu02"], None)["failures"]) == {"xu01"}
    assert set(renew_fleet(pairs, ["xu01", "xu02"], ["xu01", "xu02"], "")["failures"]) == {"xu01"}
    with pytest.raises(AnsibleFilterError, match="xu_renew_max_fail_percentage"):
        renew_halt({}, [], "most")
    with pytest.raises(AnsibleFilterError, match="xu_renew_fail_on_blocked"):
        renew_fleet({}, [], [], "perhaps")
    with pytest.raises(AnsibleFilterError):
        renew_halt({}, "xu01", 20)


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
    lines = fleet_report({"xu01": summary("blocked", reason)}, ["xu01"], ["xu01"])["lines"]
    wrapped = lines[3:-1]
    assert len(wrapped) > 1 and all(len(line) <= 76 for line in wrapped)
    assert any("C" * 40 in line for line in wrapped)
    assert " ".join(line.strip() for line in wrapped) == reason
