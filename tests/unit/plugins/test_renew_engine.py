"""The renewal engine (xu_renew) against an in-memory XU: every sequence, and a fault at every primitive of every call.

Each sequence (mode x strategy, and turning TLS on) is first run clean: it renews, lists its steps, leaves no journal
and an open gate, and a second run changes nothing. The fault matrix then fails each primitive of each remote call
of the act phase once (an error as Windows reports one), and drops the connection after each call has run. After an
error the run ends renewed or failed, and the host serves the previous certificate with tls.json byte for byte as
before, or a valid new one; no journal is left and the gate is open. After a drop the host is reported unreachable;
once the lost run's lease has expired the next run finishes or rolls back what it left, and the host ends as above.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from support.action import run_action
from support.certs import mint
from support.engine_host import EngineHost, Fault, engine_host, pfx_for_the_host, tls_file
from support.fake_ca import ACME_VARIABLES, FakeCa, fake_ca
from support.fake_changes import TLS_FILE
from support.fake_swap import FQDN, make_pfx

GROUP = "xtractuniversal.tls gate"
PASSWORD = "pfx-password"  # noqa: S105 - a test PFX's password


@dataclass(frozen=True)
class Sequence:
    """A renewal to run: the role's variables, the secrets, and how to prepare the host."""

    name: str
    options: dict[str, Any]
    prepare: Callable[[EngineHost], None] = lambda host: None
    pfx: bool = False
    # The new certificate ordered from an ACME CA (in memory, support/fake_ca.py).
    acme: bool = False


def _better_certificate(host: EngineHost) -> None:
    cert, key = mint(FQDN, sans=(FQDN, "xu01"), days_left=365)
    host.add_keyed(cert, key)


def _tls_off(host: EngineHost) -> None:
    document = json.loads(host.files[TLS_FILE])
    document["WebServer"]["Protocol"] = "HttpUnrestricted"
    document["WebServer"]["Certificate"]["Thumbprint"] = None
    document["ConfigServer"]["Authentication"] = "WindowsCredentials"
    document["ConfigServer"]["Certificate"]["Thumbprint"] = None
    host.files[TLS_FILE] = json.dumps(document, indent=2)
    assert host.start_service(), host.start_error
    _better_certificate(host)


SEQUENCES = [
    Sequence("replace/documented", {"xu_renew_mode": "replace", "xu_renew_strategy": "documented"}, pfx=True),
    Sequence("replace/minimal_outage", {"xu_renew_mode": "replace", "xu_renew_strategy": "minimal_outage"}, pfx=True),
    Sequence("reuse_key/documented", {"xu_renew_mode": "reuse_key", "xu_renew_strategy": "documented"}),
    Sequence("reuse_key/minimal_outage", {"xu_renew_mode": "reuse_key", "xu_renew_strategy": "minimal_outage"}),
    Sequence("adopt/documented", {"xu_renew_mode": "adopt", "xu_renew_strategy": "documented"}, _better_certificate),
    Sequence("adopt/minimal_outage", {"xu_renew_mode": "adopt", "xu_renew_strategy": "minimal_outage"}, _better_certificate),
    Sequence("enroll/documented", {"xu_renew_mode": "enroll", "xu_renew_strategy": "documented", "xu_renew_template": "WebServer"}),
    Sequence("enroll/minimal_outage", {"xu_renew_mode": "enroll", "xu_renew_strategy": "minimal_outage", "xu_renew_template": "WebServer"}),
    Sequence("enable_tls", {"xu_renew_mode": "adopt", "xu_renew_enable_tls": True, "xu_renew_tls_off_only": True}, _tls_off),
    Sequence("acme/minimal_outage", {"xu_renew_mode": "acme", "xu_renew_strategy": "minimal_outage"}, acme=True),
]
BY_NAME = {sequence.name: sequence for sequence in SEQUENCES}


def renewal(sequence: Sequence) -> tuple[EngineHost, str]:
    host, old = engine_host()
    sequence.prepare(host)
    return host, old


def args(sequence: Sequence, phase: str, run_id: str, **extra: Any) -> dict[str, Any]:
    given: dict[str, Any] = {"phase": phase, "run_id": run_id, "options": {"xu_renew_fqdn": FQDN, **sequence.options}, **extra}
    if sequence.pfx:
        given.update(pfx_content=PFX, pfx_password=PASSWORD)
    if sequence.acme:
        given.update(acme=ACME_VARIABLES)
    return given


def run(sequence: Sequence, host: EngineHost, run_id: str, *, check_mode: bool = False, fault: Fault | None = None) -> dict[str, Any]:
    """One run on one host: the assessment (never faulted), then the act phase with ``fault`` armed."""
    with fake_ca(FakeCa()) if sequence.acme else contextlib.nullcontext():
        return _run(sequence, host, run_id, check_mode=check_mode, fault=fault)


def _run(sequence: Sequence, host: EngineHost, run_id: str, *, check_mode: bool, fault: Fault | None) -> dict[str, Any]:
    host.arm(None)
    assessment = run_action("xu_renew", args(sequence, "assess", run_id), host, check_mode=check_mode)
    assert not assessment.get("failed"), assessment
    if assessment["action"] not in ("renew", "resume") and not assessment["plan"]["gate_closed"]:
        return {"assessment": assessment, "summary": assessment["summary"], "steps": [], "calls": []}
    host.arm(fault)
    acted = run_action("xu_renew", args(sequence, "act", run_id, assessment=assessment), host, check_mode=check_mode)
    acted["calls"] = list(host.recorded)
    acted["assessment"] = assessment
    host.arm(None)
    return acted


def served(host: EngineHost) -> str | None:
    certificate = host.served.get(8165)
    return None if certificate is None else next(c["thumbprint"] for c in host.certificates if c["der_b64"] == _der_b64(certificate))


def _der_b64(certificate: Any) -> str:
    return base64.b64encode(certificate.public_bytes(Encoding.DER)).decode()


def gate_open(host: EngineHost) -> bool:
    return not any(rule.get("action") == "Block" and rule.get("enabled") for rules in host.groups.values() for rule in rules)


def expire_leases(host: EngineHost) -> None:
    """Time passes: every lease on the host has run out."""
    for name, content in list(host.journals.items()):
        document = json.loads(content)
        if "lease_expires" in document:
            document["lease_expires"] = "2000-01-01T00:00:00Z"
            host.journals[name] = json.dumps(document, indent=2, sort_keys=True) + "\n"


PFX = pfx_for_the_host(PASSWORD)


# -- every sequence, clean ----------------------------------------------------------------------------------------------


def reference(sequence: Sequence) -> dict[str, Any]:
    host, _old = renewal(sequence)
    return run(sequence, host, "reference")


REFERENCES = {sequence.name: reference(sequence) for sequence in SEQUENCES}


@pytest.mark.parametrize("name", BY_NAME)
def test_each_sequence_renews_in_its_steps_and_a_second_run_changes_nothing(name: str) -> None:
    sequence = BY_NAME[name]
    host, old = renewal(sequence)
    first = run(sequence, host, "run-1")
    summary = first["summary"]
    assert summary["result"] in ("renewed", "tls_enabled"), summary
    planned = [step["step"] for step in first["assessment"]["steps"]]
    done = [step["step"] for step in first["steps"] if step["step"] != "done"]
    assert done == planned and all(step["outcome"] == "ok" for step in first["steps"]), first["steps"]
    new = summary["new_thumbprint"]
    assert served(host) == new != old
    assert host.journals == {} and gate_open(host) and host.tasks == {}
    # The act phase decided from the assessment's snapshot: it made no read of its own.
    assert first["calls"] and all(any(op not in READS for op in ops) for ops in first["calls"]), first["calls"]
    again = run(sequence, host, "run-2")
    assert again["summary"]["result"] == "not_due" and again["calls"] == [], again["summary"]
    assert served(host) == new


READS = {"discover", "cert_list", "fw_get", "task_get", "port_probe", "journal_read", "file_check", "served_check"}


@pytest.mark.parametrize("name", BY_NAME)
def test_check_mode_lists_the_steps_and_changes_nothing(name: str) -> None:
    sequence = BY_NAME[name]
    host, _old = renewal(sequence)
    before = (dict(host.files), list(host.certificates))
    dry = run(sequence, host, "dry", check_mode=True)
    assert dry["summary"]["result"] in ("would_renew", "would_enable_tls"), dry["summary"]
    assert [s["step"] for s in dry["steps"]] == [s["step"] for s in dry["assessment"]["steps"]] and dry["steps"]
    # Check mode reports what would change, and changes nothing.
    assert dry["changed"] and dry["calls"] == [] and (dict(host.files), list(host.certificates)) == before


# -- the fault matrix ---------------------------------------------------------------------------------------------------


def _cases() -> list[tuple[str, int, int | str]]:
    cases: list[tuple[str, int, int | str]] = []
    for name, result in REFERENCES.items():
        for call, ops in enumerate(result["calls"]):
            cases += [(name, call, op) for op in range(len(ops))]
            cases += [(name, call, "drop"), (name, call, "lost")]
    return cases


CASES = _cases()


def _ids(case: tuple[str, int, int | str]) -> str:
    name, call, op = case
    ops = REFERENCES[name]["calls"][call]
    return f"{name}-call{call}-" + (op if isinstance(op, str) else f"{op}:{ops[op]}")


def _assert_whole(host: EngineHost, before: str | None, tls_before: str, why: Any) -> None:
    """The host serves as before (the previous certificate, or plain HTTP) with tls.json byte for byte as it was, or a
    valid new certificate; no journal is left and the gate is open."""
    now_served = served(host)
    assert host.service_state == "Running", why
    if now_served == before:
        assert tls_file(host) == tls_before, why
    assert host.journals == {}, why
    assert gate_open(host), (host.groups, why)


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_a_fault_at_any_primitive_of_any_call_leaves_the_host_whole(case: tuple[str, int, int | str]) -> None:
    name, call, op = case
    sequence = BY_NAME[name]
    host, _old = renewal(sequence)
    tls_before, before = tls_file(host), served(host)
    fault = Fault(call, op) if isinstance(op, int) else Fault(call, kind=op)
    result = run(sequence, host, "faulted", fault=fault)
    summary = result["summary"]
    if fault.kind != "lost":
        # An error, or one lost answer: the run reads the host again and recovers in the same run.
        assert summary["result"] in ("renewed", "tls_enabled", "failed"), summary
        if summary["result"] == "failed":
            assert summary["failed_step"] and summary["reason"].startswith(f"step {summary['failed_step']} failed: "), summary
        _assert_whole(host, before, tls_before, summary)
        return
    # The host is gone: it is reported unreachable; the next run, once the lease ran out, finishes the job.
    assert result.get("unreachable") and summary["result"] == "unreachable", summary
    expire_leases(host)
    after = run(sequence, host, "next")
    assert after["summary"]["result"] in ("renewed", "tls_enabled", "completed", "rolled_back", "not_due"), after["summary"]
    _assert_whole(host, before, tls_before, after["summary"])
    final = run(sequence, host, "last")
    assert final["summary"]["result"] == "not_due" or final["summary"]["result"] in ("renewed", "tls_enabled"), final["summary"]
    _assert_whole(host, before, tls_before, final["summary"])


def test_a_new_certificate_that_ends_sooner_blocks_the_host_in_the_assessment_and_in_check_mode() -> None:
    host, old = engine_host(old_days_left=9)
    cert, key = mint(FQDN, sans=(FQDN, "xu01"), days_left=5)
    short = base64.b64encode(make_pfx(cert, key, PASSWORD)).decode()
    sequence = Sequence("replace/short", {"xu_renew_mode": "replace", "xu_renew_strategy": "minimal_outage"})
    for check_mode in (True, False):
        given = args(sequence, "assess", "short", pfx_content=short, pfx_password=PASSWORD)
        assessed = run_action("xu_renew", given, host, check_mode=check_mode)
        assert assessed["action"] == "blocked" and "before the bound certificate" in assessed["plan"]["reason"], assessed["plan"]
        assert "xu_renew_allow_shorter" in assessed["plan"]["reason"] and assessed["summary"]["result"] == "blocked"
    allowed = dict(sequence.options, xu_renew_allow_shorter=True)
    given = {"phase": "act", "run_id": "allowed", "options": {"xu_renew_fqdn": FQDN, **allowed}, "pfx_content": short, "pfx_password": PASSWORD}
    acted = run_action("xu_renew", given, host)
    assert acted["summary"]["result"] == "renewed" and served(host) == acted["summary"]["new_thumbprint"]
    assert any(c["thumbprint"] == old for c in host.certificates), "the longer certificate stays in the store"


def test_a_run_lost_with_tls_off_whose_backup_was_deleted_is_finished_from_the_journal_s_values() -> None:
    sequence = BY_NAME["reuse_key/documented"]
    host, old = renewal(sequence)
    # The host is lost right after TLS off's call (call 0 closed the gate): TLS is off behind the closed gate.
    lost = run(sequence, host, "lost", fault=Fault(1, kind="lost"))
    assert lost["summary"]["result"] == "unreachable" and '"HttpUnrestricted"' in tls_file(host)
    # Someone deletes the backup TLS off made; the journal still records the protocol and the certificate from before.
    backups = [path for path in host.files if path.endswith(".bak")]
    assert backups
    for path in backups:
        del host.files[path]
    expire_leases(host)
    after = run(sequence, host, "next")
    summary = after["summary"]
    assert summary["result"] == "renewed" and summary["resumed"] == "rolled_back", summary
    assert "no longer exists; the previous values are set back" in summary["reason"], summary["reason"]
    assert served(host) == summary["new_thumbprint"] != old
    assert host.journals == {} and gate_open(host)


def test_an_abandoned_run_is_taken_over_by_name_once_its_last_call_has_run_out_and_not_before() -> None:
    sequence = BY_NAME["reuse_key/documented"]
    host, old = renewal(sequence)
    # The controller is gone right after TLS off's call: the gate is closed, TLS off, the lease live.
    assert run(sequence, host, "gone", fault=Fault(1, kind="lost"))["summary"]["result"] == "unreachable"
    busy = run(sequence, host, "rerun")["summary"]
    assert busy["result"] == "busy" and "-e xu_renew_take_over=gone" in busy["reason"], busy
    taken = dict(sequence.options, xu_renew_take_over="gone")
    refused = run(Sequence("take-over", taken), host, "rerun")["summary"]
    assert refused["result"] == "busy" and "xu_renew_take_over=gone was refused" in refused["reason"], refused
    assert "may still be working" in refused["reason"] and '"HttpUnrestricted"' in tls_file(host)
    # The host's clock passes the gone run's call limit (certreq's 300 s and the call overhead), not yet its lease.
    journal = json.loads(host.journals["renew"])
    host.clock_offset_s += journal["call_budget_s"] + 1
    assert run(sequence, host, "rerun")["summary"]["result"] == "busy"
    over = run(Sequence("take-over", taken), host, "rerun")["summary"]
    assert over["result"] == "renewed" and over["resumed"] == "rolled_back", over
    assert "taken over (xu_renew_take_over)" in over["reason"]
    assert served(host) == over["new_thumbprint"] != old and host.journals == {} and gate_open(host)


@pytest.mark.parametrize("provider", ["schannel_csp", "software_ksp"])
def test_enroll_makes_the_key_in_the_provider_the_role_names(provider: str) -> None:
    base = BY_NAME["enroll/minimal_outage"]
    sequence = Sequence("enroll", {**base.options, "xu_renew_key_provider": provider})
    host, _old = renewal(sequence)
    assert run(sequence, host, "enrol")["summary"]["result"] == "renewed"
    (enrolment,) = [op for call in host.calls for op in call if op["op"] == "cert_enroll"]
    assert enrolment["args"]["key_provider"] == provider


def test_a_certificate_that_vanishes_after_the_assessment_is_never_named_in_the_settings() -> None:
    """win-acme renews between the assessment and the write: it deletes the certificate adopt mode chose and leaves its
    successor. The write's own call checks the chosen one is still there, so the settings never name a missing one."""
    sequence = BY_NAME["adopt/minimal_outage"]
    host, old = renewal(sequence)
    host.arm(None)
    assessment = run_action("xu_renew", args(sequence, "assess", "vanish"), host)
    chosen = assessment["plan"]["new_thumbprint"]
    assert assessment["action"] == "renew" and chosen
    host.certificates = [c for c in host.certificates if c["thumbprint"] != chosen]
    cert, key = mint(FQDN, sans=(FQDN, "xu01"), days_left=300)
    successor = host.add_keyed(cert, key)
    tls_before = tls_file(host)
    acted = run_action("xu_renew", args(sequence, "act", "vanish", assessment=assessment), host)
    summary = acted["summary"]
    assert summary["result"] == "failed" and summary["failed_step"] == "install", summary
    assert f"{chosen} is not in LocalMachine\\My" in summary["reason"], summary["reason"]
    assert tls_file(host) == tls_before and served(host) == old and host.journals == {} and host.service_state == "Running"
    # The next run adopts the successor.
    again = run(sequence, host, "next")
    assert again["summary"]["result"] == "renewed" and served(host) == successor == again["summary"]["new_thumbprint"]
