"""The renew role and playbook against 10-host labs: both modes x both strategies, faults at each step, a killed controller.

Every check reads the lab (its event log and state), not what the role says about itself,
except where the role's own report is what is tested (the summary, the failed step).
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from invariants import GATE_GROUP, HOLD_GROUP, Baseline, baseline, check_host, served_thumbprint
from labtools import BIN, CALLBACKS, REPO, Lab, PlaybookRun, kill_controller, parse_time

from xulab import control

# The lease's margin over a run's longest call; the collection is importable from the checkout's link.
sys.path.insert(0, str(REPO / ".collections"))
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.journal._lease import LEASE_MARGIN_S

PLAYBOOK = str(REPO / "playbooks" / "renew.yml")
PASSWORD = "lab-pfx-Secret-7"  # noqa: S105 - the lab's PFX password, for the check that it never shows up
RESTART_DELAY = "0.2"
# The engine's two tasks: each returns the host's summary (the assessment's for a host with nothing to do).
SUMMARY_TASKS = ("Renew | Renew the certificate if it is due, step by step, rolling back a failed step",
                 "Assess | Read the server and decide what a renewal does on it")
# The mixed scenario cycles healthy, expiring soon, expired, TLS off, bound certificate missing.
MIXED = {
    "healthy": {"xu01", "xu06"},
    "expiring": {"xu02", "xu07"},
    "expired": {"xu03", "xu08"},
    "tls_off": {"xu04", "xu09"},
    "missing": {"xu05", "xu10"},
}
# Hosts that are untouched in a run: no settings, certificate, service or firewall change.
CHANGE_EVENTS = {"settings_write", "settings_restore", "settings_remove", "cert_add", "cert_remove", "cert_archive", "service", "firewall", "key_acl"}


def renew(lab: Lab, tmp_path: pathlib.Path, *extra: str, env: dict[str, str] | None = None) -> PlaybookRun:
    return lab.playbook(PLAYBOOK, tmp_path=tmp_path, extra_args=("-f", "10", *extra), env=env)


def summaries(run: PlaybookRun) -> dict[str, dict[str, Any]]:
    found = {}
    for entry in run.results:
        summary = entry["result"].get("summary")
        # Results arrive in order: the act phase's summary replaces the assessment's.
        if entry["task"].endswith(SUMMARY_TASKS) and isinstance(summary, dict) and summary.get("result"):
            found[entry["host"]] = summary
    return found


def by_result(found: dict[str, dict[str, Any]]) -> dict[str, set[str]]:
    grouped: dict[str, set[str]] = {}
    for host, summary in found.items():
        grouped.setdefault(summary["result"], set()).add(host)
    return grouped


def changed_results(run: PlaybookRun) -> list[str]:
    return [f"{e['host']}: {e['task']}" for e in run.results if e["result"].get("changed")]


def untouched(lab: Lab, host: str, base: Baseline) -> list[str]:
    return [f"{host}: {e['type']}" for e in lab.events(host)[base.events:] if e["type"] in CHANGE_EVENTS]


def issue_pfx(lab: Lab, tmp_path: pathlib.Path, hosts: set[str]) -> tuple[str, ...]:
    """A PFX from the lab CA for each of ``hosts``, and the arguments that hand them to the role."""
    certs = tmp_path / "certs"
    certs.mkdir(exist_ok=True)
    for host in sorted(hosts):
        answer = control.request(lab.dir, "issue", host=host, password=PASSWORD)
        (certs / f"{host}.pfx").write_bytes(base64.b64decode(answer["pfx_b64"]))
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"xu_renew_pfx_password": PASSWORD}))
    return ("-e", f"xu_renew_pfx_path={certs}/{{{{ inventory_hostname }}}}.pfx", "-e", f"@{secrets}")


def inject_after(lab: Lab, host: str, seen: Callable[[list[dict[str, Any]]], bool], *faults: tuple[str, object]) -> threading.Thread:
    """Set ``faults`` (key, value) on ``host`` as soon as the events it logs from now on satisfy ``seen``."""
    path = lab.dir / "hosts" / host / "events.jsonl"
    start = len(path.read_text().splitlines())

    def watch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            events = [json.loads(line) for line in path.read_text().splitlines()[start:] if line.strip()]
            if seen(events):
                for key, value in faults:
                    control.request(lab.dir, "fault", host=host, set={key: str(value)})
                return
            time.sleep(0.005)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def gate_spans(lab: Lab, bases: dict[str, Baseline]) -> dict[str, tuple[float, float]]:
    """Each host's span from its gate's first firewall change to its last (closed, then open again), if it had any."""
    spans = {}
    for host in lab.hosts:
        moments = [e["ts"] for e in lab.events(host)[bases[host].events:] if e["type"] == "firewall" and e.get("group") == GATE_GROUP]
        if moments:
            spans[host] = (min(moments), max(moments))
    return spans


def restarts_answered(events: list[dict[str, Any]]) -> int:
    return sum(1 for e in events if e["type"] == "remote_call" and "service_restart" in e["ops"])


# -- both modes x both strategies on a mixed fleet -------------------------------------------------


@pytest.mark.lab
@pytest.mark.parametrize("strategy", ["documented", "minimal_outage"])
@pytest.mark.parametrize("mode", ["reuse_key", "replace"])
def test_mixed_fleet(mode: str, strategy: str, lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "10", "--scenario", "mixed", "--restart-delay", RESTART_DELAY)
    bases = {host: baseline(lab, host) for host in lab.hosts}
    run_id = f"it-{mode}-{strategy}"
    extra: tuple[str, ...] = ("-e", f"xu_renew_mode={mode}", "-e", f"xu_renew_strategy={strategy}", "-e", f"xu_renew_run_id={run_id}")
    if mode == "replace":
        # A PFX for every due host but xu10, which is then reported as blocked.
        extra += issue_pfx(lab, tmp_path, MIXED["expiring"] | MIXED["expired"] | {"xu05"})
        renewed = MIXED["expiring"] | MIXED["expired"] | {"xu05"}
        blocked = {"xu10"}
    else:
        # AD CS renews neither an expired certificate nor one that left the store.
        renewed, blocked = MIXED["expiring"], MIXED["expired"] | MIXED["missing"]

    run = renew(lab, tmp_path, *extra)
    # Blocked hosts fail at the very end, after every host was handled, each with its reason; nothing else fails.
    assert run.rc == 2, run.stdout[-5000:] + run.stderr[-3000:]
    not_renewed = {e["host"]: e["result"]["msg"] for e in run.results if e["status"] == "failed"}
    assert set(not_renewed) == blocked, not_renewed
    assert all(msg.startswith("Due but not renewed (see the summary above): ") for msg in not_renewed.values()), not_renewed
    assert f"NOT RENEWED  {', '.join(sorted(blocked))}" in run.stdout
    assert PASSWORD not in run.stdout + run.stderr
    # The role's filters never copy Ansible's lazy containers (which made ansible-core warn of a deprecated loader on every run).
    assert "DEPRECATION" not in run.stdout + run.stderr, [line for line in (run.stdout + run.stderr).splitlines() if "DEPRECATION" in line]
    found = summaries(run)
    assert by_result(found) == {"renewed": renewed, "blocked": blocked, "skipped": MIXED["tls_off"], "not_due": MIXED["healthy"]}

    for host in sorted(renewed):
        summary = found[host]
        assert summary["new_thumbprint"] not in (None, summary["old_thumbprint"])
        assert served_thumbprint(lab, host) == summary["new_thumbprint"]
        assert summary["new_expiry"] and summary["outage_s"] is not None and summary["mode"] == mode
        assert check_host(lab, host, bases[host], new=summary["new_thumbprint"]) == []
        events = lab.events(host)[bases[host].events:]
        stops = [e for e in events if e["type"] == "service" and e["state"] == "Stopped"]
        gated = [e for e in events if e["type"] == "firewall"]
        store = {c["thumbprint"]: c for c in lab.state(host)["certificates"]}
        # The host's own Application log tells which run changed what.
        entries = [e for e in events if e["type"] == "eventlog"]
        assert entries and all(f"run_id: {run_id}" in e["message"].split("\r\n") for e in entries), entries
        assert any(summary["old_thumbprint"] in e["message"] and summary["new_thumbprint"] in e["message"] for e in entries)
        assert {e["entry_type"] for e in entries} == {"Information"}
        if mode == "reuse_key" and strategy == "documented":
            # TLS off and on again: two restarts, both behind the closed gate and the HTTP hold.
            assert len(stops) == 2 and {e["group"] for e in gated} == {GATE_GROUP, HOLD_GROUP}
        else:
            assert len(stops) == 1 and gated == []
        if mode == "reuse_key":
            assert store[summary["old_thumbprint"]]["archived"] is True
        else:
            # The old certificate left the store, after the new one was served (invariant 4 checked above).
            assert summary["old_thumbprint"] not in store
            assert host == "xu05" or [e["thumbprint"] for e in events if e["type"] == "cert_remove"] == [summary["old_thumbprint"]]
    for host in sorted(set(lab.hosts) - renewed):
        assert untouched(lab, host, bases[host]) == []
        assert found[host]["new_thumbprint"] is None

    # The next daily run finds nothing to do: not a single change.
    calls = {host: lab.remote_calls(host) for host in lab.hosts}
    again = renew(lab, tmp_path, *extra)
    assert again.rc == 2 and changed_results(again) == []
    assert by_result(summaries(again)) == {"not_due": MIXED["healthy"] | renewed, "blocked": blocked, "skipped": MIXED["tls_off"]}
    # Hosts with nothing to do cost one read each.
    assert all(lab.remote_calls(host) - calls[host] == 1 for host in lab.hosts)


# -- faults at each step -------------------------------------------------------------------------


FAIL_TASK = "Finish | Fail the host whose renewal failed, naming the step and what was restored"
ACT_TASK = SUMMARY_TASKS[0]


def failed_hosts(run: PlaybookRun) -> dict[str, str]:
    return {e["host"]: e["result"]["msg"] for e in run.results if e["status"] == "failed" and e["task"].endswith(FAIL_TASK)}


@pytest.mark.lab
def test_faults_at_each_step_of_the_documented_renewal_with_the_same_key(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "10", "--scenario", "healthy", "--expiring-in", "10", "--restart-delay", RESTART_DELAY)
    bases = {host: baseline(lab, host) for host in lab.hosts}
    # xu01 is the canary and xu09, xu10 stay healthy; every other host fails at another step.
    lab.fault("xu02", fail_primitive="journal_write")
    lab.fault("xu03", fail_primitive="task_register")
    lab.fault("xu04", drop_connection="service_restart")
    lab.fault("xu05", certreq_fails=1)
    watchers = [
        # The restart with TLS on again fails once: the next start after the renewal.
        inject_after(lab, "xu06", lambda events: any(e["type"] == "cert_archive" for e in events), ("restart_fails", 1)),
    ]
    # The read at the end of TLS on's call fails (the fifth listing of the store: the assessment's, then the gate's,
    # TLS off's, the renewal's and TLS on's): the verification reads the host itself and the run goes on.
    lab.fault("xu07", fail_primitive="cert_list@5")
    lab.fault("xu08", fail_primitive="task_remove")
    run = renew(lab, tmp_path, "-e", "xu_renew_mode=reuse_key", "-e", "xu_renew_max_fail_percentage=100")
    for watcher in watchers:
        watcher.join(timeout=1)
    assert run.rc == 2, run.stdout[-5000:]
    # A canary, then the rest at once: no gate closes before the canary's has opened again.
    spans = gate_spans(lab, bases)
    assert spans["xu01"][1] < min(span[0] for host, span in spans.items() if host != "xu01"), spans
    found = summaries(run)
    steps = {host: summary["failed_step"] for host, summary in found.items() if summary["result"] == "failed"}
    # The journal rides in the steps' own calls: the gate's call writes it first (xu02).
    assert steps == {"xu02": "close_gate", "xu03": "close_gate", "xu04": "tls_off", "xu05": "renew", "xu06": "tls_on", "xu08": "open_gate"}, found
    messages = failed_hosts(run)
    assert set(messages) == set(steps)
    for host, step in steps.items():
        assert messages[host].startswith(f"step {step} failed: "), messages[host]
    # Before the renewal, a rollback puts the previous certificate back, byte for byte.
    for host in ("xu02", "xu03", "xu04", "xu05"):
        assert served_thumbprint(lab, host) == bases[host].thumbprint
        assert check_host(lab, host, bases[host]) == [], host
    assert "restored C:\\Program Files\\XtractUniversal\\config\\servers\\tls.json." in messages["xu05"]
    # After it, AD CS has archived the previous certificate: the recovery binds the renewed one instead.
    for host in ("xu06", "xu08"):
        assert served_thumbprint(lab, host) != bases[host].thumbprint
        assert check_host(lab, host, bases[host], new=served_thumbprint(lab, host)) == [], host
        assert "was archived by the AD CS renewal" in messages[host]
    # The other hosts renewed as if nothing happened.
    assert {h for h, s in found.items() if s["result"] == "renewed"} == {"xu01", "xu07", "xu09", "xu10"}
    for host in ("xu01", "xu07", "xu09", "xu10"):
        assert check_host(lab, host, bases[host], new=found[host]["new_thumbprint"]) == []
    # xu07's lost read cost it one more call (the verification's own read), not a failure.
    assert lab.remote_calls("xu07") == lab.remote_calls("xu09") + 1

    # The next run renews the hosts that were rolled back, and nothing else.
    again = renew(lab, tmp_path, "-e", "xu_renew_mode=reuse_key")
    assert again.rc == 0, again.stdout[-5000:]
    assert by_result(summaries(again))["renewed"] == {"xu02", "xu03", "xu04", "xu05"}
    for host in lab.hosts:
        assert check_host(lab, host, bases[host], new=served_thumbprint(lab, host)) == [], host


@pytest.mark.lab
def test_faults_of_the_other_sequences(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    """minimal_outage with the same key, and replace as documented: a restart failing with TLS on, a dropped connection, a failed primitive."""
    lab: Lab = lab_factory("--hosts", "6", "--scenario", "healthy", "--expiring-in", "10", "--restart-delay", RESTART_DELAY)
    bases = {host: baseline(lab, host) for host in lab.hosts}
    # minimal_outage: the one restart, with the renewed certificate bound, fails on xu02.
    lab.fault("xu02", restart_fails=1)
    run = renew(lab, tmp_path, "-e", "xu_renew_mode=reuse_key", "-e", "xu_renew_strategy=minimal_outage",
                "-e", "xu_renew_max_fail_percentage=100", "--limit", "xu01,xu02,xu03")
    found = summaries(run)
    assert found["xu02"]["result"] == "failed" and found["xu02"]["failed_step"] == "renew"
    assert {found["xu01"]["result"], found["xu03"]["result"]} == {"renewed"}
    # The previous certificate is archived: the settings stay on the renewed one, which the recovery restarts.
    assert "was archived by the AD CS renewal" in found["xu02"]["reason"]
    for host in ("xu01", "xu02", "xu03"):
        assert check_host(lab, host, bases[host], new=served_thumbprint(lab, host)) == [], host
    assert served_thumbprint(lab, "xu02") != bases["xu02"].thumbprint

    # replace, documented: the import fails on xu05; the connection drops during the swap's restart on xu06.
    pfx = issue_pfx(lab, tmp_path, {"xu04", "xu05", "xu06"})
    lab.fault("xu05", fail_primitive="pfx_import")
    lab.fault("xu06", drop_connection="service_restart")
    run = renew(lab, tmp_path, "-e", "xu_renew_mode=replace", *pfx, "-e", "xu_renew_max_fail_percentage=100", "--limit", "xu04,xu05,xu06")
    found = summaries(run)
    assert found["xu04"]["result"] == "renewed"
    assert {host: found[host]["failed_step"] for host in ("xu05", "xu06")} == {"xu05": "install", "xu06": "install"}, found
    for host in ("xu05", "xu06"):
        # Rolled back to the previous certificate, still in the store, tls.json byte for byte (checked by invariant 3).
        assert served_thumbprint(lab, host) == bases[host].thumbprint
        assert check_host(lab, host, bases[host]) == [], host
        assert any(c["thumbprint"] == bases[host].thumbprint for c in lab.state(host)["certificates"])
    assert check_host(lab, "xu04", bases["xu04"], new=found["xu04"]["new_thumbprint"]) == []


@pytest.mark.lab
def test_controller_check_against_the_ca_bundle(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    """xu_renew_ca_path: the lab's CA passes; a CA the server's chain does not lead to fails the host and rolls it back."""
    lab: Lab = lab_factory("--hosts", "2", "--scenario", "healthy", "--expiring-in", "10", "--restart-delay", RESTART_DELAY)
    other: Lab = lab_factory("--hosts", "1", "--scenario", "healthy")
    bases = {host: baseline(lab, host) for host in lab.hosts}
    pfx = issue_pfx(lab, tmp_path, {"xu01", "xu02"})
    ok = renew(lab, tmp_path, "-e", "xu_renew_mode=replace", *pfx, "-e", f"xu_renew_ca_path={lab.dir / 'ca.pem'}", "--limit", "xu01")
    assert ok.rc == 0, ok.stdout[-4000:]
    acted = next(e["result"] for e in ok.results if e["task"].endswith(ACT_TASK) and e["host"] == "xu01")
    checked = next(step for step in acted["steps"] if step["step"] == "controller_check")
    new = summaries(ok)["xu01"]["new_thumbprint"]
    assert checked["outcome"] == "ok" and checked["detail"] == f"web_https 8165 presents {new}, trusted; config_server 8064 presents {new}, trusted"
    # Another lab's CA: the assessment judges the PFX's chain on the controller, so the host is blocked before
    # anything is written (not even the journal).
    bad = renew(lab, tmp_path, "-e", "xu_renew_mode=replace", *pfx, "-e", f"xu_renew_ca_path={other.dir / 'ca.pem'}", "--limit", "xu02")
    assert bad.rc == 2
    assert summaries(bad)["xu02"]["result"] == "blocked"
    assert "does not lead to a certificate in xu_renew_ca_path" in summaries(bad)["xu02"]["reason"]
    assert untouched(lab, "xu02", bases["xu02"]) == [] and not lab.state("xu02")["journals"]
    assert check_host(lab, "xu02", bases["xu02"]) == []
    # A firewall rule of someone else's keeps the controller out: the check fails after the swap, which is rolled back.
    block = [{"name": "block", "xtractuniversal.tls.xu_firewall_gate": {"state": "closed", "rule_group": "test block", "auto_open_after": 0}}]
    assert lab.playbook(block, hosts="xu02", tmp_path=tmp_path).rc == 0
    base = baseline(lab, "xu02")
    blocked = renew(lab, tmp_path, "-e", "xu_renew_mode=replace", *pfx, "-e", f"xu_renew_ca_path={lab.dir / 'ca.pem'}", "--limit", "xu02")
    summary = summaries(blocked)["xu02"]
    assert summary["result"] == "failed" and summary["failed_step"] == "controller_check"
    assert "the previous settings are restored from" in summary["reason"] and summary["restored"]
    assert served_thumbprint(lab, "xu02") == bases["xu02"].thumbprint
    assert check_host(lab, "xu02", base) == []
    # The old certificate is removed only after every check: it is still there.
    assert any(c["thumbprint"] == bases["xu02"].thumbprint for c in lab.state("xu02")["certificates"])
    assert check_host(lab, "xu01", bases["xu01"], new=summaries(ok)["xu01"]["new_thumbprint"]) == []


# -- a controller killed mid-run -----------------------------------------------------------------


def playbook_env() -> dict[str, str]:
    return dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_CALLBACK_PLUGINS=str(CALLBACKS), ANSIBLE_NOCOLOR="1")


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def killable(tmp_path: pathlib.Path) -> Iterator[Callable[[list[str]], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(command: list[str]) -> subprocess.Popen[bytes]:
        log = (tmp_path / "killed-run.log").open("wb")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=playbook_env(), cwd=REPO, start_new_session=True)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            kill_controller(process.pid)
        process.wait()


@pytest.mark.lab
def test_killed_controller_gate_auto_opens_and_the_next_run_resumes(lab_factory: Any, tmp_path: pathlib.Path, killable: Any) -> None:
    lab: Lab = lab_factory("--hosts", "2", "--scenario", "healthy", "--expiring-in", "10", "--restart-delay", RESTART_DELAY)
    base = baseline(lab, "xu01")
    # TLS off's restart never finishes stopping the service: the run waits in that call until the controller dies.
    lab.fault("xu01", stop_hangs=1)
    command = [str(BIN / "ansible-playbook"), "-i", str(lab.inventory), PLAYBOOK, "-f", "10", "-e", "xu_renew_wait_timeout=3600",
               "-e", "xu_renew_mode=reuse_key", "-e", "xu_renew_gate_auto_open_after=1"]  # the role's shortest deadline
    process = killable(command)

    def gate_closed_and_tls_going_off() -> bool:
        events = lab.events("xu01")[base.events:]
        closed = any(e["type"] == "firewall" and e["group"] == GATE_GROUP and e["rules"] for e in events)
        return closed and any(e["type"] == "service" and e["state"] == "StopPending" for e in events)

    wait_for(gate_closed_and_tls_going_off, 60, "the gate to close and TLS off's restart to hang")
    kill_controller(process.pid)  # the controller dies, with every fork it had
    process.wait()
    lab.fault("xu01", stop_hangs=0)  # the service finishes stopping; nobody starts it again
    assert lab.state("xu01")["journals"].get("renew"), "the interrupted run left no journal"

    registered = [e for e in lab.events("xu01", "task") if e["action"] == "registered"][-1]
    deadline = parse_time(registered["run_at_utc"])
    # The host's clock, not real time, brings the deadline.
    lab.advance_past("xu01", registered["run_at_utc"])
    assert any(e["type"] == "task" and e["action"] == "ran" for e in lab.events("xu01")), "the auto-open task did not run"
    problems = check_host(lab, "xu01", base, killed_deadline=deadline, end=False)
    assert check_host(lab, "xu01", base, killed_deadline=deadline, end=False) == problems == []
    from invariants import check_gate  # noqa: PLC0415

    assert check_gate(lab, "xu01", lab.events("xu01")[base.events:], killed_deadline=deadline) == []
    state = lab.state("xu01")
    # The gate is open again, but plain HTTP stays held: tls.json says TLS off, and the service is down.
    tls_json = lab.dir / "hosts" / "xu01" / "fs" / "C" / "Program Files" / "XtractUniversal" / "config" / "servers" / "tls.json"
    assert '"HttpUnrestricted"' in tls_json.read_text()
    assert state["firewall"]["exposure"]["8065"] == "closed" and state["firewall"]["exposure"]["8165"] == "open"

    # The journal is the dead run's lease, renewed in its last call: it outlives that call's longest wait (the restart's
    # 3600 s, and the call's own overhead) by a margin; the host is taken over once it has expired.
    journal = json.loads(lab.state("xu01")["journals"]["renew"])
    lease = journal["lease_expires"]
    assert journal["call_budget_s"] >= 3600
    assert parse_time(lease) - parse_time(journal["lease_renewed"]) == journal["call_budget_s"] + LEASE_MARGIN_S, journal
    lab.advance_past("xu01", lease)
    # The next run finds the journal, rolls the interrupted run back, and renews.
    again = renew(lab, tmp_path, "-e", "xu_renew_mode=reuse_key")
    assert again.rc == 0, again.stdout[-5000:]
    found = summaries(again)
    assert found["xu01"]["result"] == "renewed" and found["xu01"]["resumed"] in ("rolled_back", "completed")
    assert "resumed an interrupted run" in found["xu01"]["reason"]
    assert check_host(lab, "xu01", base, new=found["xu01"]["new_thumbprint"]) == []
    assert not lab.state("xu01")["journals"].get("renew")


@pytest.mark.lab
def test_check_mode_changes_nothing_and_force_renews_a_healthy_host(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "2", "--scenario", "mixed", "--restart-delay", RESTART_DELAY)  # xu01 healthy, xu02 expiring
    bases = {host: baseline(lab, host) for host in lab.hosts}
    checked = renew(lab, tmp_path, "-e", "xu_renew_mode=reuse_key", "--check")
    assert checked.rc == 0, checked.stdout[-4000:]
    assert by_result(summaries(checked)) == {"not_due": {"xu01"}, "would_renew": {"xu02"}}
    # Check mode reports what would change, as every module does, and changes nothing.
    assert changed_results(checked) == [f"xu02: xtractuniversal.tls.renew : {ACT_TASK}"]
    assert all(untouched(lab, host, bases[host]) == [] for host in lab.hosts)
    assert all(e["type"] != "journal" for host in lab.hosts for e in lab.events(host)[bases[host].events:])

    # A gate some earlier run left closed, without a deadline, on a host that is not due: the run opens it.
    close = [{"name": "close", "xtractuniversal.tls.xu_firewall_gate": {"state": "closed", "auto_open_after": 0}}]
    assert lab.playbook(close, hosts="xu01", tmp_path=tmp_path).rc == 0
    run = renew(lab, tmp_path, "-e", "xu_renew_mode=reuse_key", "-e", "xu_renew_strategy=minimal_outage")
    assert run.rc == 0, run.stdout[-4000:]
    found = summaries(run)
    assert by_result(found) == {"not_due": {"xu01"}, "renewed": {"xu02"}}
    assert found["xu01"]["reason"].endswith("; the gate an earlier run left closed was opened")
    assert not [r for r in lab.state("xu01")["firewall"]["rules"] if r["group"] == GATE_GROUP]

    forced = renew(lab, tmp_path, "-e", "xu_renew_mode=reuse_key", "-e", "xu_renew_strategy=minimal_outage", "-e", "xu_renew_force=true")
    assert forced.rc == 0, forced.stdout[-4000:]
    found = summaries(forced)
    assert by_result(found) == {"renewed": {"xu01", "xu02"}}
    assert found["xu01"]["reason"] == "renewed: renewal forced (xu_renew_force)"
    for host in lab.hosts:
        assert check_host(lab, host, bases[host], new=found[host]["new_thumbprint"]) == [], host


@pytest.mark.lab
def test_a_failed_canary_stops_the_fleet_and_a_failure_never_leaves_others_half_done(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "4", "--scenario", "healthy", "--expiring-in", "10", "--restart-delay", RESTART_DELAY)
    bases = {host: baseline(lab, host) for host in lab.hosts}
    lab.fault("xu01", certreq_fails=1)
    stopped = renew(lab, tmp_path, "-e", "xu_renew_mode=reuse_key")
    assert stopped.rc == 2
    assert summaries(stopped)["xu01"]["failed_step"] == "renew"
    # The canary failed: no other host is touched, and each is reported as not attempted, failing the run too.
    assert all(untouched(lab, host, bases[host]) == [] for host in ("xu02", "xu03", "xu04"))
    assert {e["host"]: e["result"]["msg"].split(":", 1)[0] for e in stopped.results if e["status"] == "failed"} == {
        "xu01": "step renew failed", "xu02": "Due but not renewed (see the summary above)",
        "xu03": "Due but not renewed (see the summary above)", "xu04": "Due but not renewed (see the summary above)"}
    assert "TOTAL  4 hosts: 1 failed, 3 not_attempted" in stopped.stdout
    assert check_host(lab, "xu01", bases["xu01"]) == []

    # Next run: the canary renews; in the second batch xu03 fails with no failure allowed. Its failure counts
    # only once it is rolled back, at the role's last task, so the others finish their renewal first.
    lab.fault("xu03", certreq_fails=1)
    run = renew(lab, tmp_path, "-e", "xu_renew_mode=reuse_key", "-e", "xu_renew_max_fail_percentage=0")
    assert run.rc == 2
    found = summaries(run)
    assert by_result(found) == {"renewed": {"xu01", "xu02", "xu04"}, "failed": {"xu03"}}
    for host in lab.hosts:
        assert check_host(lab, host, bases[host], new=found[host]["new_thumbprint"]) == [], host
        assert not lab.state(host)["journals"].get("renew")


@pytest.mark.lab
def test_a_configuration_server_without_tls_keeps_it(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    """Only the web server's reference matters when the Designer connects with Windows credentials."""
    lab: Lab = lab_factory("--hosts", "1", "--scenario", "healthy", "--expiring-in", "10", "--restart-delay", RESTART_DELAY)
    tls_json = lab.dir / "hosts" / "xu01" / "fs" / "C" / "Program Files" / "XtractUniversal" / "config" / "servers" / "tls.json"
    settings = json.loads(tls_json.read_bytes())
    settings["ConfigServer"]["Authentication"] = "WindowsCredentials"
    tls_json.write_bytes(json.dumps(settings, indent=2).replace("\n", "\r\n").encode())
    base = baseline(lab, "xu01")
    run = renew(lab, tmp_path, "-e", "xu_renew_mode=reuse_key")
    assert run.rc == 0, run.stdout[-4000:]
    new = summaries(run)["xu01"]["new_thumbprint"]
    listeners = {x["port"]: x for x in lab.state("xu01")["service"]["listeners"]}
    assert listeners[8165]["thumbprint"] == new and listeners[8064]["scheme"] == "tcp"
    assert check_host(lab, "xu01", base, new=new) == []
    assert json.loads(tls_json.read_bytes())["ConfigServer"]["Authentication"] == "WindowsCredentials"
