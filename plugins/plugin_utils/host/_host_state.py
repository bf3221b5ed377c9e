# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A host's state carried from one task to the next, so that a step of a run costs one remote call. Private to this collection.

Every module returns ``host_state``: the answers of the read-only primitives it saw last. A module given
``host_state`` (from a task of the same run on the same host, read at most ``MAX_AGE`` ago) answers its
reads from it instead of calling the host. Every call that changes the host reads again at its end, in
the same call, whatever the given state held (and what this module read), so the state it returns is
the host's after the change. A module used alone (no ``host_state`` given) reads nothing more: it returns
only what it read after its last change, if anything. A write is always guarded on the host (the settings file's hash, the
journal's hash, the served certificate before a removal), and the first change planned from a carried state
is preceded, in its call, by a ``file_check`` of every settings file that state read: the caller's own
decisions (the renew role's) rest on those files too. When a guard refuses because the carried state was out
of date, nothing of the change is made (``StaleState``): the module runs once more from a fresh read, or,
with ``host_state_changed: fail``, fails and leaves the decision to its caller.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._certificate import iso, parse_iso, utc_now
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._agent import AgentClient, HostClock, Operation, OperationResult
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import XuError

# Primitives that change nothing on the host: their answers may be carried and repeated.
READ_ONLY_OPS = frozenset({"discover", "cert_list", "fw_get", "task_get", "port_probe", "journal_read"})
# A carried state older than this is read again: guards keep writes safe, but an old picture makes poor plans.
MAX_AGE = datetime.timedelta(minutes=15)
FORMAT = 1


class StaleState(XuError):
    """A guarded write found the host changed since the carried state was read; nothing of the change was written."""


def _key(operation: Operation) -> str:
    return json.dumps([operation.op, operation.args], sort_keys=True, separators=(",", ":"))


@dataclass
class _Answer:
    operation: Operation
    result: OperationResult


def _answers_of(raw: Any) -> list[_Answer]:
    answers = []
    for entry in raw if isinstance(raw, list) else []:
        if not isinstance(entry, dict) or entry.get("op") not in READ_ONLY_OPS or entry.get("status") not in ("ok", "error"):
            continue
        args = entry.get("args")
        operation = Operation(str(entry["op"]), dict(args) if isinstance(args, dict) else {})
        result = entry.get("result") if isinstance(entry.get("result"), dict) else None
        error = entry.get("error") if isinstance(entry.get("error"), dict) else None
        answers.append(_Answer(operation, OperationResult(operation.op, str(entry["status"]), result, error)))
    return answers


def usable_state(raw: Any, host: str, now: datetime.datetime | None = None) -> tuple[list[_Answer], str | None]:
    """The answers of a carried state, and why it is not used (None: it is used)."""
    if not raw:
        return [], None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        return [], "it is not a host_state this collection returned"
    if raw.get("host") != host:
        return [], f"it was read from {raw.get('host')!r}, not from {host!r}"
    read_at = parse_iso(raw.get("read_at"))
    now = now or utc_now()
    if read_at is None or not now - MAX_AGE <= read_at <= now + datetime.timedelta(minutes=1):
        return [], f"it was read at {raw.get('read_at')}, more than {int(MAX_AGE.total_seconds() // 60)} minutes ago"
    return _answers_of(raw.get("answers")), None


@dataclass
class CarriedStateAgent:
    """An ``AgentClient`` that answers reads from a carried state and keeps it fresh across the calls that change the host."""

    agent: AgentClient
    host: str
    answers: dict[str, _Answer] = field(default_factory=dict)
    read_at: datetime.datetime | None = None
    carried_hits: int = 0
    # Calls that sent the host something else than reads.
    changing_calls: int = 0
    # Given a state, the task is a step of a chain: each change is followed by a read for the next step.
    chained: bool = False
    # The first change planned from a carried state first checks that the settings files are as it read them.
    guard_pending: bool = False
    # Whether each journal (by name) is on the host, as last read or written through this agent.
    journal_present: dict[str, bool] = field(default_factory=dict)
    # The last content each journal was written with, whether or not the call's answer arrived.
    journal_sent: dict[str, str] = field(default_factory=dict)
    # The host's clock as the carried state measured it, until this task's own calls measure it.
    carried_clock: HostClock | None = None

    @classmethod
    def wrap(cls, agent: AgentClient, host: str, carried: Any) -> tuple[CarriedStateAgent, str | None]:
        answers, ignored = usable_state(carried, host)
        wrapper = cls(agent, host, {_key(a.operation): a for a in answers}, chained=bool(carried), guard_pending=bool(answers))
        if answers:
            wrapper.read_at = parse_iso(carried.get("read_at"))
            wrapper.carried_clock = HostClock.from_fact(carried.get("clock"))
        return wrapper, ignored

    @property
    def calls(self) -> int:
        return self.agent.calls

    @property
    def clock(self) -> HostClock | None:
        return self.agent.clock or self.carried_clock

    def host_now(self) -> datetime.datetime:
        """The host's time now, by its answers to this task or else to the task that carried the state."""
        if self.agent.clock is not None or self.carried_clock is None:
            return self.agent.host_now()
        return self.carried_clock.host_now(utc_now())

    def drop_carried(self) -> None:
        """Forget every answer: the next read goes to the host."""
        self.answers.clear()
        self.carried_hits = 0
        self.guard_pending = False

    def _note_journals(self, operations: Sequence[Operation], results: Sequence[OperationResult]) -> None:
        for operation, result in zip(operations, results, strict=False):
            name = str(operation.args.get("name"))
            if operation.op == "journal_read" and result.ok:
                self.journal_present[name] = bool((result.result or {}).get("exists"))
            elif operation.op == "journal_write" and result.ok:
                self.journal_present[name] = operation.args.get("content") is not None

    def settings_guards(self) -> list[Operation]:
        """A ``file_check`` of each settings file as the carried ``discover`` read it (sha256, or absent)."""
        expected: dict[str, tuple[str, str]] = {}
        for answer in self.answers.values():
            if answer.operation.op != "discover" or not answer.result.ok:
                continue
            for entry in (answer.result.result or {}).get("files") or []:
                if isinstance(entry, dict) and entry.get("full_path"):
                    digest = entry.get("sha256") if entry.get("exists") else "absent"
                    if digest:
                        # Paths are case-insensitive on Windows; two discovers of one state read the same file.
                        expected.setdefault(str(entry["full_path"]).lower(), (str(entry["full_path"]), str(digest)))
        return [Operation("file_check", {"path": path, "sha256": digest}) for path, digest in expected.values()]

    def call(self, operations: Sequence[Operation], *, stop_on_error: bool = True) -> list[OperationResult]:
        operations = list(operations)
        read_only = all(o.op in READ_ONLY_OPS for o in operations)
        if read_only and operations and all(_key(o) in self.answers for o in operations):
            self.carried_hits += 1
            answered = [self.answers[_key(o)].result for o in operations]
            self._note_journals(operations, answered)
            return answered
        # A change is followed, in the same call, by a read of everything known so far: the state after all of it.
        rereads = [] if read_only or not self.chained else [a.operation for a in self.answers.values()]
        guards = self.settings_guards() if not read_only and stop_on_error and self.guard_pending and self.carried_hits else []
        if not read_only:
            self.guard_pending = False
        for operation in operations:
            if operation.op == "journal_write" and operation.args.get("content") is not None:
                self.journal_sent[str(operation.args.get("name"))] = str(operation.args["content"])
        results = self.agent.call([*guards, *operations, *rereads], stop_on_error=stop_on_error)
        refused = next((r for r in results[:len(guards)] if not r.ok), None)
        if refused is not None:
            # stop_on_error: nothing after the refused guard ran.
            error = refused.error or {}
            if error.get("type") != "HashMismatch":
                # Not a change found, a check that could not be made: a failure, not a reason to decide again.
                raise XuError(f"Checking the settings files before the change failed ({error.get('type')}: {error.get('message')}); nothing was changed")
            raise StaleState(f"the host changed since host_state was read ({error.get('type')}: {error.get('message')}); nothing was changed")
        results = results[len(guards):]
        self._note_journals([*operations, *rereads], results)
        if not read_only:
            self.changing_calls += 1
        now = utc_now()
        if not read_only:
            # What the change may have altered is known again only from what ran after it.
            self.answers.clear()
            fresh = list(zip(rereads, results[len(operations):], strict=True))
        else:
            fresh = list(zip(operations, results, strict=True))
        for operation, result in fresh:
            # Only what was read: a read that failed is made again by the next step that needs it.
            if result.status == "ok":
                self.answers[_key(operation)] = _Answer(operation, result)
        # Merged reads keep the age of the oldest answer; a change leaves only answers read after it.
        self.read_at = now if not read_only or self.read_at is None else self.read_at
        return results[:len(operations)]

    def state(self) -> dict[str, Any] | None:
        """The state to hand to the next task (None when nothing is known)."""
        if not self.answers or self.read_at is None:
            return None
        return {
            "format": FORMAT,
            "host": self.host,
            "read_at": iso(self.read_at),
            **({"clock": self.clock.as_fact()} if self.clock is not None else {}),
            "answers": [
                {"op": a.operation.op, "args": a.operation.args, "status": a.result.status, "result": a.result.result, "error": a.result.error}
                for a in self.answers.values()
            ],
        }
