"""What the chaos suite (tests/chaos/run.py) found in the engine, reproduced against the in-memory XU: races between runs
on one host, a dropped connection, and the report of a run that finished another one.

Another run's work is played into the host between two calls of the run under test: a run that takes the host over
writes its journal (its live lease) and keeps its gate closed; a run that finished removes its journal. The run under
test must then stop as ``busy`` at its next call that would change the host, change nothing more, and leave the other
run's journal and gate alone (issue 22 item 9: every changing call carries the lease and the host refuses it when the
lease is not the caller's; a rescue that finds another run's lease stops as busy).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from unittest.mock import MagicMock

import pytest
from ansible.errors import AnsibleConnectionFailure

from support.action import fake_connection, run_action
from support.engine_host import EngineHost, Fault, engine_host, pfx_for_the_host
from support.fake_changes import TLS_FILE
from support.fake_swap import FQDN

GROUP = "xtractuniversal.tls gate"
SEQUENCE = {"xu_renew_mode": "reuse_key", "xu_renew_strategy": "documented"}
REPLACE_DOCUMENTED = {"xu_renew_mode": "replace", "xu_renew_strategy": "documented"}
PASSWORD = "pfx-password"  # noqa: S105 - a test PFX's password
PFX = pfx_for_the_host(PASSWORD)
# The act calls of reuse_key/documented: close the gate, TLS off, renew, TLS on, open the gate.
CLOSE_GATE, TLS_OFF, RENEW, TLS_ON, OPEN_GATE = range(5)


@dataclass
class RacingHost(EngineHost):
    """An EngineHost on which another run works between two calls: ``meanwhile[i]`` runs before the act phase's call i."""

    meanwhile: dict[int, Callable[[RacingHost], None]] = field(default_factory=dict)

    def transport(self, command: str, stdin: bytes) -> tuple[int, str, str]:
        if self.counted is not None and self.counted in self.meanwhile:
            self.meanwhile.pop(self.counted)(self)
        return super().transport(command, stdin)


def racing_host() -> RacingHost:
    template, _old = engine_host()
    host = RacingHost(files=dict(template.files), certificates=list(template.certificates), keys=dict(template.keys))
    assert host.start_service(), host.start_error
    return host


def run(
    host: RacingHost, run_id: str, *, fault: Fault | None = None, meanwhile: dict[int, Callable[[RacingHost], None]] | None = None,
    sequence: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One run (reuse_key/documented unless ``sequence`` says): the assessment, then the act phase, with ``meanwhile``
    played into the host between its calls."""
    given: dict[str, Any] = {"run_id": run_id, "options": {"xu_renew_fqdn": FQDN, **(sequence or SEQUENCE)}}
    if sequence and sequence.get("xu_renew_mode") == "replace":
        given.update(pfx_content=PFX, pfx_password=PASSWORD)
    host.arm(None)
    assessment = run_action("xu_renew", {"phase": "assess", **given}, host)
    assert not assessment.get("failed"), assessment
    host.arm(fault)
    host.meanwhile = dict(meanwhile or {})
    acted = run_action("xu_renew", {"phase": "act", "assessment": assessment, **given}, host)
    host.meanwhile = {}
    host.arm(None)
    return acted


def dead_run(host: RacingHost, after_call: int) -> None:
    """A run whose controller died right after the act call ``after_call``; its lease has run out since."""
    assert run(host, "dead", fault=Fault(after_call, kind="lost"))["summary"]["result"] == "unreachable"
    document = json.loads(host.journals["renew"])
    document["lease_expires"] = "2000-01-01T00:00:00Z"
    host.journals["renew"] = json.dumps(document, indent=2, sort_keys=True) + "\n"


def takes_over(run_id: str) -> Callable[[RacingHost], None]:
    """Run ``run_id`` takes the host over: its journal, as the one on the host with its own id and a live lease."""

    def write(host: RacingHost) -> None:
        document = json.loads(host.journals["renew"])
        document.update(run_id=run_id, lease_renewed="2000-01-01T00:00:00Z", call_budget_s=420, lease_expires="2999-01-01T00:00:00Z")
        host.journals["renew"] = json.dumps(document, indent=2, sort_keys=True) + "\n"

    return write


def finished(host: RacingHost) -> None:
    """Another run took the host over and finished: its journal is gone."""
    del host.journals["renew"]


def and_remember(change: Callable[[RacingHost], None], seen: list[Any]) -> Callable[[RacingHost], None]:
    """``change``, then the host as the other run left it, in ``seen``: what the run under test must not change."""

    def play(host: RacingHost) -> None:
        change(host)
        seen.append(snapshot(host))

    return play


def snapshot(host: RacingHost) -> tuple[dict[str, str], dict[str, list[dict[str, Any]]], dict[str, str], list[str]]:
    return dict(host.files), copy.deepcopy(host.groups), dict(host.journals), sorted(host.tasks)


def test_a_run_that_finds_the_journal_taken_over_during_its_recovery_leaves_the_other_run_s_journal_and_is_busy() -> None:
    """Two runs resume the same dead run (chaos takeovers, reuse_key/documented after act call 4/5, TLS on): run Y read the
    dead run's journal, then run X wrote its own lease before Y's recovery read the host again."""
    host = racing_host()
    dead_run(host, TLS_ON)
    # Y's recovery: its fresh read (call 0) sees the dead run's journal; X's lease is there by its check read (call 1).
    result = run(host, "run-y", meanwhile={1: takes_over("run-x")})
    left = json.loads(host.journals.get("renew") or "{}")
    assert left.get("run_id") == "run-x", f"run X's journal was removed by run Y: {host.journals}; Y's steps {result['steps']}"
    assert result["summary"]["result"] == "busy", result["summary"]


def test_a_run_that_loses_the_takeover_reports_busy_and_changes_nothing() -> None:
    """Two runs resume the same dead run (chaos takeovers, after act call 2/5, TLS off): X wins the journal's
    compare-and-swap between Y's read and Y's first restore."""
    host = racing_host()
    dead_run(host, TLS_OFF)
    before: list[Any] = []
    result = run(host, "run-y", meanwhile={1: and_remember(takes_over("run-x"), before)})
    assert snapshot(host) == before[0], "run Y changed the host after run X took it over"
    assert result["summary"]["result"] == "busy", result["summary"]


def test_a_stalled_run_woken_after_another_run_finished_its_work_is_busy() -> None:
    """Chaos stalls, reuse_key/documented after act call 1/5: the run stalls past its lease with the gate closed; another
    run takes over, rolls it back, renews and removes its journal; the stalled run wakes before TLS off."""
    host = racing_host()
    before: list[Any] = []
    result = run(host, "stalled", meanwhile={TLS_OFF: and_remember(finished, before)})
    assert snapshot(host) == before[0], "the woken run changed the host"
    assert result["summary"]["result"] == "busy", result["summary"]


def test_a_stalled_run_woken_while_another_run_holds_the_host_leaves_its_gate_closed() -> None:
    """Chaos stalls, reuse_key/documented after act call 4/5 (TLS on): the run stalls past its lease; another run takes the
    host over and is at work behind its gate when the stalled run wakes and sends its open-gate call."""
    host = racing_host()
    before: list[Any] = []
    result = run(host, "stalled", meanwhile={OPEN_GATE: and_remember(takes_over("run-x"), before)})
    groups, tasks = before[0][1], before[0][3]
    assert host.groups.get(GROUP) == groups.get(GROUP), f"run X's gate was opened by the stalled run: {groups.get(GROUP)} -> {host.groups.get(GROUP)}"
    assert sorted(host.tasks) == tasks, "run X's auto-open task was removed by the stalled run"
    assert result["summary"]["result"] == "busy", result["summary"]


def test_a_stalled_run_woken_after_its_install_leaves_the_taker_s_journal_alone() -> None:
    """Chaos stalls, replace/documented after act call 1/2 (the install): another run takes the host over and holds it
    (its journal written) when the stalled run wakes. The woken run's remove-old call is refused at its journal, yet the
    step is ok, and its last step removes the journal found on the host: the taker's."""
    host = racing_host()
    seen: list[Any] = []
    result = run(host, "stalled", sequence=REPLACE_DOCUMENTED, meanwhile={1: and_remember(takes_over("run-x"), seen)})
    left = json.loads(host.journals.get("renew") or "{}")
    assert left.get("run_id") == "run-x", f"run X's journal was removed by the woken run: {host.journals}; its steps {result['steps']}"
    assert snapshot(host) == seen[0], "the woken run changed the host"
    assert result["summary"]["result"] == "busy", result["summary"]


@pytest.mark.parametrize("call", [1, 2])
def test_a_stalled_run_woken_after_another_run_finished_its_replacement_is_busy(call: int) -> None:
    """Chaos stalls, replace/documented after act call 1/3 (the install) or 2/3 (the record): another run took the host
    over, finished it and removed its journal; the woken run's next write must find its own journal gone and stop."""
    host = racing_host()
    before: list[Any] = []
    result = run(host, "stalled", sequence=REPLACE_DOCUMENTED, meanwhile={call: and_remember(finished, before)})
    assert snapshot(host) == before[0], f"the woken run changed the host: its steps {result['steps']}"
    assert result["summary"]["result"] == "busy", result["summary"]


# -- a dropped connection ----------------------------------------------------------------------------------------------------


# What pywinrm raises when Windows refuses a sealed message on a connection that never authenticated.
SEALED_ON_A_NEW_CONNECTION = "WinRMTransportError: Bad HTTP response returned from server. Code 400"


@dataclass
class SealedSessionHost(RacingHost):
    """After a dropped connection, pywinrm sends the old NTLM session's sealed messages on a new TCP connection, which
    Windows answers with 400 (tests/lab/xulab/wsman.py; the lab does so): every call fails until the connection is reset."""

    connection: MagicMock = field(default_factory=fake_connection)
    dropped_with: int | None = None

    def resets(self) -> int:
        return int(self.connection.reset.call_count + self.connection.close.call_count)

    def transport(self, command: str, stdin: bytes) -> tuple[int, str, str]:
        if self.dropped_with is not None and self.resets() == self.dropped_with:
            raise AnsibleConnectionFailure(f"the connection to the host failed during the call: {SEALED_ON_A_NEW_CONNECTION}")
        try:
            return super().transport(command, stdin)
        except AnsibleConnectionFailure:
            self.dropped_with = self.resets()
            raise


def test_a_dropped_connection_is_recovered_in_the_same_run_over_a_new_connection() -> None:
    """Chaos faults, drop_connection at any primitive of the act phase: the recovery's first call failed with HTTP 400 and
    the host was reported unreachable (ENGINE.md: a dropped connection is recovered in the same run)."""
    template, _old = engine_host()
    host = SealedSessionHost(files=dict(template.files), certificates=list(template.certificates), keys=dict(template.keys))
    assert host.start_service(), host.start_error
    given: dict[str, Any] = {"run_id": "dropped", "options": {"xu_renew_fqdn": FQDN, **SEQUENCE}}
    host.arm(None)
    assessment = run_action("xu_renew", {"phase": "assess", **given}, host, connection=host.connection)
    host.arm(Fault(TLS_OFF, kind="drop"))
    acted = run_action("xu_renew", {"phase": "act", "assessment": assessment, **given}, host, connection=host.connection)
    assert acted["summary"]["result"] in ("renewed", "failed"), acted["summary"]
    assert "renew" not in host.journals


# -- what a run that finished another one reports ------------------------------------------------------------------------------


def test_a_run_that_completes_a_dead_run_s_renewal_names_the_certificate_it_bound() -> None:
    """Chaos kills and stalls, reuse_key/documented after act call 3/5 (AD CS renewed, TLS still off): the next run binds
    the renewed certificate (found by its key) and reports ``completed``, with the new certificate it serves."""
    host = racing_host()
    dead_run(host, RENEW)
    summary = run(host, "next")["summary"]
    assert summary["result"] == "completed" and summary["resumed"] == "completed", summary
    bound = json.loads(host.files[TLS_FILE])["WebServer"]["Certificate"]["Thumbprint"]
    assert summary["new_thumbprint"] == bound, summary
