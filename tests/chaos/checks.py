"""The chaos suite's checks of one scenario's host: what the runs reported, and what the host's event log and state show."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import pathlib
from typing import Any

from invariants import XU_ACCOUNT, Baseline, check_host
from labtools import PlaybookRun

from tests.chaos.chaoslab import JOURNAL, ChaosLab

# Where the playbook hands each host's summary: the act task's result (its name after the role's), and set_stats
# (xu_renew) in the last play.
SUMMARY_TASKS = ("Renew | Renew the certificate",)
# Events worth showing when a scenario fails: everything but the remote calls themselves.
QUIET_EVENTS = {"remote_call"}
# What a run that made the host serve its new certificate reports: renewed, or completed (it finished an interrupted
# run's renewal, and the host was then not due).
RENEWAL_RESULTS = ("renewed", "completed")
# The events that are no change of the host: a call itself, and the lab's own record of a fault.
NO_CHANGE_EVENTS = {"remote_call", "fault"}


@dataclasses.dataclass
class Outcome:
    """One scenario: its host, the runs it took part in, its checks and their failures."""

    sweep: str
    name: str
    host: str = ""
    runs: int = 0
    checks: int = 0
    failures: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def check(self, name: str, problems: list[str]) -> None:
        """One check: its problems, none when it held."""
        self.checks += 1
        if problems:
            self.failures.append(f"[{self.sweep} {self.name}] {name}: " + "; ".join(problems))


def summaries(run: PlaybookRun) -> dict[str, dict[str, Any]]:
    """Each host's summary: from the act task's result, else from what set_stats handed on as xu_renew."""
    found: dict[str, dict[str, Any]] = {}
    for entry in run.results:
        summary = entry["result"].get("summary")
        if any(task in entry["task"] for task in SUMMARY_TASKS) and isinstance(summary, dict):
            found[entry["host"]] = summary
    for entry in run.results:
        stats = entry["result"].get("ansible_stats", {}).get("data", {})
        for host, summary in (stats.get("xu_renew") or {}).items():
            if isinstance(summary, dict):
                found.setdefault(host, summary)
    return found


# A run that finds another run on a host reports it busy and fails for it at the end (xu_renew_fail_on_blocked): that
# is the run working as designed, which the result checks judge; any other failed task is a finding.
BUSY_FAILURE = "Busy, so not renewed by this run"


def failed_tasks(run: PlaybookRun, host: str) -> list[str]:
    """The host's failed or unreachable tasks in ``run`` but the deferred failure of a busy host."""
    return [
        f"{e['status']} task {e['task']!r}: {str(e['result'].get('msg'))[:300]}"
        for e in run.results
        if e["host"] == host and e["status"] in ("failed", "unreachable") and not str(e["result"].get("msg")).startswith(BUSY_FAILURE)
    ]


def served(state: dict[str, Any]) -> str | None:
    return next((e["thumbprint"] for e in state["service"]["listeners"] if e["scheme"] == "https"), None)


def timeline(lab: ChaosLab, host: str, base: Baseline) -> list[str]:
    """The host's events since the baseline, one short line each, timed from the first."""
    events = [e for e in lab.events(host)[base.events :] if e["type"] not in QUIET_EVENTS]
    if not events:
        return []
    start = events[0]["ts"]
    lines = []
    for event in events:
        details = {k: v for k, v in event.items() if k not in ("ts", "host", "type", "message")}
        lines.append(f"    +{event['ts'] - start:7.3f}s {event['type']:<16} {json.dumps(details, separators=(',', ':'))[:300]}")
    return lines


def changes(events: list[dict[str, Any]]) -> list[str]:
    """The changes a run made (every event but a call, the lab's fault record, and what a scheduled task did on its own:
    a gate's auto-open at its deadline), one short line each."""
    return [
        f"{e['type']} {json.dumps({k: v for k, v in e.items() if k not in ('ts', 'host', 'type')}, separators=(',', ':'))[:200]}"
        for e in events
        if e["type"] not in NO_CHANGE_EVENTS and not str(e.get("by") or "").startswith("task ") and not (e["type"] == "task" and e.get("action") == "ran")
    ]


def logged_by(events: list[dict[str, Any]], run_id: str) -> list[str]:
    """The host's Application log entries written with ``run_id``: every change the collection makes is logged with its run."""
    return [
        str(e.get("message", "")).splitlines()[0]
        for e in events if e["type"] == "eventlog" and f"run_id: {run_id}" in str(e.get("message", "")).splitlines()
    ]


def extra_of(data: bytes) -> object:
    """The unknown object's values in a tls.json, or why there are none."""
    try:
        document = json.loads(data.decode("utf-8-sig"))
    except ValueError as error:
        return f"unparsable: {error}"
    return document.get("Extra", "missing") if isinstance(document, dict) else "not an object"


def key_readable(certificate: dict[str, Any]) -> bool:
    return any(
        entry["identity"].lower() == XU_ACCOUNT.lower() and entry["type"] == "Allow" and entry["rights"] in ("Read", "FullControl")
        for entry in certificate.get("key_acl") or []
    )


def check_host_after_runs(
    outcome: Outcome, lab: ChaosLab, base: Baseline, state: dict[str, Any], new: str | None, *, unknown_settings_kept: bool,
) -> None:
    """The checks of the host once a scenario's runs ended, from its ``state`` read then.

    Invariants 1-5 of invariants.check_host (``new``: the certificate the host should now serve, None for the old one),
    one check each so that a failure names its invariant; the gate open (exposure as at the baseline); no renew journal
    left; with ``unknown_settings_kept`` tls.json keeps the odd settings' unknown object.
    """
    host = outcome.host
    problems = check_host(lab, host, base, new=new)
    numbered = tuple(f"invariant {number}:" for number in range(1, 6))
    for number, prefix in enumerate(numbered, start=1):
        outcome.check(f"invariant {number}", [p for p in problems if p.startswith(prefix)])
    outcome.check("no other invariant problem", [p for p in problems if not p.startswith(numbered)])

    exposure = dict(state["firewall"]["exposure"])
    outcome.check("gate open", [] if exposure == base.exposure else [f"exposure {exposure}, at the baseline {base.exposure}"])

    # Both views of the journal: its file (left even when empty) and what the lab's state lists under renew.
    journal = lab.dir / "hosts" / host / "fs" / JOURNAL
    left = journal.read_text()[:400] if journal.exists() else state["journals"].get("renew")
    outcome.check("no journal left", [] if left is None else [f"{JOURNAL} is left: {left}"])

    if unknown_settings_kept:
        before, after = extra_of(base.tls_json), extra_of(lab.tls_json(host))
        outcome.check("the unknown settings kept", [] if after == before else [f"Extra was {before}, is {after}"])


def check_old_settings_exact(outcome: Outcome, lab: ChaosLab, base: Baseline) -> None:
    """A host left on its old certificate has tls.json byte for byte as before (a rollback never re-serialises)."""
    settings = lab.tls_json(outcome.host)
    outcome.check(
        "old certificate: tls.json byte for byte as before",
        [] if settings == base.tls_json else [
            f"tls.json differs ({len(base.tls_json)} bytes before, {len(settings)} now; "
            f"sha256 {hashlib.sha256(base.tls_json).hexdigest()[:12]} -> {hashlib.sha256(settings).hexdigest()[:12]}); "
            f"now begins {settings[:160]!r}"
        ],
    )


def check_certificate(state: dict[str, Any], base: Baseline, summary: dict[str, Any] | None, pfx: str | None) -> list[str]:
    """A renewed (or completed) host serves the new certificate it reported; any other one its old certificate or a valid
    new one."""
    now_served = served(state)
    result = (summary or {}).get("result")
    reported = str((summary or {}).get("new_thumbprint") or "").upper() or None
    if now_served is None:
        return ["the host serves no certificate over https"]
    if result in RENEWAL_RESULTS:
        if now_served == base.thumbprint:
            return [f"reports {result} ({reported}), the host still serves the old certificate {now_served}"]
        if now_served != reported:
            return [f"reports {result} with {reported} as new, the host serves {now_served}"]
    if now_served == base.thumbprint:
        return []
    problems = []
    certificate = next((c for c in state["certificates"] if c["thumbprint"] == now_served), None)
    if certificate is None:
        return [f"the host serves {now_served}, a certificate not in the store"]
    if certificate.get("archived"):
        problems.append(f"the new certificate {now_served} is archived")
    if not certificate.get("has_private_key") or not key_readable(certificate):
        problems.append(f"the new certificate {now_served} has no private key the service can read")
    not_after = datetime.datetime.fromisoformat(str(certificate["not_after"]).replace("Z", "+00:00"))
    if not_after <= datetime.datetime.now(datetime.UTC):
        problems.append(f"the new certificate {now_served} is not valid: it expired {certificate['not_after']}")
    if pfx is not None and now_served != pfx:
        problems.append(f"the host serves {now_served}, neither the old {base.thumbprint} nor the PFX's {pfx}")
    return problems


def remote_ops(calls: list[dict[str, Any]]) -> list[str]:
    """The distinct primitives of ``calls`` (remote_call events), in the order first sent."""
    ops: list[str] = []
    for event in calls:
        for op in event.get("ops") or []:
            if op not in ops:
                ops.append(op)
    return ops


def save_output(directory: pathlib.Path, run: PlaybookRun) -> None:
    (directory / "stdout.log").write_text(run.stdout + ("\n--- stderr ---\n" + run.stderr if run.stderr else ""))
