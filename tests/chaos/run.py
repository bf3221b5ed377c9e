"""Chaos suite: overlapping renew runs, a fault at every primitive, and a controller killed or stalled at every call of
a renewal. No run may hurt a host.

Every scenario owns one host of a shared lab (certificate expiring in 10 days), with its mode and strategy as host
variables, its clock moved alone, and is checked from outside: the host's event log and state
(tests/integration/invariants.py) and what each run reported in its summary. Each run is one
`ansible-playbook playbooks/renew.yml` over the hosts of many scenarios, in one batch (``xu_renew_serial=100%``), so
runs are few and the scenarios many. Every sweep covers each combination of xu_renew_mode (replace, reuse_key) and
xu_renew_strategy (documented, minimal_outage). Where a run must stop at an exact call, tests/chaos/freeze stops the
host's worker right after its host answered that call (and before it sends anything more); the whole controller is then
killed (SIGKILL to ansible-playbook and every worker: ansible-core 2.19 and later give each worker a process group of its
own) or stalled (SIGSTOP to every process, later SIGCONT). Leases and gate deadlines are reached by moving the host's
clock, never by waiting.

reference: one clean renewal per combination, on a tls.json with a UTF-8 BOM, CRLF line ends and an unknown object of
number forms and escapes a JSON library would rewrite (``"Extra": {"Ratio": 2.50, "Limit": 1e3, "Name": "\\u00e9\\/x"}``),
as every sweep but overlap has it. It renews, and its event log lists the primitives each call sent: the assessment's
calls (before the first that changes something), then the act phase's, where the interrupting sweeps stop.

overlap: runs A and B over a host per combination, B started 0, 0.5, 1, 2, 3 or 5 s after A. Neither may hurt the other:
the invariants (no plain HTTP exposed, backups kept, no certificate removed while not served, the gate's rules gone, a
valid certificate served), no failed task (but the failure a busy host defers to the end), each run reports
``renewed``, ``busy`` or ``not_due``, exactly one renewal (or two that agree) with a new certificate served (replace:
the PFX's), a run that did not renew logged no change, the gate open and no journal left
(C:\\ProgramData\\xtractuniversal.tls\\renew.json).

faults: for each primitive a reference run sent, one host whose first call of it answers "Access is denied."
(``fail_primitive``) and one whose connection drops after it ran (``drop_connection``). The run reports ``renewed`` or
``failed`` (or ``blocked`` when a read before any change failed, naming it), a renewed host serves what it reported, a
failed one its old certificate or a valid new one, the invariants hold, the gate is open and no journal left (the fault
fires once: the run's own recovery gets past it); a host on its old certificate has tls.json byte for byte as before, one
on a new certificate keeps the unknown object's values.

kills: the controller killed right after each call of the act phase. At once: the calls were the reference's, nothing is
exposed. Once the host's clock is past the dead run's lease (its gate reopens on the way, at its deadline to the
millisecond, gate deadline 1 minute): the next run renews, or finds the host not due when the dead run had finished and
removed its journal; the invariants, the gate open, no journal, the unknown settings kept.

takeovers: the same, after each act call but the last, and then two runs that both read the dead run's journal before
either acts (each stopped after its assessment, then both woken): exactly one finishes the dead run and renews, with
as many restarts and restores as the kills' one next run at the same point; the other reports ``busy`` and logs no
change; no backup is restored twice; the invariants, one renewal, the gate open, no journal.

backups: killed where the dead run's journal names a settings backup (after a settings write, TLS off among them); the
backup is deleted by hand; the next run still finishes the dead run (from the journal's recorded values) and renews.

named: killed after the first act call, with a restart wait of an hour (so a call's limit lies an hour ahead). At once a
run with ``xu_renew_take_over=chaos-killed`` is refused (busy, nothing touched, the journal as left), since the dead run's
last call may still be running. Once the host's clock is past that call's limit but not past the lease: a run without
the name is busy and changes nothing, and one with it finishes the dead run and renews.

stalls: the controller stalled right after each act call but the last; past its lease (the host's clock), another run
takes the host over, finishes the stalled run and renews; the stalled controller, woken, must stop as ``busy`` without
changing anything on the host (no event after it woke but its calls), and the host is left as after one renewal.

long: the run's first restart hangs (the stop stays pending; the restart wait is an hour) while the host's clock passes
the 1-minute gate deadline, so the call outlasts the gate; the gate reopens at its deadline, the HTTP hold keeps plain
HTTP closed, and a second run finds the first run's lease still running: busy, changing nothing. Released, the first run
renews.

Prints a line per scenario, every failure (scenario, the problem, the host's change events and the failed tasks),
per-sweep counts and the totals; exit code 1 when any check failed.

    .venv/bin/python tests/chaos/run.py                  # every sweep, two jobs at a time
    .venv/bin/python tests/chaos/run.py --quick          # overlap at one offset (0.5 s); fail_primitive at each primitive
                                                         # that changes something, once: at reuse_key/documented, or else
                                                         # replace/minimal_outage
    .venv/bin/python tests/chaos/run.py --sweeps faults --modes replace --ops pfx_import --kinds drop_connection --keep
    .venv/bin/python tests/chaos/run.py --sweeps kills stalls --modes reuse_key
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import pathlib
import queue
import resource
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "tests" / "integration"), str(REPO)]

from tests.chaos.chaoslab import MODES, READ_ONLY_OPS, STRATEGIES, ChaosLab  # noqa: E402
from tests.chaos.checks import Outcome  # noqa: E402
from tests.chaos.interrupts import INTERRUPT_SWEEPS, interrupted, long_calls, points_of, stalls  # noqa: E402
from tests.chaos.sweeps import FAULT_KINDS, Fault, Reference, fault_runs, overlap, references  # noqa: E402

SWEEPS = ("overlap", "faults", "kills", "takeovers", "backups", "named", "stalls", "long")
REPORTED = ("reference", *SWEEPS)
OFFSETS = (0.0, 0.5, 1.0, 2.0, 3.0, 5.0)
QUICK_OFFSET = 0.5
QUICK_SWEEPS = ("overlap", "faults")
# --quick: each primitive that changes something, once, at the first of two combinations (one per mode, one per strategy)
# that sends it; failed only.
QUICK_FAULT_COMBINATIONS = (("reuse_key", "documented"), ("replace", "minimal_outage"))
QUICK_FAULT_KINDS = ("fail_primitive",)
# Which jobs a free worker takes first: the reference runs (every other sweep but overlap waits for them), then the longest.
FIRST, LONG, SHORT = 0, 1, 2

Job = Callable[[], list[Outcome]]


class Suite:
    """The sweeps as jobs, ``jobs`` at a time; each job's scenarios reported as it ends."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.root = pathlib.Path(tempfile.mkdtemp(prefix="xu-chaos-"))
        self.labs: list[ChaosLab] = []
        self.outcomes: list[Outcome] = []
        self.lock = threading.Lock()
        self.jobs: queue.PriorityQueue[tuple[int, int, str, Job | None]] = queue.PriorityQueue()
        self.order = itertools.count()
        self.open_jobs = 0
        self.done = threading.Condition(self.lock)
        self.overlap_lab: ChaosLab | None = None
        self.overlap_lock = threading.Lock()
        self.lab_cpu_s = 0.0

    # -- labs and jobs ---------------------------------------------------------------------------------------------------

    def lab(self, name: str, hosts: int) -> ChaosLab:
        lab = ChaosLab.up(self.root / name, hosts, self.args.restart_delay)
        with self.lock:
            self.labs.append(lab)
        return lab

    def submit(self, priority: int, name: str, job: Job) -> None:
        with self.lock:
            self.open_jobs += 1
        self.jobs.put((priority, next(self.order), name, job))

    def _work(self) -> None:
        while True:
            _priority, _order, name, job = self.jobs.get()
            if job is None:
                return
            began = time.monotonic()
            try:
                outcomes = job()
            except Exception as error:
                failed = Outcome("reference" if name == "reference" else name.split()[0], f"job {name}")
                failed.check("ran", [f"{type(error).__name__}: {error}", traceback.format_exc(limit=4)])
                outcomes = [failed]
            self.report(name, outcomes, time.monotonic() - began)
            with self.lock:
                self.open_jobs -= 1
                self.done.notify_all()

    def run(self) -> list[Outcome]:
        workers = [threading.Thread(target=self._work, daemon=True) for _worker in range(self.args.jobs)]
        for worker in workers:
            worker.start()
        try:
            with self.lock:
                self.done.wait_for(lambda: self.open_jobs == 0)
            for _worker in workers:
                self.jobs.put((99, next(self.order), "", None))
            self.lab_cpu_s = sum(lab.cpu_seconds() for lab in self.labs)
        finally:
            # Interrupted too (Ctrl-C): no lab is left serving.
            for lab in list(self.labs):
                lab.down()
        if self.args.keep:
            print(f"kept {self.root}", flush=True)
        else:
            shutil.rmtree(self.root, ignore_errors=True)
        return self.outcomes

    def report(self, name: str, outcomes: list[Outcome], seconds: float) -> None:
        with self.lock:
            self.outcomes += outcomes
            for outcome in outcomes:
                verdict = "ok" if not outcome.failures else f"FAILED ({len(outcome.failures)})"
                note = outcome.notes[0] if outcome.notes else ""
                print(f"{outcome.sweep:<9} {outcome.name:<62} {outcome.host:<6} {verdict:<11} {outcome.checks:3d} checks  {note}", flush=True)
                for extra in outcome.notes[1:2] if outcome.sweep == "reference" else ():
                    print(extra, flush=True)
            print(f"  {name}: {len(outcomes)} scenarios in {seconds:.0f}s", flush=True)

    # -- the sweeps ------------------------------------------------------------------------------------------------------

    def combinations(self) -> list[tuple[str, str]]:
        return [(m, s) for m in self.args.modes for s in self.args.strategies]

    def fault_combinations(self) -> list[tuple[str, str]]:
        if self.args.quick:
            return [c for c in QUICK_FAULT_COMBINATIONS if c in self.combinations()]
        return self.combinations()

    def start(self) -> None:
        sweeps = self.args.sweeps
        needed = set(self.fault_combinations() if "faults" in sweeps else [])
        if set(sweeps) & {*INTERRUPT_SWEEPS, "stalls"}:
            needed |= set(self.combinations())
        if needed:
            ordered = [c for c in self.combinations() if c in needed]
            self.submit(FIRST, "reference", lambda: self.references(ordered))
        if "long" in sweeps:
            self.submit(LONG, "long", lambda: long_calls(self.lab("long", len(self.combinations())), self.root / "runs-long", self.combinations()))
        if "overlap" in sweeps:
            for offset in self.args.offsets:
                self.submit(SHORT, f"overlap +{offset:g}s", functools.partial(self.overlap, offset))

    def references(self, combinations: list[tuple[str, str]]) -> list[Outcome]:
        lab = self.lab("reference", len(combinations))
        outcomes, found = references(lab, self.root / "runs-reference", combinations)
        for outcome in outcomes:
            outcome.sweep = "reference"
        sweeps = self.args.sweeps
        if "faults" in sweeps:
            faults = self.faults_of(found)
            self.submit(LONG, "faults", lambda: self.faults(faults))
        chosen = [found[c] for c in self.combinations() if c in found]
        interrupting = [s for s in INTERRUPT_SWEEPS if s in sweeps]
        if interrupting:
            self.submit(LONG, " ".join(interrupting), lambda: self.interrupted(chosen, interrupting))
        if "stalls" in sweeps:
            self.submit(LONG, "stalls", lambda: self.stalls(chosen))
        return outcomes

    def faults_of(self, found: dict[tuple[str, str], Reference]) -> list[Fault]:
        """The faults to inject: at each primitive the reference runs sent (--quick: each one that changes something,
        once, at the first combination that sends it)."""
        faults: list[Fault] = []
        taken: set[str] = set()
        for mode, strategy in self.fault_combinations():
            reference = found.get((mode, strategy))
            ops = [
                op for op in (reference.ops if reference else [])
                if (not self.args.quick or op not in READ_ONLY_OPS) and (not self.args.ops or op in self.args.ops) and op not in taken
            ]
            if self.args.quick:
                taken |= set(ops)
            faults += [Fault(mode, strategy, kind, op) for op in ops for kind in self.args.kinds]
        return faults

    def faults(self, faults: list[Fault]) -> list[Outcome]:
        if not faults:
            return []
        return fault_runs(self.lab("faults", len(faults)), self.root / "runs-faults", faults)

    def overlap(self, offset: float) -> list[Outcome]:
        with self.overlap_lock:
            if self.overlap_lab is None:
                self.overlap_lab = self.lab("overlap", len(self.combinations()) * len(self.args.offsets))
            lab = self.overlap_lab
        return overlap(lab, self.root / f"runs-overlap-{offset:g}", offset, self.combinations())

    def interrupted(self, chosen: list[Reference], sweeps: list[str]) -> list[Outcome]:
        hosts = sum(len(points_of(sweep, chosen)) for sweep in sweeps)
        if not hosts:
            return []
        return interrupted(self.lab("interrupted", hosts), self.root / "runs-interrupted", chosen, sweeps)

    def stalls(self, chosen: list[Reference]) -> list[Outcome]:
        # Each point twice: the stalled run woken after the taker, and while the taker holds the host.
        hosts = 2 * len(points_of("stalls", chosen))
        if not hosts:
            return []
        return stalls(self.lab("stalls", hosts), self.root / "runs-stalls", chosen)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true",
        help=f"only {' and '.join(QUICK_SWEEPS)} (unless --sweeps says): overlap at one offset (the first of --offsets, default "
        f"{QUICK_OFFSET:g} s); faults: fail_primitive at each primitive that changes something, once, at the first of "
        f"{' and '.join('/'.join(c) for c in QUICK_FAULT_COMBINATIONS)} that sends it",
    )
    parser.add_argument("--sweeps", nargs="+", choices=SWEEPS)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    parser.add_argument("--offsets", nargs="+", type=float, help=f"seconds between the two runs' starts (default {' '.join(f'{o:g}' for o in OFFSETS)})")
    parser.add_argument("--kinds", nargs="+", choices=FAULT_KINDS, help="faults to inject (default: both; --quick: fail_primitive)")
    parser.add_argument("--ops", nargs="+", help="inject faults only at these primitives (default: every one the reference run sent)")
    parser.add_argument("--jobs", type=int, default=2, help="jobs at a time (default 2: the machine's cores); each job runs one or more renew runs")
    parser.add_argument("--restart-delay", type=float, default=0.3, help="seconds the lab's XU needs to start (default 0.3)")
    parser.add_argument("--keep", action="store_true", help="keep the labs' directories and the runs' output")
    args = parser.parse_args()
    args.sweeps = args.sweeps or list(QUICK_SWEEPS if args.quick else SWEEPS)
    args.offsets = args.offsets or ([QUICK_OFFSET] if args.quick else list(OFFSETS))
    if args.quick:
        args.offsets = args.offsets[:1]
    if any(o < 0 for o in args.offsets):
        parser.error("offsets must not be negative")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    args.kinds = args.kinds or list(QUICK_FAULT_KINDS if args.quick else FAULT_KINDS)
    return args


def print_totals(outcomes: list[Outcome], began: float, lab_cpu_s: float) -> int:
    """Every failure with its notes, the counts per sweep and in all; the exit code."""
    failures = [f for o in outcomes for f in o.failures]
    if failures:
        print("\nFAILURES")
        for outcome in sorted(outcomes, key=lambda o: (o.sweep, o.name)):
            if outcome.failures:
                print("\n".join(outcome.failures))
                print("\n".join(outcome.notes))
    print()
    for sweep in REPORTED:
        done = [o for o in outcomes if o.sweep == sweep]
        if not done:
            continue
        fired = ""
        if sweep == "faults":
            never = [o.name for o in done if not o.notes or "fault never fired" in o.notes[0]]
            fired = f", faults fired: {len(done) - len(never)}/{len(done)}" + (f" (not: {', '.join(never)})" if never else "")
        print(
            f"{sweep}: scenarios: {len(done)}, runs taken part in: {sum(o.runs for o in done)}, checks: {sum(o.checks for o in done)}, "
            f"failures: {sum(len(o.failures) for o in done)}{fired}"
        )
    print(f"\nscenarios: {len(outcomes)}")
    print(f"checks: {sum(o.checks for o in outcomes)}")
    print(f"failures: {len(failures)}")
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"seconds: {time.monotonic() - began:.0f}")
    # What the suite cost the machine: the renew runs (ansible-playbook and its workers) and the labs' servers.
    print(f"cpu seconds: runs {children.ru_utime + children.ru_stime:.0f}, labs {lab_cpu_s:.0f}; load average at the end {os.getloadavg()[0]:.1f}")
    return 1 if failures else 0


def main() -> int:
    args = parse_args()
    suite = Suite(args)
    print(f"sweeps: {', '.join(args.sweeps)}; {', '.join(args.modes)} x {', '.join(args.strategies)}; {args.jobs} jobs at a time", flush=True)
    began = time.monotonic()
    suite.start()
    outcomes = suite.run()
    return print_totals(outcomes, began, suite.lab_cpu_s)


if __name__ == "__main__":
    os.umask(0o077)
    sys.exit(main())
