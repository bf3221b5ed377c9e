"""Run an action plugin of the collection in-process against a FakeHost."""

from __future__ import annotations

import importlib
from typing import Any
from unittest.mock import MagicMock

from support.fake_host import FakeHost

# The lab's default: winrm over HTTP with NTLM, whose messages pywinrm encrypts.
PROTECTED_WINRM = {"port": 5985, "scheme": "http", "transport": ["ntlm"], "remote_user": "labadmin", "_extras": {}}


def fake_connection(plugin: str = "winrm", options: dict[str, Any] | None = None) -> MagicMock:
    """A connection plugin with these resolved options (get_option), as the task executor leaves it."""
    connection = MagicMock()
    connection.transport = plugin
    connection._shell.tmpdir = None
    values = dict(PROTECTED_WINRM if options is None else options)
    connection.get_option.side_effect = values.get
    return connection


def run_action(
    module: str,
    args: dict[str, Any],
    host: FakeHost,
    *,
    check_mode: bool = False,
    diff: bool = False,
    connection: MagicMock | None = None,
    task_vars: dict[str, Any] | None = None,
) -> dict[str, Any]:
    action_class = importlib.import_module(f"ansible_collections.xtractuniversal.tls.plugins.action.{module}").ActionModule
    task = MagicMock()
    task.args = args
    task.check_mode = check_mode
    task.diff = diff
    task.async_val = 0
    task.action = f"xtractuniversal.tls.{module}"
    connection = connection or fake_connection()
    play_context = MagicMock()
    play_context.check_mode = check_mode
    action = action_class(task, connection, play_context, loader=MagicMock(), templar=MagicMock(), shared_loader_obj=MagicMock())
    action._execute_remote = host.transport
    result: dict[str, Any] = action.run(task_vars={"inventory_hostname": "xu01", **(task_vars or {})})
    return result
