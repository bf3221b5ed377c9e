# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The journal a multi-step run keeps on the host, so an interrupted run can be resumed. Private to this collection."""

from __future__ import annotations

import json
import re
from typing import Any

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._action_base import ModuleRun
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._agent import Operation
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._errors import XuError

DEFAULT_JOURNAL = "renew"
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


def run_journal(run: ModuleRun) -> dict[str, Any]:
    name = check_journal_name(run.params["name"])
    wanted = run.params["content"] if run.params["state"] == "present" else None
    if wanted is not None:
        try:
            json.dumps(wanted)
        except (TypeError, ValueError) as e:
            raise XuError(f"content must be JSON-serialisable: {e}") from e
    current_raw = run.agent.call([Operation("journal_read", {"name": name})])[0].value()
    current = parse_journal(current_raw)
    changed = current != wanted
    result: dict[str, Any] = {"changed": changed, "name": name, "previous": current, "content": wanted}
    if run.diff:
        result["diff"] = {
            "before_header": name, "after_header": name,
            "before": journal_text(current) if current is not None else "",
            "after": journal_text(wanted) if wanted is not None else "",
        }
    if changed and not run.check_mode:
        written = run.agent.call([
            Operation("journal_write", {"name": name, "content": journal_text(wanted) if wanted is not None else None})
        ])[0].value()
        result["path"] = written.get("path")
    return result
