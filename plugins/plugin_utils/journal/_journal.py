# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The journal a multi-step run keeps on the host, so an interrupted run can be resumed. Private to this collection."""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._action_base import ModuleRun
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._agent import Operation, OperationResult
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import XuError
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.journal._lease import (
    DEFAULT_JOURNAL,
    MAX_LEASE_MINUTES,
    lease_owner,
    lease_terms,
    lease_until,
)

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")


def check_journal_name(name: str) -> str:
    if not _NAME.match(name):
        raise XuError(f"journal name {name!r} must be 1 to 64 letters, digits, dots, underscores or hyphens")
    return name


def parse_journal(raw: dict[str, Any] | None) -> dict[str, Any] | None:
    """The journal's content, None when there is none; a journal that is not JSON is reported as such."""
    if not raw or not raw.get("exists"):
        return None
    try:
        content = json.loads(raw.get("content") or "")
    except ValueError:
        return {"unreadable": raw.get("content")}
    return content if isinstance(content, dict) else {"unreadable": raw.get("content")}


def journal_text(content: dict[str, Any]) -> str:
    return json.dumps(content, indent=2, sort_keys=True) + "\n"


def busy_error(name: str, owner: dict[str, Any], why: str = "") -> XuError:
    return XuError(
        f"The host is busy: run {owner.get('run_id')} holds it (journal {name}, step {owner.get('step') or 'unknown'},"
        f" lease until {owner.get('lease_expires')}){why}; nothing was changed. Run again once that run has finished,"
        " or after its lease has expired",
        busy=True, owner=owner,
    )


def run_journal(run: ModuleRun) -> dict[str, Any]:
    name = check_journal_name(run.params["name"])
    lease = run.params.get("lease_minutes")
    if lease is not None and not 1 <= lease <= MAX_LEASE_MINUTES:
        raise XuError(f"lease_minutes must be from 1 to {MAX_LEASE_MINUTES}, not {lease}")
    wanted = run.params["content"] if run.params["state"] == "present" else None
    if wanted is not None:
        try:
            json.dumps(wanted)
        except (TypeError, ValueError) as e:
            raise XuError(f"content must be JSON-serialisable: {e}") from e
    run_id = run.run_id
    current_raw = run.agent.call([Operation("journal_read", {"name": name})])[0].value()
    current = parse_journal(current_raw)
    # The lease is the host's business: judged and written in its time, whatever the controller's clock says.
    host_now = run.agent.host_now()
    owner = lease_owner(current, run_id, host_now)
    if owner is not None:
        raise busy_error(name, owner)
    lease_expires = None
    if wanted is not None and lease is not None:
        lease_expires = lease_until(host_now, lease)
        wanted = {**wanted, "run_id": run_id, "lease_expires": lease_expires}
    changed = current != wanted
    result: dict[str, Any] = {"changed": changed, "name": name, "previous": current, "content": wanted, "lease_expires": lease_expires}
    if run.diff:
        result["diff"] = {
            "before_header": name, "after_header": name,
            "before": journal_text(current) if current is not None else "",
            "after": journal_text(wanted) if wanted is not None else "",
        }
    if changed and not run.check_mode:
        # Written only over what was read: a run that wrote meanwhile holds the host now.
        expected = (current_raw or {}).get("sha256") or "absent"
        (written,) = run.agent.call([
            Operation("journal_write", {
                "name": name, "content": journal_text(wanted) if wanted is not None else None, "expected_sha256": expected,
            })
        ])
        if written.status == "error" and (written.error or {}).get("type") == "HashMismatch":
            # Another run wrote between the read and this write: a conflict costs one more read, to name it.
            found = parse_journal(run.agent.call([Operation("journal_read", {"name": name})])[0].value()) or {}
            owner = {"run_id": found.get("run_id", "unknown"), "step": found.get("step"), "lease_expires": found.get("lease_expires")}
            raise busy_error(name, owner, ", written since this run read it")
        result["path"] = written.value().get("path")
    return result


@dataclass(frozen=True)
class JournalRide:
    """The run's journal, kept by a module in the calls it makes anyway (its ``journal`` option).

    ``state``: ``present`` writes ``content`` before the module's change, as this run's lease on the host;
    ``absent`` removes the journal after the change succeeded; ``during`` does both, for a run whose only
    change is this module's. Writes and removals are guarded by the journal's hash as read (or as written
    in the same call), so a run that wrote meanwhile is never overwritten.
    """

    name: str
    state: str
    content: dict[str, Any] | None
    lease_minutes: int | None
    # The renew engine's lease: renewed with each write, for its longest call and the margin (lease_minutes is then None).
    call_budget_s: float | None = None
    # The run an operator named as gone (xu_renew_take_over), whose live lease this run may replace.
    takes_over: str | None = None

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> JournalRide | None:
        option = params.get("journal")
        if not option:
            return None
        name = check_journal_name(option.get("name") or DEFAULT_JOURNAL)
        lease = option.get("lease_minutes")
        if lease is not None and not 1 <= lease <= MAX_LEASE_MINUTES:
            raise XuError(f"journal.lease_minutes must be from 1 to {MAX_LEASE_MINUTES}, not {lease}")
        state = option.get("state") or "present"
        content = option.get("content")
        if state != "absent":
            if not isinstance(content, dict):
                raise XuError(f"journal.content is required with journal.state={state}")
            try:
                json.dumps(content)
            except (TypeError, ValueError) as e:
                raise XuError(f"journal.content must be JSON-serialisable: {e}") from e
        return cls(name, state, content if state != "absent" else None, lease)

    def with_content(self, extra: dict[str, Any]) -> JournalRide:
        if self.content is None:
            return self
        return JournalRide(self.name, self.state, {**self.content, **extra}, self.lease_minutes, self.call_budget_s, self.takes_over)

    def with_backups(self, backups: dict[str, str], *, first: bool = False) -> JournalRide:
        """The content with the backups the change is about to make; a file's first backup in the run (the bytes from
        before it) is kept, as the role's own journal keeps it. With ``first``, ``backups`` were made earlier than
        those recorded, and take their place."""
        recorded = dict((self.content or {}).get("backup_files") or {})
        for path, backup in backups.items():
            known = next((k for k in recorded if str(k).lower() == path.lower()), None)
            if known is None:
                recorded[path] = backup
            elif first:
                recorded[known] = backup
        return self.with_content({"backup_files": recorded})

    def backups(self) -> list[str]:
        """The backups the run's journal names: the bytes from before the run, never pruned."""
        recorded = (self.content or {}).get("backup_files")
        return [str(b) for b in recorded.values() if isinstance(b, str)] if isinstance(recorded, dict) else []

    def read_operation(self) -> Operation:
        return Operation("journal_read", {"name": self.name})

    def check_owner(self, current_raw: dict[str, Any] | None, run_id: str, host_now: datetime.datetime) -> None:
        """XuError (busy) when another run holds a live lease on the host; ``host_now``: the host's time (``Agent.host_now``)."""
        owner = lease_owner(parse_journal(current_raw), run_id, host_now)
        if owner is not None and owner["run_id"] != self.takes_over:
            raise busy_error(self.name, owner)

    def write_operations(self, current_raw: dict[str, Any] | None, run_id: str, host_now: datetime.datetime) -> list[Operation]:
        """The write before the change (``present``, ``during``), over the journal as read; the lease runs from ``host_now``,
        the host's time (``Agent.host_now``)."""
        if self.content is None:
            return []
        wanted = {**self.content, "run_id": run_id}
        current = parse_journal(current_raw) or {}
        if current.get("run_id") == run_id:
            # What this run's modules added in earlier calls survives the caller's next write: the record of a
            # renewal, and the first backup of each file (the bytes from before the run).
            if "renewal" in current and "renewal" not in wanted:
                wanted["renewal"] = current["renewal"]
            earlier = current.get("backup_files")
            if isinstance(earlier, dict) and earlier:
                merged = JournalRide(self.name, self.state, wanted, None).with_backups({str(k): str(v) for k, v in earlier.items()}, first=True)
                wanted = {**wanted, **(merged.content or {})}
        if self.call_budget_s is not None:
            wanted.update(lease_terms(host_now, self.call_budget_s))
        elif self.lease_minutes is not None:
            wanted["lease_expires"] = lease_until(host_now, self.lease_minutes)
        expected = (current_raw or {}).get("sha256") or "absent"
        return [Operation("journal_write", {"name": self.name, "content": journal_text(wanted), "expected_sha256": expected})]

    def removal_operations(self, current_raw: dict[str, Any] | None, run_id: str, taken_over: str | None = None) -> list[Operation]:
        """The removal after the change (``absent``, ``during``), over the journal as read or as just written; busy
        (an XuError) when the journal there is another run's: a run removes only its own journal (or that of the
        interrupted run it took over, ``taken_over``), never another's lease."""
        if self.state == "present" or not (current_raw or {}).get("exists"):
            return []
        found = parse_journal(current_raw) or {}
        if found.get("run_id") not in (run_id, *((taken_over,) if taken_over else ())):
            owner = {"run_id": found.get("run_id", "unknown"), "step": found.get("step"), "lease_expires": found.get("lease_expires")}
            raise busy_error(self.name, owner, ", which is not this run's journal")
        return [Operation("journal_write", {"name": self.name, "content": None, "expected_sha256": (current_raw or {}).get("sha256")})]


def written_journal(operations: list[Operation], current_raw: dict[str, Any] | None) -> dict[str, Any] | None:
    """The journal as ``operations`` (from ``write_operations``) leave it: what the module's later operations find."""
    for operation in operations:
        text = operation.args["content"]
        current_raw = {"exists": True, "content": text, "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
    return current_raw


def journal_guard_failed(results: list[OperationResult]) -> bool:
    """Whether a journal write in ``results`` found the journal changed since it was read."""
    return any(r.op == "journal_write" and r.status == "error" and (r.error or {}).get("type") == "HashMismatch" for r in results)
