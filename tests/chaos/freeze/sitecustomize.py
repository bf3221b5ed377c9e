"""Freezes a renew run's controller at an exact remote call, for the chaos suite (tests/chaos/run.py).

Imported by every Python started with this directory on PYTHONPATH; it does nothing unless XU_CHAOS_FREEZE is set:

    {"dir": "/tmp/...", "phase": "act", "after": {"127.0.2.1": 3, "127.0.2.2": 1}}

The worker that runs the xu_renew task of ``phase`` for the host at an address of ``after`` stops itself (SIGSTOP)
right after that task's k-th remote call has answered, before it sends anything more, and leaves a marker file in
``dir`` first (``<address>-<pid>``, JSON). With ``"op": "journal_write"`` and ``"events": {address: events.jsonl}``
only the calls that sent that primitive count, as the host's event log records the call (the lab writes a call's
event before it answers). The chaos suite then kills the whole controller, or stops the rest of it and
wakes it later (SIGCONT): a controller that dies, or stalls, at that call and at no other. A host the run never takes
that far leaves no marker.

Only the moment is chosen here; what the controller sends, and when, is its own.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import os
import pathlib
import signal
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

ACTION_MODULE = "ansible.plugins.action"


def _freeze_after_calls(config: dict[str, Any], action_base: type) -> None:
    """Wrap ActionBase._low_level_execute_command: count the phase's calls per worker, and stop at the k-th."""
    original = action_base._low_level_execute_command  # type: ignore[attr-defined]
    after = {str(address): int(calls) for address, calls in config["after"].items()}
    calls = {"count": 0}

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        answer = original(self, *args, **kwargs)
        task = self._task
        if not str(task.action).endswith("xu_renew") or task.args.get("phase") != config["phase"]:
            return answer
        address = str(self._play_context.remote_addr)
        if config.get("op") and config["op"] not in _last_call_ops(config["events"].get(address)):
            return answer
        calls["count"] += 1
        if after.get(address) == calls["count"]:
            marker = pathlib.Path(config["dir"]) / f"{address}-{os.getpid()}"
            marker.write_text(json.dumps({"pid": os.getpid(), "address": address, "phase": config["phase"], "calls": calls["count"]}))
            os.kill(os.getpid(), signal.SIGSTOP)
        return answer

    action_base._low_level_execute_command = counted  # type: ignore[attr-defined]


def _last_call_ops(events: str | None) -> list[str]:
    """The primitives of the host's last remote call, from its event log."""
    if not events:
        return []
    for line in reversed(pathlib.Path(events).read_text().splitlines()):
        if '"remote_call"' in line:
            event = json.loads(line)
            if event.get("type") == "remote_call":
                return [str(op) for op in event.get("ops") or []]
    return []


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Patches ansible.plugins.action once it has been imported (by ansible-playbook, as it would be anyway)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != ACTION_MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        load = loader.exec_module
        config = self.config

        def exec_module(module: ModuleType) -> None:
            load(module)
            _freeze_after_calls(config, module.ActionBase)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if os.environ.get("XU_CHAOS_FREEZE"):
    sys.meta_path.insert(0, _PatchOnImport(json.loads(os.environ["XU_CHAOS_FREEZE"])))
