"""Central ACME issuance when things go wrong: each fault fails the host before anything reaches it, and leaves no
record in the zone (a killed controller's records are removed by the next run)."""

from __future__ import annotations

import base64
import os
import pathlib
import secrets
import signal
import threading
from typing import Any, NamedTuple

import pytest
from acmerun import AcmeRun, acme_report, assert_untouched, snapshot, start
from labtools import Lab, PlaybookRun, interrupt_controller, kill_controller

pytestmark = pytest.mark.lab
HOST = "xu01"
RECORD = "_acme-challenge.xu01.xulab.test"


def one_host(lab_factory: Any) -> Lab:
    lab: Lab = lab_factory("--hosts", "1", "--scenario", "healthy", "--expiring-in", "5", "--restart-delay", "0.1")
    return lab


def failed_issuance(run: PlaybookRun) -> str:
    """The output of a run whose host failed in the order step, before anything reached it."""
    assert run.rc != 0
    report = acme_report(run, HOST)
    summary = report["summary"]
    assert summary["result"] == "failed" and summary["failed_step"] == "order", report
    assert "nothing had been changed" in summary["reason"], summary
    return run.stdout + run.stderr


def assert_clean(acme: AcmeRun, lab: Lab, before: Any) -> None:
    assert_untouched(lab, HOST, before)
    assert acme.services.zone_txt_names() == []


class Fault(NamedTuple):
    services: dict[str, Any]
    variables: dict[str, Any]
    message: str


FAULTS = {
    "wrong TSIG key": Fault({}, {"xu_renew_acme_tsig_secret": base64.b64encode(secrets.token_bytes(32)).decode()}, "does not match the key xu-acme;"),
    "challenge fails validation": Fault(
        {"pebble_resolves_through": "nowhere"},
        {},
        "The CA did not validate dns:xu01.xulab.test: Challenge dns-01: Error urn:ietf:params:acme:error:unauthorized",
    ),
    "nonce rejections": Fault({"pebble_env": {"PEBBLE_WFE_NONCEREJECT": "100"}}, {"xu_renew_acme_retry_budget": 4}, "failed (retries exhausted)"),
    "order stays pending": Fault(
        {"pebble_env": {"PEBBLE_VA_SLEEPTIME": "1000000000"}}, {"xu_renew_acme_validation_timeout": 3}, "pending for 3 s (xu_renew_acme_validation_timeout)"
    ),
}


@pytest.mark.parametrize("case", FAULTS)
def test_fault_leaves_host_and_zone_clean(lab_factory: Any, tmp_path: pathlib.Path, case: str) -> None:
    fault = FAULTS[case]
    lab = one_host(lab_factory)
    acme = start(lab, tmp_path, **fault.services)
    try:
        before = snapshot(lab, HOST)
        output = failed_issuance(acme.run(tmp_path, **fault.variables))
        assert fault.message in output, f"{case}: {output[-3000:]}"
        assert_clean(acme, lab, before)
    finally:
        acme.services.stop()


def test_ca_unreachable_mid_order(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    """The CA goes away after the order was made and the record published, before the validation is asked for."""
    lab = one_host(lab_factory)
    acme = start(lab, tmp_path, gate=True)
    assert acme.gate is not None
    try:
        before = snapshot(lab, HOST)
        runs: list[PlaybookRun] = []
        worker = threading.Thread(target=lambda: runs.append(acme.run(tmp_path, xu_renew_acme_retry_budget=5)))
        worker.start()
        acme.wait_published(RECORD)
        pebble = acme.services.processes["pebble"]
        os.killpg(pebble.pid, signal.SIGKILL)
        pebble.wait()
        acme.gate.release()
        worker.join(timeout=300)
        output = failed_issuance(runs[0])
        assert "The CA could not be reached" in output and "in step validate" in output, output[-3000:]
        assert_clean(acme, lab, before)
    finally:
        acme.gate.close()
        acme.services.stop()


def test_controller_killed_between_dns_update_and_validation(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    """SIGKILL to the whole controller (every worker too) while the record is published: the host is untouched, the record stays, and
    the next run removes it (the ledger names a process that is gone) and renews."""
    lab = one_host(lab_factory)
    acme = start(lab, tmp_path, gate=True)
    assert acme.gate is not None
    try:
        before = snapshot(lab, HOST)
        controller = acme.spawn(tmp_path)
        acme.wait_published(RECORD)
        kill_controller(controller.pid)
        controller.wait()
        assert acme.services.txt(RECORD), "the killed run's record should still be there"
        assert [name for name in acme.services.zone_txt_names() if name.startswith("_xu-acme-ledger")]
        assert_untouched(lab, HOST, before)

        acme.gate.release()
        again = acme.run(tmp_path)
        assert again.rc == 0, again.stdout[-3000:] + again.stderr[-3000:]
        assert acme_report(again, HOST)["issued"] is True, acme_report(again, HOST)["summary"]
        assert acme.services.zone_txt_names() == []
        assert lab.state(HOST)["service"]["listeners"] != before.state["service"]["listeners"]
    finally:
        acme.gate.close()
        acme.services.stop()


def test_a_cancelled_run_removes_its_records(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    """Ctrl-C (an AWX cancel sends SIGINT too) while the record is published: ansible-playbook stops its workers, and the
    issuance's cleanup removes the record before the worker ends; the host is untouched."""
    lab = one_host(lab_factory)
    acme = start(lab, tmp_path, gate=True)
    assert acme.gate is not None
    try:
        before = snapshot(lab, HOST)
        controller = acme.spawn(tmp_path)
        acme.wait_published(RECORD)
        interrupt_controller(controller.pid)
        assert controller.wait() != 0
        assert acme.services.zone_txt_names() == [], "the cancelled run left its records"
        assert_untouched(lab, HOST, before)
    finally:
        acme.gate.close()
        acme.services.stop()
