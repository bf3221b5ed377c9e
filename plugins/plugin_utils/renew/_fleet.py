# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The renew run's outcome across the fleet: batches that stop the run, the table, the totals. Private to this collection.

Ansible's own ``max_fail_percentage`` (and a batch that fails whole) ends the playbook, so the
fleet summary, the AWX totals and the hosts never attempted would vanish with it. The renew
playbook therefore keeps every host in the play: a host's failure is recorded in its summary,
each batch checks the batches before it (``batch_halt``), and a last play reports on every
host targeted and fails the ones that were due but not renewed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._unreachable import AUTHENTICATION_FAILED
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.report._text_table import column_lines, note_lines, outside_limit_line

# Results of a host that count against the run's later batches: it was attempted and did not end well.
BATCH_FAILURES = frozenset({"failed", "unreachable"})
# The result of a host that a halted run left alone.
NOT_ATTEMPTED = "not_attempted"
# Results whose mode and strategy say how the host was changed.
ACTED = frozenset({"renewed", "tls_enabled", "failed", "completed", "rolled_back"})
REASON_INDENT = "  "
# A canary, then the rest at once: each host's steps are remote calls of one task, so a lockout does not grow with
# the batch (docs/renew.md, Benchmark).
CANARY_THEN_THE_REST: tuple[int | str, ...] = (1, "100%")
_WHOLE_NUMBER = re.compile(r"[0-9]+")
_PERCENT = re.compile(r"([0-9]+)%")
# Commas, white space, and the quotes of a list written out in one string.
_SIZE_SEPARATORS = re.compile(r"""[\s,'"]+""")


class BatchesError(ValueError):
    """A variable of the renew playbook (xu_renew_serial, xu_renew_fail_on_blocked) that cannot be read; the message names it."""


def _batch_size(value: Any, given: Any) -> int | str:
    problem = BatchesError(
        f"xu_renew_serial must be a batch size or a list of them, each a number of hosts from 1 or a percentage from"
        f" 1% to 100% (for example 3, or 1,10%,100%), not {given!r}"
    )
    if isinstance(value, bool):
        raise problem
    if isinstance(value, int):
        if value < 1:
            raise problem
        return value
    if not isinstance(value, str):
        raise problem
    text = value.strip()
    if _WHOLE_NUMBER.fullmatch(text) and int(text) >= 1:
        return int(text)
    percent = _PERCENT.fullmatch(text)
    if percent and 1 <= int(percent.group(1)) <= 100:
        return f"{int(percent.group(1))}%"
    raise problem


def batch_sizes(serial: Any) -> list[int | str]:
    """The renew play's ``serial``: ``xu_renew_serial`` as Ansible's batch sizes, or the default (a canary, then the rest).

    Extra vars and AWX survey answers are strings, and ansible-core fails on a string that is not
    one whole number with an unexpected exception: ``3``, ``1,3``, ``1 10% 100%`` and a list
    written out in one string, ``[1, "100%"]``, all become the list Ansible takes.
    """
    if serial is None or (isinstance(serial, str) and not serial.strip()):
        return list(CANARY_THEN_THE_REST)
    values: Any = serial
    if isinstance(serial, str):
        text = serial.strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        entries = text.split(",")
        # "1," is what -e "xu_renew_serial=1, 3" leaves (the space ends the value): a comma with no size is an error.
        if len(entries) > 1 and any(not _SIZE_SEPARATORS.sub("", entry) for entry in entries):
            raise BatchesError(
                f"xu_renew_serial {serial!r} has a comma without a batch size next to it; with -e, quote the whole value"
                " (-e 'xu_renew_serial=1,3'): a space ends it"
            )
        values = [part for part in _SIZE_SEPARATORS.split(text) if part]
    elif not isinstance(serial, (list, tuple)):
        values = [serial]
    if not values:
        raise BatchesError(f"xu_renew_serial must name at least one batch size, not {serial!r}")
    return [_batch_size(value, serial) for value in values]


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _result(summaries: Mapping[str, Mapping[str, Any]], host: str) -> str:
    """A host's result; a host of an earlier batch without a summary was lost on the way."""
    return _text(summaries.get(host, {}).get("result") or "unreachable")


def batch_halt(
    batches: Mapping[str, Sequence[str]],
    summaries: Mapping[str, Mapping[str, Any]],
    current: Sequence[str],
    max_fail_percentage: int,
) -> str | None:
    """Why this batch must not start (the earlier batches failed more than allowed), or None.

    ``batches`` maps each host that started in the play to the hosts of its batch, ``summaries``
    the hosts that finished to their summaries. A host of an earlier batch without a summary
    was lost on the way (unreachable) and counts as failed. The first batch is the canary.

    The failed hosts are counted over all the earlier batches together, against all the hosts they
    attempted, not over the last batch alone: with small batches a per-batch check would stop the
    run at the first failure (one host of three is 33 %). A batch whose hosts all failed stops the
    run too, however many hosts did well before it, as Ansible's own check would. Only 100 percent
    lets every batch start.
    """
    if max_fail_percentage >= 100:
        return None
    this_batch = set(current)
    # The batch a host noted (ansible_play_batch) shrinks once a host of it ended, so batch-mates may have noted
    # different lists: lists that share a host are one batch, and one sharing a host with this batch is this one.
    # Every host of a batch maps to its list: each distinct list is merged once.
    earlier: list[list[str]] = []
    lists_seen: set[tuple[str, ...]] = set()
    for batch in batches.values():
        if not batch or tuple(batch) in lists_seen or this_batch.intersection(batch):
            continue
        lists_seen.add(tuple(batch))
        touching = [members for members in earlier if not set(members).isdisjoint(batch)]
        merged = list(dict.fromkeys([*(host for members in touching for host in members), *batch]))
        earlier = [members for members in earlier if members not in touching] + [merged]
    # A host this check left alone was not attempted: counting it would dilute the rate until a halted run started again.
    attempted_batches = [[host for host in members if _result(summaries, host) != NOT_ATTEMPTED] for members in earlier]
    attempted = [host for members in attempted_batches for host in members]
    failed = [host for host in attempted if _result(summaries, host) in BATCH_FAILURES]
    failed_hosts = set(failed)
    whole = next((members for members in attempted_batches if members and failed_hosts.issuperset(members)), None)
    exceeded = len(failed) * 100 > max_fail_percentage * len(attempted)
    if not failed or not (exceeded or whole):
        return None
    who = ", ".join(sorted(failed))
    if len(attempted) == 1:
        return f"not attempted: the canary ({who}) failed; the run stops after a failed canary"
    if whole and not exceeded:
        return f"not attempted: every host of an earlier batch failed ({', '.join(sorted(whole))}); the run stops after a batch that failed whole"
    return (
        f"not attempted: {len(failed)} of the {len(attempted)} hosts of the earlier batches failed ({who}), more than"
        f" xu_renew_max_fail_percentage ({max_fail_percentage}%) allows"
    )


@dataclass(frozen=True)
class HostOutcome:
    """One host's line of the fleet summary."""

    host: str
    result: str
    reason: str
    summary: Mapping[str, Any]

    def cells(self) -> tuple[str, ...]:
        summary = self.summary
        outage = summary.get("outage_s")
        mode = f"{summary.get('mode')}/{summary.get('strategy')}" if self.result in ACTED and summary.get("mode") else ""
        return (
            self.host,
            self.result,
            short_thumbprint(summary.get("old_thumbprint")),
            short_thumbprint(summary.get("new_thumbprint")),
            _text(summary.get("new_expiry")) or "-",
            "-" if outage is None else f"{float(outage):.1f}",
            mode,
        )


def short_thumbprint(thumbprint: Any) -> str:
    text = _text(thumbprint)
    return f"{text[:4]}..{text[-4:]}" if text else "-"


def summary_of(result: Mapping[str, Any], assessment: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """A host's summary: its act phase's, else its assessment's (a host with nothing to do); None when it has neither."""
    for source in (result, assessment):
        summary = source.get("summary") if isinstance(source, Mapping) else None
        if isinstance(summary, Mapping) and summary.get("result"):
            return summary
    return None


def fleet_outcomes(group_hosts: Sequence[str], targeted: Sequence[str], summaries: Mapping[str, Any]) -> list[HostOutcome]:
    """Every host targeted, in name order: its summary's result, or why there is none. Hosts of the group that --limit
    left out are counted, not listed."""
    outcomes = []
    for host in sorted(set(targeted)):
        summary = summaries.get(host)
        if isinstance(summary, Mapping) and summary.get("result"):
            outcomes.append(HostOutcome(host, str(summary["result"]), _text(summary.get("reason")), summary))

        else:
            outcomes.append(HostOutcome(host, "unreachable", "the run lost this host before it could report (unreachable or stopped)", {}))
    return outcomes


HEADINGS = ("HOST", "RESULT", "OLD", "NEW", "NEW EXPIRY", "OUTAGE S", "MODE")
RIGHT_ALIGNED = frozenset({"OUTAGE S"})
# The summary's order: what needs a person first, then what changed, then what was left alone. Each host's reason is
# printed only where it explains a problem; a fleet of 1000 stays one line a host.
RESULT_ORDER = (
    "failed", "unreachable", "not_attempted", "blocked", "busy", "rolled_back", "completed", "renewed", "tls_enabled",
    "would_renew", "would_enable_tls", "would_resume", "skipped", "not_due",
)
EXPLAINED = frozenset({"failed", "unreachable", "not_attempted", "blocked", "busy", "rolled_back", "completed", "skipped"})


def _order(outcome: HostOutcome) -> tuple[int, str]:
    rank = RESULT_ORDER.index(outcome.result) if outcome.result in RESULT_ORDER else len(RESULT_ORDER)
    return rank, outcome.host


def fleet_lines(outcomes: Sequence[HostOutcome], not_targeted: int = 0) -> list[str]:
    """The fleet summary as lines (one list item a line reads well under every callback): the counts first, then one
    line a host, grouped by result with the failures on top; columns sized to their content.

    The hosts of the group outside --limit are one line with their count, not a row each.
    """
    ordered = sorted(outcomes, key=_order)
    totals = fleet_totals(ordered)
    counts = ", ".join(f"{count} {result}" for result, count in sorted(totals.items(), key=lambda item: _order(HostOutcome("", item[0], "", {}))))
    hosts = f"{len(ordered)} host" + ("" if len(ordered) == 1 else "s")
    lines = [f"TOTAL  {hosts}: {counts}"]
    if not_targeted:
        lines.append(outside_limit_line(not_targeted))
    if not ordered:
        return lines
    header, *rows = column_lines(HEADINGS, [outcome.cells() for outcome in ordered], RIGHT_ALIGNED)
    lines.append(header)
    for outcome, row in zip(ordered, rows, strict=True):
        lines.append(row)
        if outcome.reason and outcome.result in EXPLAINED:
            lines += note_lines(outcome.reason, REASON_INDENT, REASON_INDENT * 2)

    return lines


def fleet_totals(outcomes: Sequence[HostOutcome]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for outcome in outcomes:
        totals[outcome.result] = totals.get(outcome.result, 0) + 1
    return dict(sorted(totals.items()))


def fail_on_blocked_option(value: Any) -> bool:
    """``xu_renew_fail_on_blocked``: true unless set false; empty (an AWX answer left blank, null) is the default."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return True
    try:
        return bool(boolean(value.strip() if isinstance(value, str) else value, strict=True))
    except TypeError:
        raise BatchesError(f"xu_renew_fail_on_blocked must be true or false, not {value!r}") from None


def run_failure(outcome: HostOutcome, fail_on_blocked: bool) -> str | None:
    """Why this host fails the run (each failing host fails on its own, so the recap names exactly them), or None."""
    if outcome.result == "failed":
        return outcome.reason or "failed"
    if outcome.result == "busy" and fail_on_blocked:
        # Another run holds the host: this run did not renew it, whatever that run does, and the run says so.
        return f"Busy, so not renewed by this run (see the summary above): {outcome.reason}"
    if outcome.result in ("blocked", "not_attempted") and (fail_on_blocked or outcome.result == "not_attempted"):
        return f"Due but not renewed (see the summary above): {outcome.reason}"
    if outcome.result == "unreachable":
        # Ansible counts a refused login as unreachable: the reason says "authentication failed" (_unreachable).
        cause = "Authentication failed" if outcome.reason.startswith(AUTHENTICATION_FAILED) else "Unreachable"
        return f"{cause}, so not renewed: {outcome.reason}"
    return None


def fleet_report(
    summaries: Mapping[str, Any], group_hosts: Sequence[str], targeted: Sequence[str], fail_on_blocked: bool = True
) -> dict[str, Any]:
    """What the renew playbook's last play prints, hands to AWX and fails on."""
    outcomes = fleet_outcomes(group_hosts, targeted, summaries)
    failures = {o.host: message for o in outcomes if (message := run_failure(o, fail_on_blocked)) is not None}
    lines = fleet_lines(outcomes, not_targeted=len(set(group_hosts) - set(targeted)))
    if failures:
        lines.append(f"NOT RENEWED  {', '.join(sorted(failures))}")
    return {
        "lines": lines,
        "totals": fleet_totals(outcomes),
        "results": {o.host: o.result for o in outcomes},
        "summaries": {o.host: {**o.summary, "result": o.result, "reason": o.reason} for o in outcomes},
        "failures": failures,
    }
