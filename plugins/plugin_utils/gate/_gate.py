# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The maintenance gate: the firewall rule group that blocks outside access. Private to this collection."""

from __future__ import annotations

import re
from typing import Any

DEFAULT_GATE_GROUP = "xtractuniversal.tls gate"
# The longest a gate may stay closed before the host reopens it by itself (7 days); a run's lease ends with it.
MAX_AUTO_OPEN_MINUTES = 7 * 24 * 60
_NAME = re.compile(r"^[A-Za-z0-9 ._-]{1,64}$")


def check_group_name(group: str) -> str:
    if not _NAME.match(group):
        raise ValueError(
            f"gate rule group {group!r} must be 1 to 64 letters, digits, spaces, dots, underscores or hyphens"
        )
    return group


def hold_group_name(group: str) -> str:
    """The hold's rule group: ports closed for everyone, which the gate's auto-open task does not remove."""
    return f"{group} http"[:64]


def auto_open_task_name(group: str) -> str:
    """The scheduled task that reopens the gate; derived so every module finds it."""
    return f"{group} auto-open"[:64]


def block_rule_name(group: str) -> str:
    """The gate's block rule; rule names are global on Windows, so it carries the group's name."""
    return f"{group} block"


def gate_summary(rules: list[dict[str, Any]], task: dict[str, Any] | None) -> dict[str, Any]:
    """``closed`` while an enabled block rule of the group exists, else ``open``."""
    closed = any(rule.get("enabled") and rule.get("action") == "Block" for rule in rules)
    return {
        "state": "closed" if closed else "open",
        "rules": rules,
        "auto_open": None if task is None else {
            "task": task.get("name"),
            "run_at": task.get("next_run_utc"),
            "state": task.get("state"),
        },
    }
