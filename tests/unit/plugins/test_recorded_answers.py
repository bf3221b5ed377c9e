"""The controller logic replayed against real agent answers (tests/unit/test_data/agent_answers).

Each recording holds a module's arguments, every remote call it made (the request, secrets removed, and
the host's answer) and the module's result. The test runs the same module in-process, answers its calls
from the recording in order, and checks that it makes the same calls and reaches the same result. When
the controller changes what it asks the host, the recordings are made again (the command is in each
file's ``rerecord``; see docs/testing-on-windows.md).
"""

from __future__ import annotations

import datetime
import json
import pathlib
import re
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest

from support.action import run_action
from support.fake_host import FakeHost

ANSWERS = pathlib.Path(__file__).resolve().parents[1] / "test_data" / "agent_answers"
RECORDINGS = sorted(ANSWERS.rglob("*.json"))
BOOTSTRAP_PREFIX = "PowerShell -NoProfile -NonInteractive -ExecutionPolicy Unrestricted -EncodedCommand "
PLUGIN_UTILS = "ansible_collections.xtractuniversal.tls.plugins.plugin_utils."
# Arguments derived from the clock at the moment of the call (backup names, deadlines): the replay's
# frozen clock reproduces them only to the second the recording started.
CLOCK_ARGS = frozenset({"backup_path", "run_at_utc", "description"})
# Text arguments that quote such a time (the deadline in an event log entry): compared with the times masked.
CLOCK_TEXT_ARGS = frozenset({"message"})
CLOCK_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
REMOVED = "<removed>"


def load(path: pathlib.Path) -> dict[str, Any]:
    recording: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return recording


def answer_text(answer: dict[str, Any]) -> tuple[int, str, str]:
    """The recorded answer as the transport returned it."""
    stdout = json.dumps(answer["document"]) if "document" in answer else str(answer["stdout"])
    return int(answer["rc"]), stdout, str(answer["stderr"])


def comparable_args(args: dict[str, Any], recorded: dict[str, Any]) -> dict[str, Any]:
    """The arguments the recording has a value for, secrets and clock-derived values left out on both sides."""
    return {
        key: CLOCK_TIME.sub("<time>", value) if key in CLOCK_TEXT_ARGS and isinstance(value, str) else value
        for key, value in args.items()
        if key in recorded and key not in CLOCK_ARGS and recorded[key] != REMOVED
    }


@dataclass
class ReplayHost(FakeHost):
    """Answers each agent call with the next recorded answer, after checking the request matches the recorded one."""

    recording: list[dict[str, Any]] = field(default_factory=list)
    rerecord: str = ""
    replayed: int = 0

    def transport(self, command: str, stdin: bytes) -> tuple[int, str, str]:
        assert command.startswith(BOOTSTRAP_PREFIX)
        payload = json.loads(stdin)
        assert payload["agent"].startswith("# xtractuniversal.tls agent 1")
        request = payload["request"]
        assert self.replayed < len(self.recording), f"the controller made more calls than recorded; re-record: {self.rerecord}"
        call = self.recording[self.replayed]
        self.replayed += 1
        sent, recorded = request["ops"], call["request"]["ops"]
        assert [(o["id"], o["op"]) for o in sent] == [(o["id"], o["op"]) for o in recorded], (
            f"call {self.replayed} asks for other operations than recorded; re-record: {self.rerecord}"
        )
        assert request["stop_on_error"] == call["request"]["stop_on_error"]
        for mine, theirs in zip(sent, recorded, strict=True):
            assert comparable_args(mine["args"], theirs["args"]) == comparable_args(theirs["args"], theirs["args"]), (
                f"call {self.replayed}, {mine['op']}: other arguments than recorded; re-record: {self.rerecord}"
            )
        return answer_text(call["answer"])


def dotted(result: dict[str, Any], path: str) -> Any:
    value: Any = result
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return "<absent>"
        value = value[part]
    return value


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Set the controller's clock (every plugin_utils module's ``utc_now``) to a recording's start."""

    def freeze(at: str) -> None:
        moment = datetime.datetime.strptime(at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
        for name, module in list(sys.modules.items()):
            if name.startswith(PLUGIN_UTILS) and hasattr(module, "utc_now"):
                monkeypatch.setattr(module, "utc_now", lambda: moment)

    return freeze


def replay(recording: dict[str, Any]) -> tuple[dict[str, Any], ReplayHost]:
    host = ReplayHost(recording=recording["calls"], rerecord=recording["rerecord"])
    result = run_action(recording["module"], recording["args"], host, check_mode=recording["check_mode"])
    return result, host


def test_recordings_exist() -> None:
    # The lab's recordings are the baseline; real servers' recordings join them in folders of their own.
    assert (ANSWERS / "lab" / "xu_tls_info.json") in RECORDINGS
    assert len(RECORDINGS) >= 10


@pytest.mark.parametrize("path", RECORDINGS, ids=[str(p.relative_to(ANSWERS)) for p in RECORDINGS])
def test_replay_reaches_the_recorded_result(path: pathlib.Path, frozen_clock: Any) -> None:
    recording = load(path)
    frozen_clock(recording["recorded_at"])
    # The modules import their plugin_utils lazily: run once so every module is loaded, then freeze again.
    replay(recording)
    frozen_clock(recording["recorded_at"])
    result, host = replay(recording)
    assert host.replayed == len(recording["calls"]), f"the controller made fewer calls than recorded; re-record: {recording['rerecord']}"
    for check in recording["checks"]:
        assert dotted(result, check) == dotted(recording["result"], check), f"{check} differs from the recording {path.name}"


@pytest.mark.parametrize("path", RECORDINGS, ids=[str(p.relative_to(ANSWERS)) for p in RECORDINGS])
def test_recordings_hold_no_secret(path: pathlib.Path) -> None:
    recording = load(path)
    for call in recording["calls"]:
        for operation in call["request"]["ops"]:
            for key in ("password", "pfx_b64"):
                assert operation["args"].get(key) in (None, "", REMOVED), f"{path.name}: {operation['op']} {key} was recorded"
    assert "PRIVATE KEY" not in path.read_text(encoding="utf-8")


def test_replay_notices_a_different_answer(frozen_clock: Any) -> None:
    """A replay that answers otherwise than recorded changes the result: the checks can fail."""
    recording = load(ANSWERS / "lab" / "xu_tls_info.json")
    frozen_clock(recording["recorded_at"])
    document = recording["calls"][0]["answer"]["document"]
    discover = next(r for r in document["results"] if r["op"] == "discover")
    tls = next(f for f in discover["result"]["files"] if f["path"].endswith("tls.json"))
    tls["content"] = tls["content"].replace("HttpsUnrestricted", "HttpUnrestricted")
    result = replay(recording)[0]
    assert result["web_server"]["protocol"] == "http_unrestricted"
    assert dotted(result, "web_server.protocol") != dotted(recording["result"], "web_server.protocol")


def test_replay_notices_a_different_request() -> None:
    recording = load(ANSWERS / "lab" / "xu_journal_write.json")
    recording["calls"][0]["request"]["ops"][0]["op"] = "cert_list"
    # The replay host's assertion reaches the result as any unexpected error does: a failed task naming it.
    result = replay(recording)[0]
    assert result["failed"] is True and "other operations than recorded" in result["msg"], result


# -- issue 21: the error records and answers Windows gives, as the lab records them --------------------------------


def answers_of(recording: dict[str, Any], op: str) -> list[dict[str, Any]]:
    return [r for call in recording["calls"] for r in call["answer"]["document"]["results"] if r["op"] == op]


def test_an_absent_gate_is_windows_error_record_and_the_report_has_no_problem(frozen_clock: Any) -> None:
    recording = load(ANSWERS / "lab" / "xu_tls_info.json")
    reads = answers_of(recording, "fw_get") + answers_of(recording, "task_get")
    assert reads and all(
        error["fqid"].startswith("CmdletizationQuery_NotFound_") and error["exception"] == "Microsoft.PowerShell.Cmdletization.Cim.CimJobException"
        for r in reads for key in ("rules_error", "active_rules_error", "task_error") if (error := r["result"].get(key))
    )
    frozen_clock(recording["recorded_at"])
    result = replay(recording)[0]
    assert result["gate"]["state"] == "open" and result["problems"] == [] and result["read_errors"] == []


def test_a_query_that_fails_otherwise_is_a_read_error_never_an_empty_gate(frozen_clock: Any) -> None:
    # The same answer with access denied where Windows said "not found": the controller must not read it as no rules.
    recording = load(ANSWERS / "lab" / "xu_tls_info.json")
    first = answers_of(recording, "fw_get")[0]["result"]
    first["rules_error"] = {**first["rules_error"], "type": "CimException", "exception": "Microsoft.Management.Infrastructure.CimException",
                            "fqid": "Windows System Error 5,Get-NetFirewallRule", "category": "PermissionDenied", "message": "Access is denied."}
    frozen_clock(recording["recorded_at"])
    result = replay(recording)[0]
    assert any(error.startswith("fw_get: CimException: Access is denied.") for error in result["read_errors"]), result


def test_a_hanging_dependent_leaves_the_service_running_and_the_stopped_one_started_again() -> None:
    recording = load(ANSWERS / "lab" / "xu_tls_binding_restart_hanging_dependent.json")
    restart = answers_of(recording, "service_restart")[0]["result"]
    assert restart["restarted"] is False and restart["state"] == "Running" and restart["elapsed_s"] < 30
    assert restart["dependents"] == [{"name": "XuScheduler", "state": "Running"}, {"name": "XuExporter", "state": "StopPending"}]
    assert recording["result"]["failed"] is True and "XuExporter did not stop" in recording["result"]["msg"]


def test_enrolment_names_its_ca_and_key_provider_and_sweeps_leftovers() -> None:
    refused = load(ANSWERS / "lab" / "xu_cert_swap_enroll_two_cas.json")
    (listing,) = answers_of(refused, "ca_list")
    assert len(listing["result"]["cas"]) == 2 and len(listing["result"]["swept"]) == 1
    assert answers_of(refused, "cert_enroll") == [] and refused["result"]["msg"].startswith("Several enterprise CAs publish the template WebServer")
    enrolled = load(ANSWERS / "lab" / "xu_cert_swap_enroll.json")
    (request,) = [op for call in enrolled["calls"] for op in call["request"]["ops"] if op["op"] == "cert_enroll"]
    assert request["args"]["ca_config"] == "ca02.xulab.test\\xulab Issuing CA" and request["args"]["key_provider"] == "schannel_csp"
    new = enrolled["result"]["new_thumbprint"]
    listed = [c for r in answers_of(enrolled, "cert_list") for c in r["result"]["certificates"] if c["thumbprint"] == new]
    assert listed and all(c["key"]["provider"] == "CSP" for c in listed)


def test_a_folder_another_user_made_is_refused() -> None:
    recording = load(ANSWERS / "lab" / "xu_journal_write_untrusted_folder.json")
    (read,) = answers_of(recording, "journal_read")
    assert read["status"] == "error" and read["error"]["type"] == "UntrustedFolder"
    assert recording["result"]["failed"] is True and answers_of(recording, "journal_write") == []
