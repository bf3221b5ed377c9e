"""The chaos suite's runs that are not interrupted: the reference runs, overlapping runs, and a fault at every primitive."""

from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Any

from invariants import Baseline
from labtools import PlaybookRun

from tests.chaos.chaoslab import READ_ONLY_OPS, ChaosLab, Controller
from tests.chaos.checks import (
    RENEWAL_RESULTS,
    Outcome,
    check_certificate,
    check_host_after_runs,
    check_old_settings_exact,
    failed_tasks,
    logged_by,
    remote_ops,
    save_output,
    served,
    summaries,
    timeline,
)

RUN_IDS = ("chaos-a", "chaos-b")
NOT_RENEWED_OK = ("busy", "not_due")
FAULT_KINDS = ("fail_primitive", "drop_connection")
FAULT_RESULTS = ("renewed", "failed")
FAULT_RUN_ID = "chaos-fault"
REFERENCE_RUN_ID = "chaos-reference"


@dataclasses.dataclass
class Reference:
    """A clean renewal of one mode and strategy, on the odd settings: what it sends, call by call."""

    mode: str
    strategy: str
    # Each remote call's primitives, the assessment's first.
    calls: list[list[str]]
    # How many of them the assessment made: the calls before the first one that changes something.
    assess_calls: int

    @property
    def act_calls(self) -> list[list[str]]:
        return self.calls[self.assess_calls :]

    @property
    def ops(self) -> list[str]:
        return remote_ops([{"ops": call} for call in self.calls])


@dataclasses.dataclass
class Host:
    """A scenario's host, ready: its baseline, and the PFX's certificate it is to serve (replace mode)."""

    outcome: Outcome
    mode: str
    strategy: str
    base: Baseline
    pfx: str | None

    @property
    def name(self) -> str:
        return self.outcome.host


def prepare_hosts(lab: ChaosLab, outcomes: list[tuple[Outcome, str, str]], *, odd: bool, **variables: object) -> list[Host]:
    """Each scenario's host: its variables, its PFX, its odd tls.json (``odd``), then its baseline."""
    hosts = []
    for outcome, name in zip((o for o, _m, _s in outcomes), lab.take(len(outcomes)), strict=True):
        outcome.host = name
    for outcome, mode, strategy in outcomes:
        pfx = lab.prepare(outcome.host, mode, strategy, **variables)
        if odd:
            lab.odd_settings(outcome.host)
        hosts.append(Host(outcome, mode, strategy, lab.baseline(outcome.host), pfx))
    return hosts


def explain(outcome: Outcome, lab: ChaosLab, host: Host, *runs: tuple[str, PlaybookRun]) -> None:
    """On a failure: the host's events and the runs' failed tasks."""
    if not outcome.failures:
        return
    outcome.notes += [f"  {host.name} events (lab {lab.dir}):", *timeline(lab, host.name, host.base)]
    for run_id, run in runs:
        outcome.notes += [f"    {run_id}: {failure}" for failure in failed_tasks(run, host.name)]


# -- overlapping runs ------------------------------------------------------------------------------------------------------


def overlap(lab: ChaosLab, directory: pathlib.Path, offset: float, combinations: list[tuple[str, str]]) -> list[Outcome]:
    """Runs A and B over one host per combination, B started ``offset`` seconds after A; neither may hurt the other."""
    hosts = prepare_hosts(lab, [(Outcome("overlap", f"{m}/{s}/+{offset:g}s"), m, s) for m, s in combinations], odd=False)
    names = [h.name for h in hosts]
    began = time.monotonic()
    first = Controller(lab, directory, f"{RUN_IDS[0]}-{offset:g}", names)
    time.sleep(offset)
    started = time.monotonic() - began
    second = Controller(lab, directory, f"{RUN_IDS[1]}-{offset:g}", names)
    runs = [first.finish(), second.finish()]
    for controller, run in zip((first, second), runs, strict=True):
        save_output(controller.dir, run)
    for host in hosts:
        check_overlap(lab, host, runs, [first.run_id, second.run_id])
        host.outcome.runs = 2
        host.outcome.notes.insert(0, f"b started {started:.2f}s after a; " + host.outcome.notes.pop(0))
    return [h.outcome for h in hosts]


def check_overlap(lab: ChaosLab, host: Host, runs: list[PlaybookRun], run_ids: list[str]) -> None:
    outcome = host.outcome
    reported = [summaries(run).get(host.name) for run in runs]
    outcome.notes.append(", ".join(f"{label}: {(s or {}).get('result')}" for label, s in zip(RUN_IDS, reported, strict=True)))
    for label, run, summary in zip(RUN_IDS, runs, reported, strict=True):
        outcome.check(f"{label} no failed task", failed_tasks(run, host.name))
        outcome.check(f"{label} summary", [] if summary is not None else ["no summary for the host"])
        result = (summary or {}).get("result")
        if summary is not None:
            outcome.check(
                f"{label} result",
                [] if result in ("renewed", *NOT_RENEWED_OK) else [f"reports {result!r} (step {summary.get('failed_step')}): {summary.get('reason')}"],
            )
    state = lab.state(host.name)
    now_served = served(state)
    new = check_one_renewal(outcome, dict(zip(run_ids, reported, strict=True)), host.base, now_served, host.pfx)
    # A run that did not renew changed nothing: the host's Application log has no entry of its run id.
    events = lab.events(host.name)[host.base.events :]
    for run_id, summary in zip(run_ids, reported, strict=True):
        if (summary or {}).get("result") not in RENEWAL_RESULTS:
            own = logged_by(events, run_id)
            outcome.check(f"{run_id} (did not renew) changed nothing", [f"it logged {len(own)} change(s): " + "; ".join(own[:5])] if own else [])
    check_host_after_runs(outcome, lab, host.base, state, new, unknown_settings_kept=False)
    explain(outcome, lab, host, *zip(run_ids, runs, strict=True))


def check_one_renewal(
    outcome: Outcome, reported: dict[str, dict[str, Any] | None], base: Baseline, now_served: str | None, pfx: str | None,
) -> str | None:
    """Exactly one run renewed (or completed an interrupted run's renewal), or several did and agree; the host serves that
    new certificate. The new thumbprint."""
    renewed = {run_id: s for run_id, s in reported.items() if s and s.get("result") in RENEWAL_RESULTS}
    news = {run_id: str(s.get("new_thumbprint") or "").upper() or None for run_id, s in renewed.items()}
    problems = []
    new: str | None = None
    if not renewed:
        results = {run_id: (s or {}).get("result") for run_id, s in reported.items()}
        problems.append(f"no run renewed the host ({results}); it serves {now_served}, before {base.thumbprint}")
    elif len(set(news.values())) != 1:
        problems.append(f"several runs renewed, with different certificates {news}; the host serves {now_served}")
    else:
        new = next(iter(news.values()))
        if now_served != new:
            problems.append(f"{sorted(renewed)} reported {new} as new, the host serves {now_served}")
    if pfx is not None and now_served != pfx:
        problems.append(f"the host serves {now_served}, not the PFX's certificate {pfx}")
    if now_served == base.thumbprint:
        problems.append(f"the host still serves the old certificate {now_served}")
    outcome.check("one renewal, or an agreed one", problems)
    return pfx or new


# -- the reference runs and the faults ------------------------------------------------------------------------------------------


def references(lab: ChaosLab, directory: pathlib.Path, combinations: list[tuple[str, str]]) -> tuple[list[Outcome], dict[tuple[str, str], Reference]]:
    """A clean renewal per combination on the odd settings (one run): its checks, and the calls each one sent."""
    hosts = prepare_hosts(lab, [(Outcome("faults", f"{m}/{s} reference"), m, s) for m, s in combinations], odd=True)
    controller = Controller(lab, directory, REFERENCE_RUN_ID, [h.name for h in hosts])
    run = controller.finish()
    save_output(controller.dir, run)
    found = {}
    for host in hosts:
        check_fault_run(lab, host, run, None, None)
        calls = [list(call["ops"]) for call in lab.calls_since(host.name, host.base)]
        changing = [index for index, call in enumerate(calls) if set(call) - READ_ONLY_OPS]
        found[(host.mode, host.strategy)] = Reference(host.mode, host.strategy, calls, changing[0] if changing else len(calls))
        reference = found[(host.mode, host.strategy)]
        host.outcome.check("calls that change something", [] if changing else [f"the reference run sent {calls}, none changes anything"])
        host.outcome.notes.append(
            f"  {len(reference.ops)} primitives sent ({', '.join(reference.ops)}) in {len(calls)} calls, {len(reference.act_calls)} of them acting"
        )
    return [h.outcome for h in hosts], found


@dataclasses.dataclass(frozen=True)
class Fault:
    mode: str
    strategy: str
    kind: str
    op: str


def fault_runs(lab: ChaosLab, directory: pathlib.Path, faults: list[Fault]) -> list[Outcome]:
    """Each fault on a host of its own, all in one run: the host's own recovery must get it past the fault."""
    hosts = prepare_hosts(lab, [(Outcome("faults", f"{f.mode}/{f.strategy} {f.kind}={f.op}"), f.mode, f.strategy) for f in faults], odd=True)
    for host, fault in zip(hosts, faults, strict=True):
        lab.fault(host.name, **{fault.kind: fault.op})
    controller = Controller(lab, directory, FAULT_RUN_ID, [h.name for h in hosts])
    run = controller.finish()
    save_output(controller.dir, run)
    for host, fault in zip(hosts, faults, strict=True):
        check_fault_run(lab, host, run, fault.kind, fault.op)
    return [h.outcome for h in hosts]


def check_fault_run(lab: ChaosLab, host: Host, run: PlaybookRun, kind: str | None, op: str | None) -> None:
    """The checks of one host of the faults sweep (or a reference run: no fault), from its summary, events and state."""
    outcome = host.outcome
    outcome.runs += 1
    summary = summaries(run).get(host.name)
    events = lab.events(host.name)[host.base.events :]
    fired = [e for e in events if e["type"] == "fault" and e.get("action") == "consumed"]

    outcome.check("summary", [] if summary is not None else [f"no summary for the host (rc {run.rc}; {failed_tasks(run, host.name)[:2]})"])
    result = (summary or {}).get("result")
    allowed = FAULT_RESULTS if kind else ("renewed",)
    reason = str((summary or {}).get("reason") or "")
    # A failed read before any change blocks the host, and says that it is a read that failed (never a made-up cause).
    honest_block = result == "blocked" and op in READ_ONLY_OPS and f"{op}:" in reason and "could not be read" in reason
    if summary is not None:
        outcome.check("result", [] if result in allowed or honest_block else [f"reports {result!r} (step {summary.get('failed_step')}): {reason[:400]}"])

    state = lab.state(host.name)
    now_served = served(state)
    on_old = now_served is not None and now_served == host.base.thumbprint
    outcome.check("served certificate", check_certificate(state, host.base, summary, host.pfx))
    # One fault fires once: the run's own recovery gets past it, so it completes and removes its journal. A host on a new
    # certificate keeps the unknown settings; one on its old certificate has tls.json byte for byte as before.
    check_host_after_runs(outcome, lab, host.base, state, None if on_old else now_served, unknown_settings_kept=not on_old)
    if on_old:
        check_old_settings_exact(outcome, lab, host.base)
    outcome.notes.append(
        f"{result} (step {(summary or {}).get('failed_step')}), serves the "
        + ("old certificate" if on_old else f"new {now_served}")
        + ("" if not kind else ", fault fired" if fired else ", fault never fired")
    )
    if summary is not None and result != "renewed":
        outcome.notes.append(f"  reason: {reason[:400]}")
    explain(outcome, lab, host, (FAULT_RUN_ID if kind else REFERENCE_RUN_ID, run))
