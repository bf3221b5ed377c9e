"""The chaos suite's interrupted runs: a controller killed, or stalled, right after a call of the act phase, and the runs
that come after it.

Every point is one host of a shared lab; one run takes each host to its own point (freeze/sitecustomize.py stops the
host's worker right after its k-th act call answered), then the whole controller is killed (SIGKILL, every worker) or
stalled (SIGSTOP, every process). The points are every call of each combination's act phase, as its reference run sent
them (the kills), or every one but the last (after the last the run has nothing left to take over). The long sweep
holds a run inside its restart call instead, while the host's clock passes the gate's deadline.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Any

from invariants import GATE_GROUP, check_gate, check_host
from labtools import PlaybookRun, parse_time

from tests.chaos.chaoslab import PATIENCE_S, READ_ONLY_OPS, ChaosLab, Controller, Freeze
from tests.chaos.checks import (
    RENEWAL_RESULTS,
    Outcome,
    changes,
    check_certificate,
    check_host_after_runs,
    failed_tasks,
    logged_by,
    save_output,
    served,
    summaries,
)
from tests.chaos.sweeps import Host, Reference, check_one_renewal, explain, prepare_hosts

KILLED = "chaos-killed"
# The role's shortest gate deadline: a killed run's gate reopens a minute after it closed.
GATE = ("-e", "xu_renew_gate_auto_open_after=1")
# The restart wait of the take-over-by-name and long-call hosts: a call's limit (the wait and 120 s) lies an hour after
# it, so the refusal is checked long before it passes, and a hanging restart waits until the test releases it.
HOUR_WAIT_TIMEOUT = 3600
RESUMED = ("completed", "rolled_back")
# The primitives that ride along in most changing calls: not what names a call.
RIDING_OPS = ("journal_write", "event_write")
INTERRUPT_SWEEPS = ("kills", "takeovers", "backups", "named")


@dataclasses.dataclass
class Point:
    """A scenario's host, interrupted right after the ``call``-th call of the act phase of ``reference``."""

    host: Host
    reference: Reference
    call: int
    deadline: float | None = None
    left_closed: bool = False
    journal: dict[str, Any] | None = None
    # The host's event count once the interruption was checked: what the later runs did comes after.
    events: int = 0

    @property
    def name(self) -> str:
        return self.host.name

    @property
    def outcome(self) -> Outcome:
        return self.host.outcome


def call_label(reference: Reference, call: int) -> str:
    """``act call 2/5 (file_write+service_restart)``: the call, by the primitives it changes the host with (but the journal
    and the event log, which ride in most calls)."""
    ops = [op for op in reference.act_calls[call - 1] if op not in READ_ONLY_OPS]
    shown = [op for op in dict.fromkeys(ops) if op not in RIDING_OPS] or list(dict.fromkeys(ops))
    return f"act call {call}/{len(reference.act_calls)} ({'+'.join(shown)})"


def points_of(sweep: str, references: list[Reference]) -> list[tuple[str, Reference, int]]:
    """The interruption points a sweep takes, per combination."""
    found = []
    for reference in references:
        calls = len(reference.act_calls)
        if sweep == "kills":
            found += [(sweep, reference, k) for k in range(1, calls + 1)]
        elif sweep in ("takeovers", "stalls"):
            found += [(sweep, reference, k) for k in range(1, calls)]
        elif sweep == "backups":
            # Where the dead run's journal names a backup: after a settings write, before the call that removes the journal.
            found += [(sweep, reference, k) for k in range(1, calls) if any("file_write" in call for call in reference.act_calls[:k])]
        elif sweep == "named" and calls >= 2:
            found.append((sweep, reference, 1))
    return found


def prepare_points(lab: ChaosLab, chosen: list[tuple[str, Reference, int]], suffix: str = "", **variables: object) -> list[Point]:
    outcomes = [(Outcome(sweep, f"{r.mode}/{r.strategy} {call_label(r, k)}{suffix}"), r.mode, r.strategy) for sweep, r, k in chosen]
    hosts = prepare_hosts(lab, outcomes, odd=True, **variables)
    return [Point(host, reference, k) for host, (_sweep, reference, k) in zip(hosts, chosen, strict=True)]


def check_interruption(lab: ChaosLab, point: Point, frozen: dict[str, int], how: str) -> None:
    """The run stopped right after the point's call, as the reference made it; at once, nothing is exposed."""
    outcome, reference = point.outcome, point.reference
    outcome.runs += 1
    calls = [list(c["ops"]) for c in lab.calls_since(point.name, point.host.base)]
    expected = reference.calls[: reference.assess_calls + point.call]
    outcome.check(
        f"{how} right after the call",
        [] if point.name in frozen and calls == expected else [
            f"frozen: {point.name in frozen}; the host answered {len(calls)} calls, the reference's first {len(expected)} expected"
            + ("" if calls[: len(expected)] == expected else f"; they differ: {calls} vs {expected}")
        ],
    )
    events = lab.events(point.name)[point.host.base.events :]
    registered = [e for e in events if e["type"] == "task" and e["action"] == "registered" and e.get("run_at_utc")]
    point.deadline = parse_time(registered[-1]["run_at_utc"]) if registered else None
    outcome.check(f"invariants once {how}", check_host(lab, point.name, point.host.base, killed_deadline=point.deadline, end=False))
    point.left_closed = any(rule.get("group") == GATE_GROUP for rule in lab.state(point.name)["firewall"]["rules"])
    point.journal = lab.journal(point.name)


def past_the_lease(lab: ChaosLab, point: Point) -> None:
    """The interrupted run's lease ends: the host's clock is moved past it (its gate reopens on the way, at its deadline)."""
    if point.journal and point.journal.get("lease_expires"):
        lab.advance_host_past(point.name, point.journal["lease_expires"])
    if point.left_closed:
        events = lab.events(point.name)[point.host.base.events :]
        point.outcome.check("the gate reopened at its deadline", check_gate(lab, point.name, events, killed_deadline=point.deadline))
    point.events = len(lab.events(point.name))


def lab_path(lab: ChaosLab, host: str, windows_path: str) -> pathlib.Path:
    """Where a host's Windows path lives in the lab (looked up case-insensitively, as Windows does)."""
    drive, _separator, rest = windows_path.partition(":\\")
    path = lab.dir / "hosts" / host / "fs" / drive.upper()
    for part in rest.split("\\"):
        names = {child.name.lower(): child.name for child in path.iterdir()} if path.is_dir() else {}
        path = path / names.get(part.lower(), part)
    return path


def delete_backups(lab: ChaosLab, point: Point) -> None:
    """An administrator deletes the backups the dead run's journal names (cleaning up the folder, say)."""
    named = [str(b) for b in ((point.journal or {}).get("backup_files") or {}).values()]
    deleted = []
    for backup in named:
        path = lab_path(lab, point.name, backup)
        if path.is_file():
            path.unlink()
            deleted.append(backup)
    point.outcome.check("the dead run's journal names a backup, deleted by hand", [] if deleted else [f"its journal names {named or 'none'}"])
    point.outcome.notes.append(f"deleted {', '.join(deleted) or 'nothing'}")


def service_starts(lab: ChaosLab, point: Point) -> int:
    """How often XU started since the interruption was checked: each a restart, an outage."""
    return sum(1 for e in lab.events(point.name)[point.events :] if e["type"] == "service" and e["state"] == "Running" and not e.get("name"))


def restores(lab: ChaosLab, point: Point) -> list[str]:
    return [str(e.get("backup")) for e in lab.events(point.name)[point.events :] if e["type"] == "settings_restore"]


# -- the runs after the interruption --------------------------------------------------------------------------------------


def check_next_run(lab: ChaosLab, point: Point, run: PlaybookRun, *, resumed: bool = False) -> dict[str, Any] | None:
    """The run after a dead one renews (or, when the dead run had finished the renewal before it died, finds the host
    not due) and leaves the host as every renewal must. ``resumed``: it must have finished the dead run's journal."""
    outcome, base = point.outcome, point.host.base
    outcome.runs += 1
    summary = summaries(run).get(point.name)
    result = (summary or {}).get("result")
    state = lab.state(point.name)
    now_served = served(state)
    # The dead run may have finished its change (and removed its journal) in the call it died after: the next run finds
    # the host renewed, not due. Or its renewal was made and the next run completes it (``completed``) rather than renew again.
    finished_before = result == "not_due" and now_served not in (None, base.thumbprint) and point.journal is None
    completed = result == "completed" and (summary or {}).get("resumed") == "completed" and now_served not in (None, base.thumbprint)
    renews = result == "renewed" or finished_before or completed
    outcome.check("the next run renews", [] if not failed_tasks(run, point.name) and renews else [
        f"reports {result!r}: {str((summary or {}).get('reason'))[:300]}; {failed_tasks(run, point.name)[:2]}"])
    if resumed:
        outcome.check("it finished the dead run", [] if (summary or {}).get("resumed") in RESUMED else [f"resumed: {(summary or {}).get('resumed')}"])
    outcome.check("served certificate", check_certificate(state, base, summary, point.host.pfx))
    check_host_after_runs(outcome, lab, base, state, now_served if now_served != base.thumbprint else None, unknown_settings_kept=True)
    outcome.notes.append(f"next run: {result} (resumed {(summary or {}).get('resumed')})")
    return summary


def check_takeover_pair(lab: ChaosLab, point: Point, runs: dict[str, PlaybookRun], twin: Point | None) -> None:
    """Two runs found the dead run's journal at once: exactly one finished it (as one next run does: the same restores and
    restarts) and renewed, the other reported busy and changed nothing."""
    outcome, base = point.outcome, point.host.base
    outcome.runs += len(runs)
    reported = {run_id: summaries(run).get(point.name) for run_id, run in runs.items()}
    results = {run_id: (s or {}).get("result") for run_id, s in reported.items()}
    resumed = {run_id: (s or {}).get("resumed") for run_id, s in reported.items()}
    outcome.notes.append("takers: " + ", ".join(f"{run_id}: {result} (resumed {resumed[run_id]})" for run_id, result in results.items()))
    winners = [run_id for run_id, s in reported.items() if s and s.get("result") in RENEWAL_RESULTS and s.get("resumed") in RESUMED]
    losers = [run_id for run_id, result in results.items() if result == "busy"]
    outcome.check("one took over and renewed, the other was busy", [] if len(winners) == 1 and len(losers) == 1 else [f"results {results}"])
    for run_id, run in runs.items():
        outcome.check(f"{run_id} no failed task", failed_tasks(run, point.name))
    events = lab.events(point.name)[point.events :]
    for run_id in losers:
        own = logged_by(events, run_id)
        outcome.check(f"{run_id} (busy) changed nothing", [f"it logged {len(own)} change(s): " + "; ".join(own[:5])] if own else [])
    restored = restores(lab, point)
    outcome.check("no backup restored twice", [] if len(restored) == len(set(restored)) else [f"restores: {restored}"])
    if twin is not None:
        mine, theirs = (service_starts(lab, point), restores(lab, point)), (service_starts(lab, twin), restores(lab, twin))
        outcome.check(
            "as many restarts and restores as one next run",
            [] if (mine[0], len(mine[1])) == (theirs[0], len(theirs[1])) else [f"{mine[0]} starts, restores {mine[1]}; one next run: {theirs[0]}, {theirs[1]}"],
        )
    state = lab.state(point.name)
    new = check_one_renewal(outcome, reported, base, served(state), point.host.pfx)
    check_host_after_runs(outcome, lab, base, state, new, unknown_settings_kept=True)


def check_untouched_since(outcome: Outcome, lab: ChaosLab, point: Point, since: int, who: str) -> None:
    outcome.check(f"{who} changed nothing", [f"after it: {c}" for c in changes(lab.events(point.name)[since:])][:5])


def check_named_refused(lab: ChaosLab, point: Point, run: PlaybookRun, journal_text: str | None) -> None:
    """A take-over by name while the dead run's last call may still be running is refused: busy, nothing touched."""
    outcome = point.outcome
    outcome.runs += 1
    summary = summaries(run).get(point.name) or {}
    reason = str(summary.get("reason"))
    refused = summary.get("result") == "busy" and f"xu_renew_take_over={KILLED} was refused" in reason
    outcome.check("take-over refused while the last call may run", [] if refused else [f"reports {summary.get('result')!r}: {reason[:300]}"])
    check_untouched_since(outcome, lab, point, point.events, "the refused run")
    outcome.check("the journal as the dead run left it", [] if lab.state(point.name)["journals"].get("renew") == journal_text else ["it changed"])


# -- the sweeps --------------------------------------------------------------------------------------------------------------


def interrupted(lab: ChaosLab, directory: pathlib.Path, references: list[Reference], sweeps: list[str]) -> list[Outcome]:
    """kills, takeovers, backups, named: one run killed at every point of these sweeps, then each sweep's runs."""
    chosen = [point for sweep in INTERRUPT_SWEEPS if sweep in sweeps and sweep != "named" for point in points_of(sweep, references)]
    named_chosen = points_of("named", references) if "named" in sweeps else []
    points = prepare_points(lab, chosen) + prepare_points(lab, named_chosen, xu_renew_wait_timeout=HOUR_WAIT_TIMEOUT)
    if not points:
        return []
    killed = Controller(lab, directory, KILLED, [p.name for p in points], *GATE, freeze=Freeze("act", {p.name: p.call for p in points}))
    frozen = killed.wait_frozen()
    killed.kill()
    save_output(killed.dir, killed.ended())
    by_sweep: dict[str, list[Point]] = {}
    for point in points:
        check_interruption(lab, point, frozen, "killed")
        by_sweep.setdefault(point.outcome.sweep, []).append(point)
    for point in by_sweep.get("backups", []):
        delete_backups(lab, point)
    for point in by_sweep.get("kills", []) + by_sweep.get("backups", []) + by_sweep.get("takeovers", []):
        past_the_lease(lab, point)
    for point in by_sweep.get("named", []):
        point.events = len(lab.events(point.name))
    after_the_kill(lab, directory, by_sweep)
    for point in points:
        explain(point.outcome, lab, point.host)
    return [p.outcome for p in points]


def after_the_kill(lab: ChaosLab, directory: pathlib.Path, by_sweep: dict[str, list[Point]]) -> None:
    """The runs after the dead one, every sweep's at once: the next run (kills, backups), the two takers, take-over by name."""
    following = by_sweep.get("kills", []) + by_sweep.get("backups", [])
    takers, named = by_sweep.get("takeovers", []), by_sweep.get("named", [])
    next_run = Controller(lab, directory, "chaos-next", [p.name for p in following], *GATE) if following else None
    freeze = Freeze("assess", {p.name: 1 for p in takers})
    pair = [Controller(lab, directory, f"chaos-take-{index}", list(freeze.after), *GATE, freeze=freeze) for index in (1, 2)] if takers else []
    take_over = ("-e", f"xu_renew_take_over={KILLED}")
    early = Controller(lab, directory, "chaos-named-early", [p.name for p in named], *GATE, *take_over) if named else None

    # Both takers have read the dead run's journal before either acts: then both go on at once.
    frozen_pair = [controller.wait_frozen() for controller in pair]
    for controller in pair:
        controller.wake()
    if early is not None:
        run_named(lab, directory, named, early, take_over)
    if next_run is not None:
        run = next_run.finish()
        save_output(next_run.dir, run)
        for point in following:
            check_next_run(lab, point, run, resumed=point.outcome.sweep == "backups")
    if pair:
        runs = {controller.run_id: controller.finish() for controller in pair}
        for controller in pair:
            save_output(controller.dir, runs[controller.run_id])
        twins = {(p.reference.mode, p.reference.strategy, p.call): p for p in by_sweep.get("kills", [])}
        for point in takers:
            late = [controller.run_id for controller, frozen in zip(pair, frozen_pair, strict=True) if point.name not in frozen]
            point.outcome.check("both takers read the journal before either acted", [f"{run_id} did not stop after its read" for run_id in late])
            check_takeover_pair(lab, point, runs, twins.get((point.reference.mode, point.reference.strategy, point.call)))


def run_named(lab: ChaosLab, directory: pathlib.Path, named: list[Point], early: Controller, take_over: tuple[str, ...]) -> None:
    """Take-over by name: refused while the dead run's last call may still run; then, its time limit passed but its lease
    still running, a run without the name is busy and one with it finishes the dead run and renews."""
    texts = {p.name: lab.state(p.name)["journals"].get("renew") for p in named}
    refused = early.finish()
    save_output(early.dir, refused)
    for point in named:
        check_named_refused(lab, point, refused, texts[point.name])
        journal = point.journal or {}
        limit = parse_time(str(journal.get("lease_renewed"))) + float(journal.get("call_budget_s") or 0) if journal.get("lease_renewed") else None
        if limit is None:
            point.outcome.check("the dead run's journal records its last call's limit", [f"journal {journal}"])
            continue
        lab.advance_host_past(point.name, limit)
        if point.left_closed:
            events = lab.events(point.name)[point.host.base.events :]
            point.outcome.check("the gate reopened at its deadline", check_gate(lab, point.name, events, killed_deadline=point.deadline))
        lease = parse_time(str(journal.get("lease_expires")))
        now = lab.now(point.name)
        point.outcome.check("the dead run's lease still runs", [] if now < lease else [f"host time {now}, lease until {journal.get('lease_expires')}"])
        point.events = len(lab.events(point.name))
    names = [p.name for p in named]
    plain_controller = Controller(lab, directory, "chaos-named-plain", names, *GATE)
    plain = plain_controller.finish()
    save_output(plain_controller.dir, plain)
    for point in named:
        summary = summaries(plain).get(point.name) or {}
        point.outcome.runs += 1
        result, reason = summary.get("result"), str(summary.get("reason"))[:300]
        point.outcome.check("without the name: busy", [] if result == "busy" else [f"reports {result!r}: {reason}"])
        check_untouched_since(point.outcome, lab, point, point.events, "the run without the name")
    taker = Controller(lab, directory, "chaos-named", names, *GATE, *take_over)
    run = taker.finish()
    save_output(taker.dir, run)
    for point in named:
        check_next_run(lab, point, run, resumed=True)


def stalls(lab: ChaosLab, directory: pathlib.Path, references: list[Reference]) -> list[Outcome]:
    """A controller stalled (SIGSTOP, every process) right after each act call but the last, past its lease; another run
    takes the host over. The stalled one is woken (SIGCONT) once that run has finished, or while it holds the host (stopped
    right after its first call that wrote its journal, so that everything the host records meanwhile is the woken run's).
    Woken, it must stop as busy without changing anything on the host; the taker finishes it and renews."""
    chosen = points_of("stalls", references)
    after = prepare_points(lab, chosen, " (woken after the taker)")
    during = prepare_points(lab, chosen, " (woken while the taker holds it)")
    points = after + during
    if not points:
        return []
    stalled = Controller(lab, directory, "chaos-stalled", [p.name for p in points], *GATE, freeze=Freeze("act", {p.name: p.call for p in points}))
    frozen = stalled.wait_frozen()
    stalled.stall()
    for point in points:
        check_interruption(lab, point, frozen, "stalled")
        point.outcome.check("the stalled run's journal is on the host", [] if point.journal else ["no journal: nothing to take over"])
        past_the_lease(lab, point)
    takers = {"chaos-taker": after, "chaos-taker-held": during}
    first = Controller(lab, directory, "chaos-taker", [p.name for p in after], *GATE)
    held = Controller(
        lab, directory, "chaos-taker-held", [p.name for p in during], *GATE, freeze=Freeze("act", {p.name: 1 for p in during}, op="journal_write"),
    )
    runs = {"chaos-taker": first.finish()}
    holding = held.wait_frozen()
    woken = {p.name: len(lab.events(p.name)) for p in points}
    stalled.wake()
    late = stalled.finish()
    # Everything the hosts recorded since the stalled run woke is its own: the other runs have ended, or are stopped.
    for point in points:
        check_untouched_since(point.outcome, lab, point, woken[point.name], "the woken run")
    for point in during:
        point.outcome.check("the taker held the host when the stalled run woke", [] if point.name in holding else ["it never wrote its journal"])
    held.wake()
    runs["chaos-taker-held"] = held.finish()
    for controller in (stalled, first, held):
        save_output(controller.dir, late if controller is stalled else runs[controller.run_id])
    for run_id, taken in takers.items():
        for point in taken:
            check_stalled(lab, point, run_id, runs[run_id], late)
    return [p.outcome for p in points]


def check_stalled(lab: ChaosLab, point: Point, taker_id: str, taker: PlaybookRun, late: PlaybookRun) -> None:
    """The taker finished the stalled run and renewed; the woken run reported busy; the host as after one renewal."""
    outcome, base = point.outcome, point.host.base
    outcome.runs += 1
    reported = {taker_id: summaries(taker).get(point.name), "chaos-stalled": summaries(late).get(point.name)}
    took, woke = reported[taker_id] or {}, reported["chaos-stalled"] or {}
    outcome.notes.append(f"taker: {took.get('result')} (resumed {took.get('resumed')}), woken: {woke.get('result')}")
    renewed = took.get("result") in RENEWAL_RESULTS and took.get("resumed") in RESUMED and not failed_tasks(taker, point.name)
    outcome.check("the taker finished the stalled run and renewed", [] if renewed else [f"reports {took.get('result')!r}: {str(took.get('reason'))[:300]}"])
    outcome.check("the woken run stops as busy", [] if woke.get("result") == "busy" else [f"reports {woke.get('result')!r}: {str(woke.get('reason'))[:300]}"])
    state = lab.state(point.name)
    outcome.check("served certificate", check_certificate(state, base, reported[taker_id], point.host.pfx))
    new = check_one_renewal(outcome, reported, base, served(state), point.host.pfx)
    check_host_after_runs(outcome, lab, base, state, new, unknown_settings_kept=True)
    explain(outcome, lab, point.host, (taker_id, taker), ("chaos-stalled", late))


def long_calls(lab: ChaosLab, directory: pathlib.Path, combinations: list[tuple[str, str]]) -> list[Outcome]:
    """A call that outlasts the gate's deadline: the run's first restart hangs (the stop stays pending, the restart wait is
    an hour) while the host's clock passes the 1-minute gate deadline. A second run then finds the first run's lease
    still running and is busy, changing nothing; released, the first run finishes and renews."""
    hosts = prepare_hosts(
        lab, [(Outcome("long", f"{m}/{s} restart past the gate's deadline"), m, s) for m, s in combinations], odd=True,
        xu_renew_wait_timeout=HOUR_WAIT_TIMEOUT,
    )
    if not hosts:
        return []
    for host in hosts:
        lab.fault(host.name, stop_hangs=1)
    first = Controller(lab, directory, "chaos-long", [h.name for h in hosts], *GATE)
    hanging = {h.name: wait_for_event(lab, h, "service", "StopPending", first) for h in hosts}
    marks = {}
    for host in hosts:
        lab.advance_host(host.name, 120)
        journal = lab.journal(host.name) or {}
        lease = journal.get("lease_expires")
        live = bool(lease) and lab.now(host.name) < parse_time(str(lease))
        host.outcome.check("the restart hangs past the gate's deadline, the lease runs", [] if hanging[host.name] and live else [
            f"stop pending: {hanging[host.name]}; journal {journal or 'none'}"])
        marks[host.name] = len(lab.events(host.name))
    second_controller = Controller(lab, directory, "chaos-during", [h.name for h in hosts], *GATE)
    second = second_controller.finish()
    save_output(second_controller.dir, second)
    for host in hosts:
        summary = summaries(second).get(host.name) or {}
        host.outcome.runs += 1
        host.outcome.check("a run meanwhile is busy", [] if summary.get("result") == "busy" and not failed_tasks(second, host.name) else [
            f"reports {summary.get('result')!r}: {str(summary.get('reason'))[:300]}"])
        host.outcome.check("it changed nothing", [f"after it: {c}" for c in changes(lab.events(host.name)[marks[host.name] :])][:5])
        lab.fault(host.name, stop_hangs=0)
    run = first.finish()
    save_output(first.dir, run)
    for host in hosts:
        outcome = host.outcome
        outcome.runs += 1
        reported = {"chaos-long": summaries(run).get(host.name), "chaos-during": summaries(second).get(host.name)}
        result = (reported["chaos-long"] or {}).get("result")
        outcome.notes.append(f"released: {result}, meanwhile: {(reported['chaos-during'] or {}).get('result')}")
        outcome.check("released, the run renews", [] if result == "renewed" and not failed_tasks(run, host.name) else [
            f"reports {result!r}: {str((reported['chaos-long'] or {}).get('reason'))[:300]}"])
        state = lab.state(host.name)
        outcome.check("served certificate", check_certificate(state, host.base, reported["chaos-long"], host.pfx))
        new = check_one_renewal(outcome, reported, host.base, served(state), host.pfx)
        check_host_after_runs(outcome, lab, host.base, state, new, unknown_settings_kept=True)
        explain(outcome, lab, host, ("chaos-long", run), ("chaos-during", second))
    return [h.outcome for h in hosts]


def wait_for_event(lab: ChaosLab, host: Host, kind: str, state: str, controller: Controller) -> bool:
    """Until the host records a ``kind`` event in ``state`` (or the run ended, or PATIENCE_S passed without it)."""
    deadline = time.monotonic() + PATIENCE_S
    while time.monotonic() < deadline and controller.process.poll() is None:
        if any(e["type"] == kind and e.get("state") == state for e in lab.events(host.name)[host.base.events :]):
            return True
        time.sleep(0.1)
    return False
