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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._text_table import column_lines, note_lines

# Results of a host that count against its batch: it was attempted and did not end well.
BATCH_FAILURES = frozenset({"failed", "unreachable"})
# Results whose mode and strategy say how the host was changed.
ACTED = frozenset({"renewed", "tls_enabled", "failed", "completed", "rolled_back"})
REASON_INDENT = "  "


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def batch_halt(
    batches: Mapping[str, Sequence[str]],
    summaries: Mapping[str, Mapping[str, Any]],
    current: Sequence[str],
    max_fail_percentage: int,
) -> str | None:
    """Why this batch must not start (an earlier batch failed more than allowed), or None.

    ``batches`` maps each host that started in the play to the hosts of its batch, ``summaries``
    the hosts that finished to their summaries. A host of an earlier batch without a summary
    was lost on the way (unreachable) and counts as failed. The first batch is the canary.
    """
    earlier: list[tuple[str, ...]] = []
    for batch in batches.values():
        members = tuple(batch)
        if members and set(members) != set(current) and members not in earlier:
            earlier.append(members)
    for members in earlier:
        failed = [host for host in members if _text(summaries.get(host, {}).get("result") or "unreachable") in BATCH_FAILURES]
        if failed and len(failed) * 100 > max_fail_percentage * len(members):
            who = ", ".join(sorted(failed))
            if len(members) == 1:
                return f"not attempted: the batch before this one ({who}) failed; the run stops after a failed canary or batch"
            return (
                f"not attempted: {len(failed)} of {len(members)} hosts of an earlier batch failed ({who}), more than"
                f" xu_renew_max_fail_percentage ({max_fail_percentage}%) allows"
            )
    return None


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


def fleet_outcomes(group_hosts: Sequence[str], targeted: Sequence[str], summaries: Mapping[str, Any]) -> list[HostOutcome]:
    """Every host of the group, in name order: its summary's result, or why there is none."""
    outcomes = []
    for host in sorted(set(group_hosts) | set(targeted)):
        summary = summaries.get(host)
        if isinstance(summary, Mapping) and summary.get("result"):
            outcomes.append(HostOutcome(host, str(summary["result"]), _text(summary.get("reason")), summary))
        elif host not in targeted:
            outcomes.append(HostOutcome(host, "not_targeted", "", {}))
        else:
            outcomes.append(HostOutcome(host, "unreachable", "the run lost this host before it could report (unreachable or stopped)", {}))
    return outcomes


HEADINGS = ("HOST", "RESULT", "OLD", "NEW", "NEW EXPIRY", "OUTAGE S", "MODE")
RIGHT_ALIGNED = frozenset({"OUTAGE S"})


def fleet_lines(outcomes: Sequence[HostOutcome]) -> list[str]:
    """The fleet summary as lines (one list item a line reads well under every callback): columns sized to their content."""
    header, *rows = column_lines(HEADINGS, [outcome.cells() for outcome in outcomes], RIGHT_ALIGNED)
    lines = [header]
    for outcome, row in zip(outcomes, rows, strict=True):
        lines.append(row)
        if outcome.reason and outcome.result != "not_due":
            lines += note_lines(outcome.reason, REASON_INDENT, REASON_INDENT * 2)
    totals = fleet_totals(outcomes)
    lines.append("TOTAL  " + ", ".join(f"{count} {result}" for result, count in totals.items()))
    return lines


def fleet_totals(outcomes: Sequence[HostOutcome]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for outcome in outcomes:
        totals[outcome.result] = totals.get(outcome.result, 0) + 1
    return dict(sorted(totals.items()))


def run_failure(outcome: HostOutcome, fail_on_blocked: bool) -> str | None:
    """Why this host fails the run (each failing host fails on its own, so the recap names exactly them), or None."""
    if outcome.result == "failed":
        return outcome.reason or "failed"
    if outcome.result in ("blocked", "not_attempted") and (fail_on_blocked or outcome.result == "not_attempted"):
        return f"Due but not renewed (see the summary above): {outcome.reason}"
    if outcome.result == "unreachable":
        return f"Unreachable, so neither assessed nor renewed: {outcome.reason}"
    return None


def fleet_report(
    summaries: Mapping[str, Any], group_hosts: Sequence[str], targeted: Sequence[str], fail_on_blocked: bool = True
) -> dict[str, Any]:
    """What the renew playbook's last play prints, hands to AWX and fails on."""
    outcomes = fleet_outcomes(group_hosts, targeted, summaries)
    failures = {o.host: message for o in outcomes if (message := run_failure(o, fail_on_blocked)) is not None}
    lines = fleet_lines(outcomes)
    if failures:
        lines.append(f"NOT RENEWED  {', '.join(failures)}")
    return {
        "lines": lines,
        "totals": fleet_totals(outcomes),
        "results": {o.host: o.result for o in outcomes},
        "failures": failures,
    }
