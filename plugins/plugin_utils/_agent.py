# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running the remote agent through the host's own connection. Private to this collection.

See docs/agent-protocol.md. One ``AgentClient.call`` is one remote command: a constant
bootstrap on the command line, and the agent plus the request as JSON on stdin.
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import pathlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._errors import OperationError, RemoteError

PROTOCOL = 1
AGENT_DIR = pathlib.Path(__file__).parent / "agent"
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
    """The script without its comment-only lines (but the marker line): they are for its readers, not for each call's payload.

    Safe because no string in the agent spans lines (tests/unit/agent keeps it so), so no line that starts with ``#``
    is inside one.
    """
    first, _sep, rest = script.partition("\n")
    return "\n".join([first, *(line for line in rest.split("\n") if not line.lstrip().startswith("#"))])


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

    def value(self) -> dict[str, Any]:
        """The result, or OperationError for an error or a skipped operation."""
        if self.status == "ok":
            return self.result or {}
        if self.status == "skipped":
            raise OperationError(self.op, "Skipped", "not run because an earlier operation failed")
        error = self.error or {}
        raise OperationError(self.op, str(error.get("type", "Error")), str(error.get("message", "")))


class Agent(Protocol):
    """What the modules' logic calls: ``AgentClient``, or a wrapper answering reads from a carried state."""

    @property
    def calls(self) -> int: ...

    def call(self, operations: Sequence[Operation], *, stop_on_error: bool = True) -> list[OperationResult]: ...


class AgentClient:
    """Sends batches of primitive operations to one host and returns their results."""

    def __init__(self, transport: Transport, *, before_secrets: SecretsCheck | None = None) -> None:
        self._transport = transport
        self._before_secrets = before_secrets
        self._bootstrap_command = encoded_command(_read_script("bootstrap.ps1", BOOTSTRAP_MARKER))
        self._agent = without_comment_lines(_read_script("xu_agent.ps1", AGENT_MARKER))
        self.calls = 0

    def call(self, operations: Sequence[Operation], *, stop_on_error: bool = True) -> list[OperationResult]:
        """Run ``operations`` in order in one remote command."""
        secrets = [o.op for o in operations if o.op in SECRET_OPERATIONS]
        if secrets and self._before_secrets is not None:
            self._before_secrets(secrets)
        request = {
            "protocol": PROTOCOL,
            "stop_on_error": stop_on_error,
            "ops": [{"id": i, "op": o.op, "args": o.args, **({"optional": True} if o.optional else {})} for i, o in enumerate(operations, start=1)],
        }
        payload = json.dumps({"agent": self._agent, "request": request}, ensure_ascii=True, separators=(",", ":"))
        self.calls += 1
        rc, stdout, stderr = self._transport(self._bootstrap_command, payload.encode("ascii"))
        return parse_answer(rc, stdout, stderr, operations)


def parse_answer(rc: int, stdout: str, stderr: str, operations: Sequence[Operation]) -> list[OperationResult]:
    """Check the agent's answer against the request; RemoteError when it is not one.

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
        results.append(OperationResult(operation.op, raw["status"], raw.get("result"), raw.get("error")))
    return results


def _find_answer(stdout: str) -> dict[str, Any] | None:
    """The agent's answer object in stdout, None when there is none."""
    answer = None
    # PowerShell may prefix output (e.g. a profile's banner); the answer is the last JSON line.
    for raw_line in reversed(stdout.strip().splitlines()):
        line = raw_line.strip()
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
