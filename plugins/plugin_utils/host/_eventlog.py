# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Entries in the host's Windows Application event log, one per change. Private to this collection.

An entry travels as one more operation of a call the module makes anyway (``event_write``),
after the operations whose outcome it states: it says what the call did, never what a
later call may still undo. A rollback's call carries its own entry.
"""

from __future__ import annotations

import datetime
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._agent import Operation
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import XuError

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,64}\Z")
# The agent refuses longer messages; Windows' own limit is 31,839 characters.
MAX_MESSAGE = 30000

# One id per kind of change, so that the log can be filtered (Get-WinEvent -FilterHashtable @{Id=...}).
CERTIFICATE_SWAPPED = 1001
TLS_BINDING_CHANGED = 1002
SETTINGS_RESTORED = 1003
GATE_CLOSED = 1004
GATE_OPENED = 1005
OLD_CERTIFICATE_REMOVED = 1006
CHANGE_ROLLED_BACK = 1009


def run_id_of(params: Mapping[str, object]) -> str:
    """The run id option, checked; a new one per task when it is not given."""
    given = params.get("run_id")
    if given is None or given == "":
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        return f"{stamp}-{secrets.token_hex(3)}"
    text = str(given)
    if not RUN_ID_PATTERN.match(text):
        raise XuError(f"run_id {text!r} must be 1 to 64 letters, digits, '.', '_', '-' or ':'")
    return text


@dataclass(frozen=True)
class EventNote:
    """What a module's changes are, for the host's event log."""

    module: str
    run_id: str
    event_id: int
    summary: str
    details: tuple[tuple[str, str | None], ...] = ()

    def operation(self) -> Operation:
        return event_operation(self.event_id, "Information", self._text(self.summary))

    def rolled_back(self, reason: str) -> Operation:
        return event_operation(CHANGE_ROLLED_BACK, "Warning", self._text(f"Rolled back: {self.summary}. Reason: {reason}"))

    def _text(self, first_line: str) -> str:
        lines = [first_line, ""]
        lines += [f"{name}: {value}" for name, value in self.details if value is not None]
        lines += [f"run_id: {self.run_id}", f"module: xtractuniversal.tls.{self.module}"]
        text = "\r\n".join(lines)
        return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def event_operation(event_id: int, entry_type: str, message: str) -> Operation:
    # An entry that cannot be written is a warning: it never stops what follows it in the call.
    return Operation("event_write", {"event_id": event_id, "entry_type": entry_type, "message": message}, optional=True)
