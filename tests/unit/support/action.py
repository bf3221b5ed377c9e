"""Run an action plugin of the collection in-process against a FakeHost."""

from __future__ import annotations

import importlib
from typing import Any
from unittest.mock import MagicMock

from support.fake_host import FakeHost


def run_action(module: str, args: dict[str, Any], host: FakeHost, *, check_mode: bool = False, diff: bool = False) -> dict[str, Any]:
    action_class = importlib.import_module(f"ansible_collections.xtractuniversal.tls.plugins.action.{module}").ActionModule
    task = MagicMock()
    task.args = args
    task.check_mode = check_mode
    task.diff = diff
    task.async_val = 0
    task.action = f"xtractuniversal.tls.{module}"
    connection = MagicMock()
    connection._shell.tmpdir = None
    play_context = MagicMock()
    play_context.check_mode = check_mode
    action = action_class(task, connection, play_context, loader=MagicMock(), templar=MagicMock(), shared_loader_obj=MagicMock())
    action._execute_remote = host.transport
    result: dict[str, Any] = action.run(task_vars={"inventory_hostname": "xu01"})
    return result
