"""Chaos suite: overlapping renew runs, and a fault at every primitive a renewal sends. No run may hurt a host.

Two sweeps, each scenario on a fresh one-host lab whose certificate expires in 10 days, checked from outside through
the lab's event log and state only (tests/integration/invariants.py) and through what each run reported in its
summary. Both sweeps run for every combination of xu_renew_mode (replace, reuse_key) and xu_renew_strategy
(documented, minimal_outage).

overlap: two `ansible-playbook playbooks/renew.yml` runs (run ids chaos-a and chaos-b), the second started `offset`
seconds after the first. Once both have ended:

* the safety invariants of invariants.check_host: no plain HTTP exposed, backups kept, no certificate removed while
  not served, the gate's rules gone, a valid certificate served;
* each run ends with rc 0 and a summary for the host; a run that did not renew reports ``busy`` (the other run held
  the host) or ``not_due`` (the other run had already renewed it), never ``failed``;
* exactly one run renewed the host, or both did and agree on the certificate now served; the host serves a new
  certificate (for replace mode: the one in the PFX);
* the host's exposure is as before the runs (gate open) and no journal is left
  (C:\\ProgramData\\xtractuniversal.tls\\renew.json).

faults: a clean reference run per combination lists the primitives the renewal sends (the ``ops`` of the host's
``remote_call`` events); then, for each of them, one run with ``fail_primitive=<op>`` (the primitive's first
occurrence answers "Access is denied.") and one with ``drop_connection=<op>`` (the call that carries it runs, and its
connection drops before the answer). Before every run of this sweep (the reference run too) the host's tls.json is
rewritten with a UTF-8 BOM, CRLF line ends and an unknown object with number forms and escapes a JSON library would
rewrite (``"Extra": {"Ratio": 2.50, "Limit": 1e3, "Name": "\\u00e9\\/x"}``). After each run:

* the invariants of invariants.check_host, as above;
* the run's summary reports ``renewed`` or ``failed``, nothing else (the reference run: ``renewed``);
* a renewed host serves the new certificate it reported; a failed one the old certificate or a valid new one (for
  replace mode: the PFX's);
* the gate is open (exposure as before the run), and no journal is left: the fault fires once, so the run's own
  recovery gets past it and completes;
* a host left on its old certificate has tls.json byte for byte as before the run (a rollback never re-serialises);
  a host on a new one keeps the unknown object's values.

kills: for each combination, the controller is killed (SIGKILL to ansible-playbook and every fork) right after the
host answered its k-th remote call of the run, for every k from 1 to one before the run's last call (the calls per
host of docs/renew.md: 2, 3, 3 and 6), with the role's shortest gate deadline (1 minute) and the odd tls.json. Then:

* at once, the invariants of invariants.check_host for a killed run (the gate reopens at its deadline; plain HTTP is
  never open to outside clients);
* once the lab's clock is advanced past the dead run's lease (no waiting: the host's clock decides, and its gate's
  auto-open task runs at its deadline on the way), the next run (`chaos-next`) resumes and renews: rc 0, ``renewed`` (or
  ``not_due`` when the call the run was killed after had already finished the renewal), the host serves a new
  certificate, the invariants hold, the gate is open, no journal is left, and tls.json keeps the unknown object's
  values.

Prints a line per scenario, every failure (scenario, the problem, the host's change events and the failed tasks),
per-sweep counts and the totals; exit code 1 when any check failed.

    .venv/bin/python tests/chaos/run.py                  # the full sweep: 4 combinations x 6 offsets; every primitive x 2 faults
    .venv/bin/python tests/chaos/run.py --jobs 2         # the same, two scenarios at a time
    .venv/bin/python tests/chaos/run.py --quick          # overlap at one offset (0.5 s); fail_primitive at each primitive
                                                         # that changes something, once: at reuse_key/documented, or else
                                                         # replace/minimal_outage; two scenarios at a time
    .venv/bin/python tests/chaos/run.py --sweeps faults --modes replace --ops pfx_import --kinds drop_connection --keep
    .venv/bin/python tests/chaos/run.py --sweeps kills --jobs 2      # the kill points alone
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import pathlib
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from cryptography.hazmat.primitives.serialization import Encoding, pkcs12  # noqa: E402
from invariants import GATE_GROUP, XU_ACCOUNT, Baseline, baseline, check_gate, check_host  # noqa: E402
from labtools import BIN, CALLBACKS, Lab, PlaybookRun, parse_time, start_lab, stop_lab  # noqa: E402

from xulab import control  # noqa: E402

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
SWEEPS = ("overlap", "faults", "kills")
# Remote calls per host of a renewal (docs/renew.md): the controller is killed after each but the last.
CALLS_PER_HOST = {("replace", "documented"): 3, ("replace", "minimal_outage"): 2, ("reuse_key", "documented"): 6, ("reuse_key", "minimal_outage"): 3}
# The faults sweep: which faults, at which primitives. --quick: each primitive that changes something, once, at the first
# of two combinations (one per mode, one per strategy) that sends it; failed only.
FAULT_KINDS = ("fail_primitive", "drop_connection")
READ_ONLY_OPS = frozenset({"discover", "cert_list", "fw_get", "task_get", "port_probe", "journal_read"})
QUICK_FAULT_COMBINATIONS = (("reuse_key", "documented"), ("replace", "minimal_outage"))
QUICK_FAULT_KINDS = ("fail_primitive",)
FAULT_RUN_ID = "chaos-fault"
REFERENCE_RUN_ID = "chaos-reference"
FAULT_RESULTS = ("renewed", "failed")
TLS_JSON = pathlib.Path("C/Program Files/XtractUniversal/config/servers/tls.json")
# The unknown object the odd settings file carries: literal text a JSON library would rewrite (2.50, 1e3, the escapes).
EXTRA_TEXT = '"Extra": {"Ratio": 2.50, "Limit": 1e3, "Name": "\\u00e9\\/x"}'


class FastLab(Lab):
    """A Lab whose state reads and faults go to the lab's control socket in this process: no `xulab` process each time."""

    def state(self, host: str) -> dict[str, Any]:
        state: dict[str, Any] = control.request(self.dir, "state", host=host)
        return state

    def fault(self, host: str, **settings: object) -> None:
        control.request(self.dir, "fault", host=host, set={key: str(value) for key, value in settings.items()})

    def advance_past(self, host: str, moment: str) -> dict[str, Any]:
        now = parse_time(control.request(self.dir, "clock", host=host)["hosts"][host]["now"])
        clocks: dict[str, Any] = control.request(self.dir, "clock", advance=max(0.0, parse_time(moment) - now) + 1)
        return clocks


def fresh_lab(directory: pathlib.Path, restart_delay: float) -> FastLab:
    """A one-host lab whose certificate expires in 10 days."""
    start_lab(directory, "--hosts", "1", "--scenario", "healthy", "--expiring-in", "10", "--restart-delay", str(restart_delay))
    return FastLab(directory)


@dataclasses.dataclass
class Scenario:
    mode: str
    strategy: str
    offset: float

    def __str__(self) -> str:
        return f"{self.mode}/{self.strategy}/+{self.offset:g}s"


@dataclasses.dataclass
class FaultScenario:
    mode: str
    strategy: str
    kind: str | None = None  # None: the clean reference run
    op: str | None = None

    def __str__(self) -> str:
        return f"{self.mode}/{self.strategy} " + (f"{self.kind}={self.op}" if self.kind else "reference")


@dataclasses.dataclass
class KillScenario:
    mode: str
    strategy: str
    after_call: int

    def __str__(self) -> str:
        return f"{self.mode}/{self.strategy} kill after call {self.after_call}"


@dataclasses.dataclass
class Outcome:
    scenario: Scenario | FaultScenario | KillScenario
    sweep: str = "overlap"
    runs: int = 0
    checks: int = 0
    failures: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    directory: pathlib.Path | None = None
    seconds: float = 0.0

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


@contextlib.contextmanager
def scenario_directory(outcome: Outcome, name: str, args: argparse.Namespace) -> Iterator[pathlib.Path]:
    """A directory for one scenario (its lab in ``lab``); the lab is stopped and the directory removed (unless --keep) at the end.

    An exception in the scenario is recorded as a failed check: a scenario that could not run is a failure, the others go on.
    """
    began = time.monotonic()
    directory = pathlib.Path(tempfile.mkdtemp(prefix=f"xu-chaos-{name}-"))
    outcome.directory = directory
    try:
        yield directory
    except Exception as error:
        outcome.check("scenario ran", [f"{type(error).__name__}: {error}", traceback.format_exc(limit=3)])
    finally:
        stop_lab(directory / "lab")
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)
        outcome.seconds = time.monotonic() - began


def renew_lab(directory: pathlib.Path, mode: str, strategy: str, args: argparse.Namespace, *extra: str) -> tuple[FastLab, tuple[str, ...], str | None]:
    """A fresh one-host lab in ``directory``/lab, the renew playbook's extra vars for the mode and strategy, and the PFX (replace)."""
    lab = fresh_lab(directory / "lab", args.restart_delay)
    renew_vars: tuple[str, ...] = ("-e", f"xu_renew_mode={mode}", "-e", f"xu_renew_strategy={strategy}", *extra)
    pfx = None
    if mode == "replace":
        pfx_args, pfx = prepare_pfx(lab, directory)
        renew_vars += pfx_args
    return lab, renew_vars, pfx


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


def check_host_after_runs(
    outcome: Outcome, lab: Lab, base: Baseline, state: dict[str, Any], new: str | None, *, no_journal: bool, unknown_settings_kept: bool,
) -> None:
    """The checks of the host once a sweep's runs ended, from its ``state`` read then.

    Invariants 1-5 of invariants.check_host (``new``: the certificate the host should now serve, None for the old one),
    one check each so that a failure names its invariant, and the gate open (exposure as at the baseline). With
    ``no_journal`` no renew journal is left; with ``unknown_settings_kept`` tls.json keeps the odd settings' unknown object.
    """
    problems = check_host(lab, HOST, base, new=new)
    numbered = tuple(f"invariant {number}:" for number in range(1, 6))
    for number, prefix in enumerate(numbered, start=1):
        outcome.check(f"invariant {number}", [p for p in problems if p.startswith(prefix)])
    outcome.check("no other invariant problem", [p for p in problems if not p.startswith(numbered)])

    exposure = dict(state["firewall"]["exposure"])
    outcome.check("gate open", [] if exposure == base.exposure else [f"exposure {exposure}, at the baseline {base.exposure}"])

    if no_journal:
        # Both views of the journal: its file (left even when empty) and what the lab's state lists under renew.
        journal = lab.dir / "hosts" / HOST / "fs" / JOURNAL
        left = journal.read_text()[:400] if journal.exists() else state["journals"].get("renew")
        outcome.check("no journal left", [] if left is None else [f"{JOURNAL} is left: {left}"])

    if unknown_settings_kept:
        before, after = extra_of(base.tls_json), extra_of((lab.dir / "hosts" / HOST / "fs" / TLS_JSON).read_bytes())
        outcome.check("the unknown settings kept", [] if after == before else [f"Extra was {before}, is {after}"])


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
    with scenario_directory(outcome, f"{scenario.mode}-{scenario.strategy}-{scenario.offset:g}", args) as directory:
        lab, extra, pfx = renew_lab(directory, scenario.mode, scenario.strategy, args)
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
        check_host_after_runs(outcome, lab, base, state, new, no_journal=True, unknown_settings_kept=False)

        if outcome.failures:
            outcome.notes += [f"  {HOST} events (lab {lab.dir}):", *timeline(lab, base)]
            for run_id, run in zip(RUN_IDS, runs, strict=True):
                if isinstance(run, PlaybookRun):
                    failed = [f"    {run_id} failed task {e['task']!r}: {str(e['result'].get('msg'))[:300]}" for e in run.results if e["status"] == "failed"]
                    outcome.notes += failed
    return outcome

# -- the faults sweep ------------------------------------------------------------------------------


def odd_settings(lab: Lab) -> bytes:
    """The host's tls.json rewritten from its current JSON with a BOM, CRLF and the unknown object EXTRA_TEXT; its bytes.

    The approach of tests/integration/test_byte_exact.odd_settings: the document as json.dumps writes it, the literal
    object spliced in before the closing brace.
    """
    path = lab.dir / "hosts" / HOST / "fs" / TLS_JSON
    document = json.loads(path.read_bytes().decode("utf-8-sig"))
    body = json.dumps(document, indent=2)[:-2]
    text = body + ",\n  " + EXTRA_TEXT + "\n}\n"
    data = b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8")
    path.write_bytes(data)
    return data


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


def check_certificate(state: dict[str, Any], base: Baseline, summary: dict[str, Any] | None, served: str | None, pfx: str | None) -> list[str]:
    """A renewed host serves the new certificate it reported; a failed one its old certificate or a valid new one."""
    result = (summary or {}).get("result")
    reported = str((summary or {}).get("new_thumbprint") or "").upper() or None
    if served is None:
        return ["the host serves no certificate over https"]
    if result == "renewed":
        if served == base.thumbprint:
            return [f"reports renewed ({reported}), the host still serves the old certificate {served}"]
        if served != reported:
            return [f"reports renewed with {reported}, the host serves {served}"]
    if served == base.thumbprint:
        return []
    problems = []
    certificate = next((c for c in state["certificates"] if c["thumbprint"] == served), None)
    if certificate is None:
        return [f"the host serves {served}, a certificate not in the store"]
    if certificate.get("archived"):
        problems.append(f"the new certificate {served} is archived")
    if not certificate.get("has_private_key") or not key_readable(certificate):
        problems.append(f"the new certificate {served} has no private key the service can read")
    not_after = datetime.datetime.fromisoformat(str(certificate["not_after"]).replace("Z", "+00:00"))
    if not_after <= datetime.datetime.now(datetime.UTC):
        problems.append(f"the new certificate {served} is not valid: it expired {certificate['not_after']}")
    if pfx is not None and served != pfx:
        problems.append(f"the host serves {served}, neither the old {base.thumbprint} nor the PFX's {pfx}")
    return problems


def remote_ops(lab: Lab, base: Baseline) -> list[str]:
    """The distinct primitives the host was sent since the baseline, in the order first sent."""
    ops: list[str] = []
    for event in lab.events(HOST)[base.events:]:
        for op in event.get("ops") or [] if event["type"] == "remote_call" else []:
            if op not in ops:
                ops.append(op)
    return ops


def fault_run(scenario: FaultScenario, args: argparse.Namespace) -> tuple[Outcome, list[str]]:
    """One renew run on a fresh lab, with the odd settings file and the scenario's fault; its checks, and the primitives sent."""
    outcome = Outcome(scenario, sweep="faults")
    name = f"{scenario.kind}-{scenario.op}" if scenario.kind else "reference"
    ops: list[str] = []
    run_id = FAULT_RUN_ID if scenario.kind else REFERENCE_RUN_ID
    with scenario_directory(outcome, f"{scenario.mode}-{scenario.strategy}-{name}", args) as directory:
        lab, extra, pfx = renew_lab(directory, scenario.mode, scenario.strategy, args)
        odd_settings(lab)
        base = baseline(lab, HOST)
        if scenario.kind:
            lab.fault(HOST, **{scenario.kind: scenario.op})

        tmp = directory / run_id
        tmp.mkdir()
        run = lab.playbook(PLAYBOOK, tmp_path=tmp, extra_args=(*extra, "-e", f"xu_renew_run_id={run_id}"))
        outcome.runs += 1
        (tmp / "stdout.log").write_text(run.stdout + "\n--- stderr ---\n" + run.stderr)
        ops = remote_ops(lab, base)
        check_fault_run(outcome, lab, base, run, pfx)
    return outcome, ops


def check_fault_run(outcome: Outcome, lab: Lab, base: Baseline, run: PlaybookRun, pfx: str | None) -> None:
    """The checks of one run of the faults sweep, from its summary and the host's events and state."""
    scenario = outcome.scenario
    assert isinstance(scenario, FaultScenario)
    summary = summaries(run).get(HOST)
    fired = [e for e in lab.events(HOST)[base.events:] if e["type"] == "fault" and e.get("action") == "consumed"]

    # What the run reported.
    if summary is None:
        tail = run.stdout.strip().splitlines()[-3:]
        outcome.check("summary", [f"no summary for the host (rc {run.rc}; last lines: {' | '.join(tail)})"])
    else:
        outcome.check("summary", [])
    result = (summary or {}).get("result")
    allowed = FAULT_RESULTS if scenario.kind else ("renewed",)
    reason = str((summary or {}).get("reason") or "")
    # A failed read before any change blocks the host, and says that it is a read that failed (never a made-up cause).
    honest_block = result == "blocked" and scenario.op in READ_ONLY_OPS and f"{scenario.op}:" in reason and "could not be read" in reason
    if summary is not None:
        outcome.check(
            "result",
            [] if result in allowed or honest_block else [f"reports {result!r} (step {summary.get('failed_step')}): {reason}"],
        )

    # What the host shows.
    state = lab.state(HOST)
    served = next((e["thumbprint"] for e in state["service"]["listeners"] if e["scheme"] == "https"), None)
    on_old = served is not None and served == base.thumbprint
    outcome.check("served certificate", check_certificate(state, base, summary, served, pfx))

    # One fault fires once: the run's own recovery gets past it, so it completes and removes its journal. A host on a
    # new certificate keeps the unknown settings.
    check_host_after_runs(outcome, lab, base, state, None if on_old else served, no_journal=True, unknown_settings_kept=not on_old)
    if on_old:
        settings = (lab.dir / "hosts" / HOST / "fs" / TLS_JSON).read_bytes()
        outcome.check(
            "old certificate: tls.json byte for byte as before",
            [] if settings == base.tls_json else [
                f"tls.json differs ({len(base.tls_json)} bytes before, {len(settings)} now; "
                f"sha256 {hashlib.sha256(base.tls_json).hexdigest()[:12]} -> {hashlib.sha256(settings).hexdigest()[:12]}); "
                f"now begins {settings[:160]!r}"
            ],
        )

    outcome.notes.append(
        f"{result} (step {(summary or {}).get('failed_step')}), rc {run.rc}, serves the "
        + ("old certificate" if on_old else f"new {served}")
        + ("" if not scenario.kind else ", fault fired" if fired else ", fault never fired")
    )
    if summary is not None and result != "renewed":
        outcome.notes.append(f"  reason: {str(summary.get('reason'))[:400]}")
    if outcome.failures:
        outcome.notes += [f"  {HOST} events (lab {lab.dir}):", *timeline(lab, base)]
        outcome.notes += [f"    failed task {e['task']!r}: {str(e['result'].get('msg'))[:300]}" for e in run.results if e["status"] == "failed"]


def fault_scenarios(reference: FaultScenario, ops: list[str], args: argparse.Namespace, taken: set[str] | None = None) -> list[FaultScenario]:
    """The faults to inject after a reference run that sent ``ops``; none at the primitives in ``taken``."""
    chosen = [op for op in ops if (not args.quick or op not in READ_ONLY_OPS) and (not args.ops or op in args.ops) and op not in (taken or set())]
    return [FaultScenario(reference.mode, reference.strategy, kind, op) for op in chosen for kind in args.kinds]


def remote_calls(lab: Lab, base: Baseline) -> int:
    return sum(1 for e in lab.events(HOST)[base.events:] if e["type"] == "remote_call")


def kill_run(scenario: KillScenario, args: argparse.Namespace) -> Outcome:
    """Kill the controller after the host answered its k-th call; the next run, once the lease has expired, must renew."""
    outcome = Outcome(scenario, sweep="kills")
    with scenario_directory(outcome, f"kill-{scenario.mode}-{scenario.strategy}-{scenario.after_call}", args) as directory:
        lab, extra, pfx = renew_lab(directory, scenario.mode, scenario.strategy, args, "-e", "xu_renew_gate_auto_open_after=1")
        odd_settings(lab)
        base = baseline(lab, HOST)
        reached = killed_run(lab, base, extra, scenario.after_call, directory / "killed.log")
        outcome.runs += 1
        outcome.check("kill point reached", [] if reached >= scenario.after_call else [f"the run ended after {reached} call(s)"])
        # Right after the kill: nothing exposed; the gate (if closed) reopens at its deadline.
        # The gate's auto-open task (certreq's one-shot tasks are registered too, without a run time).
        registered = [e for e in lab.events(HOST)[base.events:] if e["type"] == "task" and e["action"] == "registered" and e.get("run_at_utc")]
        gate_deadline = None
        if registered:
            gate_deadline = parse_time(registered[-1]["run_at_utc"])
        killed_problems = check_host(lab, HOST, base, killed_deadline=gate_deadline, end=False)
        outcome.check("invariants after the kill", killed_problems)
        left_closed = any(rule.get("group") == GATE_GROUP for rule in lab.state(HOST)["firewall"]["rules"])

        advance_past_the_lease(lab)
        if left_closed:
            # The dead run's gate reopened by itself, at its deadline on the host's clock, neither before nor after.
            outcome.check("the gate reopened at its deadline", check_gate(lab, HOST, lab.events(HOST)[base.events:], killed_deadline=gate_deadline))
        tmp = directory / "next"
        tmp.mkdir()
        run = lab.playbook(PLAYBOOK, tmp_path=tmp, extra_args=(*extra, "-e", "xu_renew_run_id=chaos-next"))
        outcome.runs += 1
        (tmp / "stdout.log").write_text(run.stdout + "\n--- stderr ---\n" + run.stderr)
        check_next_run(outcome, lab, base, run, pfx)
        outcome.notes.insert(0, f"killed after call {reached}; " + outcome.notes.pop(0))
        if outcome.failures:
            outcome.notes += [f"  {HOST} events (lab {lab.dir}):", *timeline(lab, base)]
    return outcome


def killed_run(lab: Lab, base: Baseline, extra: tuple[str, ...], after_call: int, log_path: pathlib.Path) -> int:
    """Start a run and SIGKILL its controller (every fork too) once the host answered ``after_call`` calls; the calls reached."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_CALLBACK_PLUGINS=str(CALLBACKS), ANSIBLE_NOCOLOR="1")
    command = [str(BIN / "ansible-playbook"), "-i", str(lab.inventory), PLAYBOOK, *extra, "-e", "xu_renew_run_id=chaos-killed"]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True)
        deadline = time.monotonic() + 300
        while remote_calls(lab, base) < after_call and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        reached = remote_calls(lab, base)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return reached


def advance_past_the_lease(lab: Lab) -> None:
    """The dead run's lease must expire before another run may take the host over: the host's clock is moved past it
    (its gate's auto-open task, due earlier, runs on the way, at its deadline)."""
    journal = lab.state(HOST)["journals"].get("renew")
    lease = json.loads(journal).get("lease_expires") if journal else None
    if lease:
        lab.advance_past(HOST, lease)


def check_next_run(outcome: Outcome, lab: Lab, base: Baseline, run: PlaybookRun, pfx: str | None) -> None:
    """The run after the kill renews, and leaves the host as every renewal must."""
    summary = summaries(run).get(HOST)
    result = (summary or {}).get("result")
    state = lab.state(HOST)
    served = next((e["thumbprint"] for e in state["service"]["listeners"] if e["scheme"] == "https"), None)
    # The killed run may have finished its change (and removed its journal) in the call it was killed after: then the
    # next run finds a renewed host, not due. Otherwise it must renew.
    finished_before = result == "not_due" and served not in (None, base.thumbprint)
    outcome.check("next run renews", [] if run.rc == 0 and (result == "renewed" or finished_before) else [
        f"rc {run.rc}, reports {result!r}: {str((summary or {}).get('reason'))[:300]}"])
    outcome.check("served certificate", check_certificate(state, base, summary, served, pfx))
    check_host_after_runs(outcome, lab, base, state, served if served != base.thumbprint else None, no_journal=True, unknown_settings_kept=True)
    outcome.notes.append(f"next run: {result} (resumed {(summary or {}).get('resumed')}), rc {run.rc}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true",
        help=f"overlap: one offset per combination (the first of --offsets, default {QUICK_OFFSET:g} s); faults: fail_primitive at each "
        f"primitive that changes something, once, at the first of {' and '.join('/'.join(c) for c in QUICK_FAULT_COMBINATIONS)} that sends it",
    )
    parser.add_argument("--sweeps", nargs="+", choices=SWEEPS, default=list(SWEEPS))
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    parser.add_argument("--offsets", nargs="+", type=float, help=f"seconds between the two runs' starts (default {' '.join(f'{o:g}' for o in OFFSETS)})")
    parser.add_argument("--kinds", nargs="+", choices=FAULT_KINDS, help="faults to inject (default: both; --quick: fail_primitive)")
    parser.add_argument("--ops", nargs="+", help="inject faults only at these primitives (default: every one the reference run sent)")
    parser.add_argument(
        "--jobs", type=int, choices=(1, 2),
        help="scenarios at a time (default 1, the offsets stay as given; --quick: 2, the offsets are then only roughly kept)",
    )
    parser.add_argument("--restart-delay", type=float, default=0.3, help="seconds the lab's XU needs to start (default 0.3)")
    parser.add_argument("--keep", action="store_true", help="keep each scenario's directory (lab, PFX, the runs' output)")
    args = parser.parse_args()
    args.offsets = args.offsets or ([QUICK_OFFSET] if args.quick else list(OFFSETS))
    if args.quick:
        args.offsets = args.offsets[:1]
    if any(o < 0 for o in args.offsets):
        parser.error("offsets must not be negative")
    args.kinds = args.kinds or list(QUICK_FAULT_KINDS if args.quick else FAULT_KINDS)
    args.jobs = args.jobs or (2 if args.quick else 1)
    return args


def run_sweeps(args: argparse.Namespace, scenarios: list[Scenario], references: list[FaultScenario], kills: list[KillScenario]) -> list[Outcome]:
    """Every scenario, ``args.jobs`` at a time; each reference run's faults as soon as it has listed its primitives.

    --quick: once every reference run has, and each primitive at the first combination (in QUICK_FAULT_COMBINATIONS'
    order) that sends it.
    """
    outcomes: list[Outcome] = []
    listed: dict[int, tuple[FaultScenario, Outcome, list[str]]] = {}

    def report(outcome: Outcome) -> None:
        outcomes.append(outcome)
        verdict = "ok" if not outcome.failures else f"FAILED ({len(outcome.failures)})"
        note = outcome.notes[0] if outcome.notes else ""
        print(f"{outcome.sweep:<8} {outcome.scenario!s:<52} {verdict:<12} {outcome.checks:3d} checks {outcome.seconds:4.0f}s  {note}", flush=True)
        if args.keep and outcome.directory:
            print(f"  kept {outcome.directory}", flush=True)

    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        pending: dict[concurrent.futures.Future[Any], Scenario | FaultScenario | KillScenario] = {}
        for reference in references:
            pending[pool.submit(fault_run, reference, args)] = reference
        for scenario in scenarios:
            pending[pool.submit(scenario_run, scenario, args)] = scenario
        for kill in kills:
            pending[pool.submit(kill_run, kill, args)] = kill
        while pending:
            done, _pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                submitted = pending.pop(future)
                if isinstance(submitted, (Scenario, KillScenario)):
                    report(future.result())
                    continue
                outcome, ops = future.result()
                if submitted.kind is not None:
                    report(outcome)
                    continue
                listed[references.index(submitted)] = (submitted, outcome, ops)
                if args.quick and len(listed) < len(references):
                    continue
                taken: set[str] = set()
                for index in sorted(listed):
                    reference, reference_outcome, reference_ops = listed.pop(index)
                    faults = fault_scenarios(reference, reference_ops, args, taken if args.quick else None)
                    if not faults and not taken:
                        reference_outcome.check("primitives to fault", [f"the reference run sent {reference_ops}, none to inject a fault at"])
                    report(reference_outcome)
                    print(f"  {reference}: {len(reference_ops)} primitives sent ({', '.join(reference_ops)}); {len(faults)} fault runs follow", flush=True)
                    taken |= {fault.op for fault in faults if fault.op}
                    for fault in faults:
                        pending[pool.submit(fault_run, fault, args)] = fault
    return outcomes


def print_totals(outcomes: list[Outcome], began: float) -> int:
    """Every failure with its notes, the counts per sweep and in all; the exit code."""
    failures = [f for o in outcomes for f in o.failures]
    if failures:
        print("\nFAILURES")
        for outcome in sorted(outcomes, key=lambda o: (o.sweep, str(o.scenario))):
            if outcome.failures:
                print("\n".join(outcome.failures))
                print("\n".join(outcome.notes))
    print()
    for sweep in SWEEPS:
        done = [o for o in outcomes if o.sweep == sweep]
        if not done:
            continue
        fired = ""
        if sweep == "faults":
            injected = [o for o in done if isinstance(o.scenario, FaultScenario) and o.scenario.kind]
            never = [str(o.scenario) for o in injected if not o.notes or "fault never fired" in o.notes[0]]
            fired = f", faults fired: {len(injected) - len(never)}/{len(injected)}" + (f" (not: {', '.join(never)})" if never else "")
        print(
            f"{sweep}: scenarios: {len(done)}, runs: {sum(o.runs for o in done)}, checks: {sum(o.checks for o in done)}, "
            f"failures: {sum(len(o.failures) for o in done)}{fired}"
        )
    print(f"\nscenarios: {len(outcomes)}")
    print(f"runs: {sum(o.runs for o in outcomes)}")
    print(f"checks: {sum(o.checks for o in outcomes)}")
    print(f"failures: {len(failures)}")
    print(f"seconds: {time.monotonic() - began:.0f}")
    return 1 if failures else 0


def main() -> int:
    args = parse_args()
    scenarios = [Scenario(m, s, o) for m in args.modes for s in args.strategies for o in args.offsets] if "overlap" in args.sweeps else []
    combinations = [(m, s) for m in args.modes for s in args.strategies]
    if args.quick:
        combinations = [c for c in QUICK_FAULT_COMBINATIONS if c in combinations]
    references = [FaultScenario(m, s) for m, s in combinations] if "faults" in args.sweeps else []
    if scenarios:
        print(f"overlap: {len(scenarios)} scenarios ({', '.join(args.modes)} x {', '.join(args.strategies)} x offsets {args.offsets})", flush=True)
    if references:
        print(
            f"faults: {', '.join(args.kinds)} at {'the primitives that change something' if args.quick else 'every primitive'}"
            f" of {', '.join('/'.join(c) for c in combinations)}, after a reference run each; tls.json with a BOM, CRLF and {EXTRA_TEXT}",
            flush=True,
        )
    kills = [
        KillScenario(m, s, k) for m, s in [(m, s) for m in args.modes for s in args.strategies] for k in range(1, CALLS_PER_HOST[(m, s)])
    ] if "kills" in args.sweeps and not args.quick else []
    if kills:
        print(f"kills: {len(kills)} kill points (after each remote call but the last of {', '.join(args.modes)} x {', '.join(args.strategies)})", flush=True)
    print(f"{args.jobs} scenario(s) at a time", flush=True)
    began = time.monotonic()
    return print_totals(run_sweeps(args, scenarios, references, kills), began)


if __name__ == "__main__":
    os.umask(0o077)
    sys.exit(main())
