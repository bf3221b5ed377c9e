"""A scripted host that keeps firewall rules and scheduled tasks, for the gate and the HTTP hold."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from support.fake_host import FakeHost, group_not_found, task_not_found

PROFILE_NAMES = ("Domain", "Private", "Public")


@dataclass
class FirewallFakeHost(FakeHost):
    """A FakeHost with a rule group per name (the gate and the HTTP hold are two) and a task per name, as Windows keeps them.

    A subclass of another FakeHost adds it as a base too (``class H(FirewallFakeHost, SwapFakeHost)``): these primitives then win.
    """

    groups: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def op_fw_get(self, args: dict[str, Any]) -> dict[str, Any]:
        rules = self.groups.get(args["group"], [])
        # Every profile on, so that the rules apply (a fresh list each answer: a caller may change what it was given).
        profiles = [{"name": name, "enabled": True, "local_rules_applied": True} for name in PROFILE_NAMES]
        if not rules:
            # As Windows answers a group without rules: the query's error record, judged by the controller.
            missing = group_not_found(args["group"])
            return {"rules": None, "rules_error": missing, "active_rules": None, "active_rules_error": missing, "profiles": profiles}
        return {"rules": rules, "active_rules": [rule["name"] for rule in rules], "profiles": profiles}

    def op_fw_set(self, args: dict[str, Any]) -> dict[str, Any]:
        removed = len(self.groups.get(args["group"], []))
        self.groups[args["group"]] = [dict(rule) for rule in args["rules"]]
        return {"removed": removed, "added": len(args["rules"])}

    def op_task_get(self, args: dict[str, Any]) -> dict[str, Any]:
        task = self.tasks.get(args["name"])
        return {"task": task, "task_error": None if task is not None else task_not_found(args["name"])}

    def op_task_register(self, args: dict[str, Any]) -> dict[str, Any]:
        run_at = self.trigger(args["delay_s"])
        self.tasks[args["name"]] = {"name": args["name"], "state": "Ready", "next_run_utc": run_at, "description": args["description"]}
        return {"registered": True, "run_at_utc": run_at}

    def op_task_remove(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"removed": self.tasks.pop(args["name"], None) is not None}
