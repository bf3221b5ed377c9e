"""Helpers of the lab's own tests: run a scenario, build agent payloads, read a host's events."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import pathlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._agent import Operation, OperationResult, parse_answer
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._windows_errors import ABSENT_OPS, absent_matchers
from xulab.host import Host
from xulab.wsman import CommandResult

REPO = pathlib.Path(__file__).resolve().parents[3]
AGENT_DIR = REPO / "plugins" / "plugin_utils" / "agent"
STUB_AGENT = "# xtractuniversal.tls agent 1\nparam($Request)\n"

HostFactory = Callable[..., contextlib.AbstractAsyncContextManager[Host]]
AgentCall = Callable[..., Awaitable[tuple[CommandResult, dict[str, Any] | None]]]
Ops = list[tuple[str, dict[str, Any]]]
T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run one test scenario in a fresh event loop."""

    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, timeout)

    return asyncio.run(bounded())


def agent_text() -> str:
    """The real agent when the collection has it, else a stub with its marker line."""
    path = AGENT_DIR / "xu_agent.ps1"
    return path.read_text(encoding="utf-8") if path.exists() else STUB_AGENT


def encoded_command(script: str) -> str:
    encoded = base64.b64encode(script.encode("utf-16-le")).decode("ascii")
    return f"PowerShell -NoProfile -NonInteractive -ExecutionPolicy Unrestricted -EncodedCommand {encoded}"


def bootstrap_command() -> str:
    path = AGENT_DIR / "bootstrap.ps1"
    return encoded_command(path.read_text(encoding="utf-8") if path.exists() else "# xtractuniversal.tls bootstrap 1\n")


def payload(ops: Ops, *, stop_on_error: bool = True, protocol: int = 1, agent: str | None = None, absent_errors: bool = True) -> bytes:
    """The request as the controller sends it; with ``absent_errors`` (the default) carrying the controller's not-found
    shapes when an operation needs them, as AgentClient does."""
    request: dict[str, Any] = {
        "protocol": protocol,
        "stop_on_error": stop_on_error,
        "ops": [{"id": number, "op": op, "args": args} for number, (op, args) in enumerate(ops, start=1)],
    }
    if absent_errors and any(op in ABSENT_OPS for op, _args in ops):
        request["absent_errors"] = absent_matchers()
    return json.dumps({"agent": agent_text() if agent is None else agent, "request": request}, ensure_ascii=True).encode("ascii")


def results(answer: dict[str, Any] | None) -> list[dict[str, Any]]:
    assert answer is not None
    entries: list[dict[str, Any]] = answer["results"]
    return entries


def only_result(answer: dict[str, Any] | None) -> dict[str, Any]:
    """The result of a one-op call that must have succeeded."""
    (entry,) = results(answer)
    assert entry["status"] == "ok", entry
    result: dict[str, Any] = entry["result"]
    return result


def events(host: Host, kind: str | None = None) -> list[dict[str, Any]]:
    path = host.directory / "events.jsonl"
    found = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [event for event in found if kind is None or event["type"] == kind]


def brief(error: object) -> dict[str, object]:
    """An error answer's ``type`` and ``message`` only (the identity fields beside them are checked where they matter)."""
    assert isinstance(error, dict), error
    return {"type": error.get("type"), "message": error.get("message")}


def judged(answer: dict[str, Any] | None, ops: Ops) -> list[OperationResult]:
    """The lab's answer as the controller reads it (AgentClient's parse_answer): query errors judged, identities classified."""
    return parse_answer(0, json.dumps(answer), "", [Operation(op, args) for op, args in ops])
