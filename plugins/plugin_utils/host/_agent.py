# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running the remote agent through the host's own connection. Private to this collection.

See docs/agent-protocol.md. One ``AgentClient.call`` is one remote command: a constant
bootstrap on the command line, and the agent plus the request as JSON on stdin.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import functools
import html
import json
import pathlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._certificate import utc_now
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import OperationError, RemoteError
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._windows_errors import ABSENT_OPS, absent_matchers, classify, judge_queries

PROTOCOL = 1
AGENT_DIR = pathlib.Path(__file__).resolve().parents[1] / "agent"
BOOTSTRAP_MARKER = "# xtractuniversal.tls bootstrap 1"
AGENT_MARKER = "# xtractuniversal.tls agent 1"

# (command, stdin) -> (rc, stdout, stderr); the action plugin supplies it.
Transport = Callable[[str, bytes], tuple[int, str, str]]
# Called with the names of a call's secret-carrying operations before the call is sent; it raises to stop the call.
SecretsCheck = Callable[[Sequence[str]], None]

# The operations whose arguments carry secrets: pfx_import (the PFX with its private key, and its password).
# Nothing else the agent is sent is secret: journals, settings files, events and enrolment requests hold
# thumbprints, paths and names only.
SECRET_OPERATIONS = frozenset({"pfx_import"})


def _read_script(name: str, marker: str) -> str:
    text = (AGENT_DIR / name).read_text(encoding="utf-8")
    if not text.startswith(marker):
        raise RuntimeError(f"{name} does not start with its marker line {marker!r}")
    return text


def without_comment_lines(script: str) -> str:
    """The script without its comment-only lines (but the marker line) and without indentation: both are for its readers,
    not for each call's payload (together a third of its bytes).

    Safe because no string in the agent spans lines (tests/unit/agent keeps it so), so no line that starts with ``#``
    is inside one, and no line's leading blanks belong to a string.
    """
    first, _sep, rest = script.partition("\n")
    return "\n".join([first, *(line.lstrip(" ") for line in rest.split("\n") if not line.lstrip().startswith("#"))])


@functools.cache
def agent_payload_texts() -> tuple[str, str]:
    """The bootstrap's command line and the agent's text as sent: read and prepared once per process.

    The action plugins' base calls it in the controller's main process, so every forked worker finds them ready
    instead of reading and stripping the agent (75 kB) for each task.
    """
    return (encoded_command(_read_script("bootstrap.ps1", BOOTSTRAP_MARKER)),
            without_comment_lines(_read_script("xu_agent.ps1", AGENT_MARKER)))


def encoded_command(script: str) -> str:
    """The PowerShell command line running ``script``; winrm and psrp recognise the form."""
    encoded = base64.b64encode(script.encode("utf-16-le")).decode("ascii")
    return f"PowerShell -NoProfile -NonInteractive -ExecutionPolicy Unrestricted -EncodedCommand {encoded}"


@dataclass(frozen=True)
class Operation:
    op: str
    args: dict[str, Any] = field(default_factory=dict)
    # An optional operation's error does not stop the call (an event log entry that cannot be written).
    optional: bool = False


@dataclass(frozen=True)
class OperationResult:
    op: str
    status: str
    result: dict[str, Any] | None
    error: dict[str, Any] | None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def error_kind(self) -> str | None:
        """The controller's judgement of the error (``_windows_errors.classify``); None when the operation did not fail."""
        return classify(self.error) if self.status == "error" else None

    def value(self) -> dict[str, Any]:
        """The result, or OperationError for an error or a skipped operation."""
        if self.status == "ok":
            return self.result or {}
        if self.status == "skipped":
            raise OperationError(self.op, "Skipped", "not run because an earlier operation failed")
        error = self.error or {}
        raise OperationError(self.op, str(error.get("type", "Error")), str(error.get("message", "")), identity=dict(error),
                             kind=classify(error))


@dataclass(frozen=True)
class HostClock:
    """How far the host's clock is from the controller's: ``offset`` (host minus controller; positive: the host is
    ahead), known to within ``uncertainty`` either way (half the round trip the agent did not spend running)."""

    offset: datetime.timedelta
    uncertainty: datetime.timedelta

    @classmethod
    def measured(cls, answer: dict[str, Any], sent: datetime.datetime, received: datetime.datetime) -> HostClock | None:
        """From one answer: the middle of the agent's run on the host's clock against the middle of the controller's
        send and receive (the agent's run lies within them); None when the answer does not say the host's time."""
        host_time = parse_host_time(answer.get("host_time"))
        elapsed_ms = answer.get("host_elapsed_ms")
        if host_time is None or isinstance(elapsed_ms, bool) or not isinstance(elapsed_ms, int) or elapsed_ms < 0:
            return None
        host_elapsed = datetime.timedelta(milliseconds=elapsed_ms)
        round_trip = max(received - sent, datetime.timedelta(0))
        offset = (host_time - host_elapsed / 2) - (sent + round_trip / 2)
        return cls(offset, max(round_trip - host_elapsed, datetime.timedelta(0)) / 2)

    def host_now(self, controller_now: datetime.datetime) -> datetime.datetime:
        return controller_now + self.offset

    def as_fact(self) -> dict[str, float]:
        return {"offset_s": round(self.offset.total_seconds(), 3), "uncertainty_s": round(self.uncertainty.total_seconds(), 3)}

    @classmethod
    def from_fact(cls, fact: Any) -> HostClock | None:
        """What ``as_fact`` made (a carried state's), or None."""
        if not isinstance(fact, dict):
            return None
        offset, uncertainty = fact.get("offset_s"), fact.get("uncertainty_s")
        if isinstance(offset, bool) or isinstance(uncertainty, bool) or not isinstance(offset, (int, float)) or not isinstance(uncertainty, (int, float)):
            return None
        return cls(datetime.timedelta(seconds=offset), datetime.timedelta(seconds=uncertainty))


def format_host_time(moment: datetime.datetime) -> str:
    """As the agent writes ``host_time``: ISO 8601 UTC with milliseconds."""
    moment = moment.astimezone(datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_host_time(value: Any) -> datetime.datetime | None:
    """The agent's ``host_time`` (``2026-11-26T20:11:57.123Z``), in UTC; None when it is not one."""
    if not isinstance(value, str):
        return None
    for form in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        with contextlib.suppress(ValueError):
            return datetime.datetime.strptime(value, form).replace(tzinfo=datetime.timezone.utc)
    return None


class Agent(Protocol):
    """What the modules' logic calls: ``AgentClient``, or a wrapper answering reads from a carried state."""

    @property
    def calls(self) -> int: ...

    @property
    def clock(self) -> HostClock | None: ...

    def host_now(self) -> datetime.datetime: ...

    def call(self, operations: Sequence[Operation], *, stop_on_error: bool = True) -> list[OperationResult]: ...


class AgentClient:
    """Sends batches of primitive operations to one host and returns their results.

    Every answer carries the host's own time; ``clock`` is the best estimate of the host's clock so far (the answer
    with the shortest round trip), ``host_now()`` the host's time now by it.
    """

    def __init__(self, transport: Transport, *, before_secrets: SecretsCheck | None = None) -> None:
        self._transport = transport
        self._before_secrets = before_secrets
        self._bootstrap_command, self._agent = agent_payload_texts()
        self.calls = 0
        self.clock: HostClock | None = None

    def call(self, operations: Sequence[Operation], *, stop_on_error: bool = True) -> list[OperationResult]:
        """Run ``operations`` in order in one remote command."""
        secrets = [o.op for o in operations if o.op in SECRET_OPERATIONS]
        if secrets and self._before_secrets is not None:
            self._before_secrets(secrets)
        request: dict[str, Any] = {
            "protocol": PROTOCOL,
            "stop_on_error": stop_on_error,
            "ops": [{"id": i, "op": o.op, "args": o.args, **({"optional": True} if o.optional else {})} for i, o in enumerate(operations, start=1)],
        }
        if any(o.op in ABSENT_OPS for o in operations):
            # Which errors mean "not there" is the controller's table; the agent only compares (docs/agent-protocol.md, Request).
            request["absent_errors"] = absent_matchers()
        payload = json.dumps({"agent": self._agent, "request": request}, ensure_ascii=True, separators=(",", ":"))
        self.calls += 1
        sent = utc_now()
        rc, stdout, stderr = self._transport(self._bootstrap_command, payload.encode("ascii"))
        received = utc_now()
        answer, results = parse_envelope(rc, stdout, stderr, operations)
        reading = HostClock.measured(answer, sent, received)
        if reading is not None and (self.clock is None or reading.uncertainty < self.clock.uncertainty):
            self.clock = reading
        return results

    def host_now(self) -> datetime.datetime:
        """The host's time now, as far as its answers tell; the controller's when no answer has said it yet."""
        now = utc_now()
        return self.clock.host_now(now) if self.clock is not None else now


def parse_answer(rc: int, stdout: str, stderr: str, operations: Sequence[Operation]) -> list[OperationResult]:
    """Check the agent's answer against the request; RemoteError when it is not one."""
    return parse_envelope(rc, stdout, stderr, operations)[1]


def parse_envelope(rc: int, stdout: str, stderr: str, operations: Sequence[Operation]) -> tuple[dict[str, Any], list[OperationResult]]:
    """The agent's answer object and its results, checked against the request; RemoteError when it is not one.

    A well-formed answer counts whatever the exit code: psrp reports rc 1 whenever the error
    stream had output, which a cmdlet's non-terminating error inside a primitive can cause.
    """
    answer = _find_answer(stdout)
    if answer is None:
        mode = refused_language_mode(stdout + "\n" + stderr)
        if mode is not None:
            raise RemoteError(
                f"PowerShell on the host runs in {mode} mode (an AppLocker or WDAC policy imposes it), and xtractuniversal.tls"
                " needs FullLanguage mode: nothing was run. Exempt the account Ansible connects with from the policy"
                " (or allow powershell.exe in FullLanguage mode for it), then run again",
                rc, stdout, stderr,
            )
        if rc != 0:
            raise RemoteError(f"The agent failed on the host (rc={rc}): {_first_line(stderr) or 'no error output'}", rc, stdout, stderr)
        raise RemoteError("The host did not answer with the agent's JSON document", rc, stdout, stderr)
    if answer.get("protocol") != PROTOCOL:
        raise RemoteError(f"The agent speaks protocol {answer.get('protocol')!r}, expected {PROTOCOL}", rc, stdout, stderr)
    raw_results = answer.get("results")
    if not isinstance(raw_results, list) or len(raw_results) != len(operations):
        raise RemoteError("The agent's answer does not match the request", rc, stdout, stderr)
    results = []
    for operation, raw in zip(operations, raw_results, strict=True):
        if not isinstance(raw, dict) or raw.get("op") != operation.op or raw.get("status") not in ("ok", "error", "skipped"):
            raise RemoteError(f"The agent's answer for {operation.op} is malformed", rc, stdout, stderr)
        status, result, error = raw["status"], raw.get("result"), raw.get("error")
        if status == "ok" and isinstance(result, dict):
            # A read reports a failed query beside its result; what that error means is judged here, not on the host.
            result, error = judge_queries(operation.op, result)
            if error is not None:
                status, result = "error", None
        results.append(OperationResult(operation.op, status, result, error))
    return answer, results


def _find_answer(stdout: str) -> dict[str, Any] | None:
    """The agent's answer object in stdout, None when there is none."""
    answer = None
    # PowerShell may prefix output (e.g. a profile's banner); the answer is the last JSON line. A console whose encoding
    # was switched to UTF-8 with a BOM puts U+FEFF before it, which str.strip() keeps.
    for raw_line in reversed(stdout.strip().splitlines()):
        line = raw_line.strip().lstrip("\ufeff").strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                answer = json.loads(line)
            break
    if not isinstance(answer, dict) or answer.get("agent") != "xtractuniversal.tls":
        return None
    return answer


# The bootstrap's fixed refusal outside FullLanguage mode (docs/agent-protocol.md, Transport), without its spaces:
# PowerShell may wrap the error text, and CLIXML (winrm's stderr) escapes line breaks as _x000D__x000A_.
_LANGUAGE_MODE_REFUSAL = re.compile(
    r"xtractuniversal\.tlsneedsPowerShell'sFullLanguagemode;thissessionrunsin(ConstrainedLanguage|RestrictedLanguage|NoLanguage)"
)


def refused_language_mode(output: str) -> str | None:
    """The language mode the bootstrap refused to run in, when ``output`` holds its refusal; else None."""
    text = re.sub(r"_x[0-9A-Fa-f]{4}_", " ", output)
    text = html.unescape(re.sub(r"<[^>]*>", " ", text))
    match = _LANGUAGE_MODE_REFUSAL.search(re.sub(r"\s+", "", text))
    return match.group(1) if match else None


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""
