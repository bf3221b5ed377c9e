"""Chaos suite: two renew runs on one host, the second started at an offset after the first. No run may hurt another.

For every combination of xu_renew_mode (replace, reuse_key) and xu_renew_strategy (documented, minimal_outage) and
every offset, a fresh one-host lab whose certificate expires in 10 days, then two `ansible-playbook
playbooks/renew.yml` runs against it (run ids chaos-a and chaos-b), the second started `offset` seconds after the
first. Once both have ended, the host is checked from outside, through the lab's event log and state only
(tests/integration/invariants.py), and through what each run reported in its summary:

* the safety invariants of invariants.check_host: no plain HTTP exposed, backups kept, no certificate removed while
  not served, the gate's rules gone, a valid certificate served;
* each run ends with rc 0 and a summary for the host; a run that did not renew reports ``busy`` (the other run held
  the host) or ``not_due`` (the other run had already renewed it), never ``failed``;
* exactly one run renewed the host, or both did and agree on the certificate now served; the host serves a new
  certificate (for replace mode: the one in the PFX);
* the host's exposure is as before the runs (gate open) and no journal is left
  (C:\\ProgramData\\xtractuniversal.tls\\renew.json).

Prints every failure (mode/strategy/offset, the problem, and the host's change events) and the counts; exit code 1
when any check failed.

    .venv/bin/python tests/chaos/run.py                  # the full sweep: 4 combinations x 6 offsets
    .venv/bin/python tests/chaos/run.py --quick          # one offset (0.5 s) per combination
    .venv/bin/python tests/chaos/run.py --modes replace --strategies documented --offsets 0 1 --keep
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import hashlib
import json
import os
import pathlib
import secrets
import shutil
import sys
import tempfile
import threading
import time
import traceback
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from cryptography.hazmat.primitives.serialization import Encoding, pkcs12  # noqa: E402
from invariants import Baseline, baseline, check_host  # noqa: E402
from labtools import Lab, PlaybookRun, start_lab, stop_lab  # noqa: E402

PLAYBOOK = str(REPO / "playbooks" / "renew.yml")
MODES = ("replace", "reuse_key")
STRATEGIES = ("documented", "minimal_outage")
OFFSETS = (0.0, 0.5, 1.0, 2.0, 3.0, 5.0)
QUICK_OFFSET = 0.5
HOST = "xu01"
RUN_IDS = ("chaos-a", "chaos-b")
JOURNAL = pathlib.Path("C/ProgramData/xtractuniversal.tls/renew.json")
# Where the playbook hands each host's summary (as test_renew_role.summaries reads it).
SUMMARY_TASKS = ("Finish | Summarise the run on this host", "Assess | Summarise the host")
NOT_RENEWED_OK = ("busy", "not_due")
# Events worth showing when a scenario fails: everything but the remote calls themselves.
QUIET_EVENTS = {"remote_call"}


@dataclasses.dataclass
class Scenario:
    mode: str
    strategy: str
    offset: float

    def __str__(self) -> str:
        return f"{self.mode}/{self.strategy}/+{self.offset:g}s"


@dataclasses.dataclass
class Outcome:
    scenario: Scenario
    runs: int = 0
    checks: int = 0
    failures: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    directory: pathlib.Path | None = None

    def check(self, name: str, problems: list[str]) -> None:
        """One invariant check: its problems, none when it held."""
        self.checks += 1
        if problems:
            self.failures.append(f"[{self.scenario}] {name}: " + "; ".join(problems))


def summaries(run: PlaybookRun) -> dict[str, dict[str, Any]]:
    """Each host's xu_renew_summary: from the summarising tasks' facts, else from what set_stats handed on as xu_renew."""
    found: dict[str, dict[str, Any]] = {}
    for entry in run.results:
        facts = entry["result"].get("ansible_facts", {})
        if entry["task"].endswith(SUMMARY_TASKS) and "xu_renew_summary" in facts:
            found[entry["host"]] = facts["xu_renew_summary"]
    for entry in run.results:
        stats = entry["result"].get("ansible_stats", {}).get("data", {})
        for host, summary in (stats.get("xu_renew") or {}).items():
            found.setdefault(host, summary)
    return found


def pfx_thumbprint(path: pathlib.Path, password: str) -> str:
    """The SHA-1 thumbprint of the PFX's certificate, as Windows shows it."""
    _key, certificate, _chain = pkcs12.load_key_and_certificates(path.read_bytes(), password.encode())
    assert certificate is not None, f"{path} holds no certificate"
    return hashlib.sha1(certificate.public_bytes(Encoding.DER)).hexdigest().upper()  # noqa: S324 - a thumbprint, not security


def prepare_pfx(lab: Lab, directory: pathlib.Path) -> tuple[tuple[str, ...], str]:
    """A PFX from the lab CA for the host (its password in a file and a vars file, never on a command line)."""
    certs = directory / "certs"
    certs.mkdir(mode=0o700)
    password = secrets.token_urlsafe(18)
    password_file = certs / "password"
    password_file.write_text(password)
    password_file.chmod(0o600)
    pfx = certs / f"{HOST}.pfx"
    lab.xulab("issue", "--dir", str(lab.dir), "--host", HOST, "--out", str(pfx), "--password-file", str(password_file))
    secrets_file = certs / "secrets.json"
    secrets_file.write_text(json.dumps({"xu_renew_pfx_password": password}))
    secrets_file.chmod(0o600)
    extra = ("-e", f"xu_renew_pfx_path={certs}/{{{{ inventory_hostname }}}}.pfx", "-e", f"@{secrets_file}")
    return extra, pfx_thumbprint(pfx, password)


def run_pair(lab: Lab, directory: pathlib.Path, extra: tuple[str, ...], offset: float) -> tuple[list[PlaybookRun | Exception], list[float]]:
    """Run A now and run B ``offset`` seconds later, each in its own thread; both results once both ended."""
    results: list[PlaybookRun | Exception] = [RuntimeError("not run"), RuntimeError("not run")]
    started = [0.0, 0.0]

    def one(index: int) -> None:
        tmp = directory / RUN_IDS[index]
        tmp.mkdir()
        started[index] = time.time()
        try:
            results[index] = lab.playbook(PLAYBOOK, tmp_path=tmp, extra_args=(*extra, "-e", f"xu_renew_run_id={RUN_IDS[index]}"))
        except Exception as error:  # reported as the run's failure
            results[index] = error

    threads = [threading.Thread(target=one, args=(0,))]
    threads[0].start()
    time.sleep(offset)
    threads.append(threading.Thread(target=one, args=(1,)))
    threads[1].start()
    for thread in threads:
        thread.join()
    return results, started


def timeline(lab: Lab, base: Baseline) -> list[str]:
    """The host's events since the baseline, one short line each, timed from the first."""
    events = [e for e in lab.events(HOST)[base.events:] if e["type"] not in QUIET_EVENTS]
    if not events:
        return []
    start = events[0]["ts"]
    lines = []
    for event in events:
        details = {k: v for k, v in event.items() if k not in ("ts", "host", "type", "message")}
        lines.append(f"    +{event['ts'] - start:7.3f}s {event['type']:<16} {json.dumps(details, separators=(',', ':'))[:300]}")
    return lines


def check_runs(outcome: Outcome, runs: list[PlaybookRun | Exception], reported: list[dict[str, Any] | None]) -> None:
    for run_id, run, summary in zip(RUN_IDS, runs, reported, strict=True):
        if isinstance(run, BaseException):
            outcome.check(f"{run_id} ran", [f"{type(run).__name__}: {run}"])
            continue
        tail = run.stdout.strip().splitlines()[-3:]
        outcome.check(f"{run_id} exit code", [] if run.rc == 0 else [f"rc {run.rc}; last lines: {' | '.join(tail)}"])
        if summary is None:
            outcome.check(f"{run_id} summary", ["no summary for the host"])
            continue
        outcome.check(f"{run_id} summary", [])
        result = summary.get("result")
        allowed = ("renewed", *NOT_RENEWED_OK)
        outcome.check(
            f"{run_id} result",
            [] if result in allowed else [f"reports {result!r} (step {summary.get('failed_step')}): {summary.get('reason')}"],
        )


def check_winner(outcome: Outcome, reported: list[dict[str, Any] | None], base: Baseline, served: str | None, pfx: str | None) -> str | None:
    """Exactly one run renewed, or both did and agree; the host serves that new certificate. Returns the new thumbprint."""
    renewed = {run_id: s for run_id, s in zip(RUN_IDS, reported, strict=True) if s and s.get("result") == "renewed"}
    news = {run_id: str(s.get("new_thumbprint") or "").upper() or None for run_id, s in renewed.items()}
    problems = []
    new: str | None = None
    if not renewed:
        results = {run_id: (s or {}).get("result") for run_id, s in zip(RUN_IDS, reported, strict=True)}
        problems.append(f"neither run renewed the host ({results}); it serves {served}, before {base.thumbprint}")
    elif len(set(news.values())) != 1:
        problems.append(f"both runs renewed, with different certificates {news}; the host serves {served}")
    else:
        new = next(iter(news.values()))
        if served != new:
            problems.append(f"{sorted(renewed)} reported {new} as new, the host serves {served}")
    if pfx is not None and served != pfx:
        problems.append(f"the host serves {served}, not the PFX's certificate {pfx}")
    if served == base.thumbprint:
        problems.append(f"the host still serves the old certificate {served}")
    outcome.check("one renewal, or an agreed one", problems)
    return pfx or new


def scenario_run(scenario: Scenario, args: argparse.Namespace) -> Outcome:
    outcome = Outcome(scenario)
    directory = pathlib.Path(tempfile.mkdtemp(prefix=f"xu-chaos-{scenario.mode}-{scenario.strategy}-{scenario.offset:g}-"))
    outcome.directory = directory
    lab_dir = directory / "lab"
    try:
        lab = start_lab(lab_dir, "--hosts", "1", "--scenario", "healthy", "--expiring-in", "10", "--restart-delay", str(args.restart_delay))
        extra: tuple[str, ...] = ("-e", f"xu_renew_mode={scenario.mode}", "-e", f"xu_renew_strategy={scenario.strategy}")
        pfx = None
        if scenario.mode == "replace":
            pfx_args, pfx = prepare_pfx(lab, directory)
            extra += pfx_args
        base = baseline(lab, HOST)

        runs, started = run_pair(lab, directory, extra, scenario.offset)
        outcome.runs += 2
        for run_id, run in zip(RUN_IDS, runs, strict=True):
            if isinstance(run, PlaybookRun):
                (directory / run_id / "stdout.log").write_text(run.stdout + "\n--- stderr ---\n" + run.stderr)
        reported = [summaries(run).get(HOST) if isinstance(run, PlaybookRun) else None for run in runs]
        outcome.notes.append(
            f"b started {started[1] - started[0]:.2f}s after a; "
            + ", ".join(f"{run_id}: {(s or {}).get('result')}" for run_id, s in zip(RUN_IDS, reported, strict=True))
        )

        check_runs(outcome, runs, reported)
        state = lab.state(HOST)
        served = next((e["thumbprint"] for e in state["service"]["listeners"] if e["scheme"] == "https"), None)
        new = check_winner(outcome, reported, base, served, pfx)

        # A run that did not renew changed nothing: the host's Application log has no entry of its run id (every change
        # the collection makes is logged there with the run's id).
        renewers = {run_id for run_id, s in zip(RUN_IDS, reported, strict=True) if s and s.get("result") == "renewed"}
        entries = [e for e in lab.events(HOST)[base.events:] if e["type"] == "eventlog"]
        for run_id in sorted(set(RUN_IDS) - renewers):
            own = [e for e in entries if f"run_id: {run_id}" in str(e.get("message", "")).splitlines()]
            outcome.check(
                f"{run_id} (did not renew) changed nothing",
                [f"it logged {len(own)} change(s): " + "; ".join(str(e.get("message", "")).splitlines()[0] for e in own[:5])] if own else [],
            )

        # Invariants 1-5 (exposure, backups, removals; the gate's rules and what is served at the end).
        problems = check_host(lab, HOST, base, new=new)
        for number in range(1, 6):
            outcome.check(f"invariant {number}", [p for p in problems if p.startswith(f"invariant {number}:")])
        outcome.check("no other invariant problem", [p for p in problems if not p.startswith(tuple(f"invariant {n}:" for n in range(1, 6)))])

        exposure = dict(state["firewall"]["exposure"])
        outcome.check("gate open", [] if exposure == base.exposure else [f"exposure {exposure}, before the runs {base.exposure}"])
        journal = lab.dir / "hosts" / HOST / "fs" / JOURNAL
        outcome.check("no journal left", [f"{JOURNAL} is left: {journal.read_text()[:400]}"] if journal.exists() else [])

        if outcome.failures:
            outcome.notes += [f"  {HOST} events (lab {lab_dir}):", *timeline(lab, base)]
            for run_id, run in zip(RUN_IDS, runs, strict=True):
                if isinstance(run, PlaybookRun):
                    failed = [f"    {run_id} failed task {e['task']!r}: {str(e['result'].get('msg'))[:300]}" for e in run.results if e["status"] == "failed"]
                    outcome.notes += failed
    except Exception as error:  # a scenario that could not run is a failure, the others go on
        outcome.check("scenario ran", [f"{type(error).__name__}: {error}", traceback.format_exc(limit=3)])
    finally:
        stop_lab(lab_dir)
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)
    return outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help=f"one offset per combination (the first of --offsets, default {QUICK_OFFSET:g} s)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    parser.add_argument("--offsets", nargs="+", type=float, help=f"seconds between the two runs' starts (default {' '.join(f'{o:g}' for o in OFFSETS)})")
    parser.add_argument("--jobs", type=int, choices=(1, 2), default=1, help="scenarios at a time (default 1: the offsets stay as given)")
    parser.add_argument("--restart-delay", type=float, default=0.3, help="seconds the lab's XU needs to start (default 0.3)")
    parser.add_argument("--keep", action="store_true", help="keep each scenario's directory (lab, PFX, both runs' output)")
    args = parser.parse_args()

    offsets = args.offsets or ([QUICK_OFFSET] if args.quick else list(OFFSETS))
    if args.quick:
        offsets = offsets[:1]
    if any(o < 0 for o in offsets):
        parser.error("offsets must not be negative")
    scenarios = [Scenario(m, s, o) for m in args.modes for s in args.strategies for o in offsets]
    print(f"chaos: {len(scenarios)} scenarios ({', '.join(args.modes)} x {', '.join(args.strategies)} x offsets {offsets}), {args.jobs} at a time", flush=True)

    began = time.monotonic()
    outcomes: list[Outcome] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(scenario_run, scenario, args) for scenario in scenarios]
        for future in concurrent.futures.as_completed(futures):
            outcome = future.result()
            outcomes.append(outcome)
            verdict = "ok" if not outcome.failures else f"FAILED ({len(outcome.failures)})"
            print(f"{outcome.scenario!s:<40} {verdict:<12} {outcome.checks:3d} checks  {outcome.notes[0] if outcome.notes else ''}", flush=True)
            if args.keep and outcome.directory:
                print(f"  kept {outcome.directory}", flush=True)

    failures = [f for o in outcomes for f in o.failures]
    if failures:
        print("\nFAILURES")
        for outcome in sorted(outcomes, key=lambda o: (o.scenario.mode, o.scenario.strategy, o.scenario.offset)):
            if outcome.failures:
                print("\n".join(outcome.failures))
                print("\n".join(outcome.notes))
    print(f"\nscenarios: {len(outcomes)}")
    print(f"runs: {sum(o.runs for o in outcomes)}")
    print(f"checks: {sum(o.checks for o in outcomes)}")
    print(f"failures: {len(failures)}")
    print(f"seconds: {time.monotonic() - began:.0f}")
    return 1 if failures else 0


if __name__ == "__main__":
    os.umask(0o077)
    sys.exit(main())
