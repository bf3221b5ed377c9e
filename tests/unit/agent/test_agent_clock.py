"""Static rules over the agent's syntax tree for time: the host's own clock sets every trigger, and every answer says it.

A host's clock may be off from the controller's (windows-traps.md: a scheduled task runs at an absolute time on the
host's clock), so no time the controller computed may reach a trigger. Each rule fails on the agent as it was before
(``git show 3dcacf9:plugins/plugin_utils/agent/xu_agent.ps1``), which took ``run_at_utc`` from the request.
"""

from __future__ import annotations

import re

import pytest
from agent.test_agent_script import AGENT, agent_op_table, command_nodes, node_text, parse, read, walk, without_comments


@pytest.fixture(scope="module")
def agent() -> str:
    return read(AGENT)


def function_body(text: str, name: str) -> str:
    for node in walk(parse(text).root_node):
        if node.type == "function_statement":
            found = next((c for c in node.children if c.type == "function_name"), None)
            if found is not None and node_text(found).lower() == name.lower():
                return without_comments(node_text(node))
    raise AssertionError(f"no function {name}")


def check_triggers_come_from_the_hosts_clock(text: str) -> None:
    register = without_comments(agent_op_table(text)["task_register"])
    # The request gives a delay, never a time.
    assert set(re.findall(r"\$a\.(\w+)", register)) == {"name", "fw_group_to_remove", "delay_s", "description"}
    triggers = [node_text(n) for n in command_nodes(text) if node_text(n).startswith("New-ScheduledTaskTrigger")]
    # certreq's one-shot task has no time trigger; the gate's is the one built from the host's now.
    assert [t for t in triggers if "-Once" in t] == ["New-ScheduledTaskTrigger -Once -At $at.ToLocalTime()"]
    assert "$at = Get-XuTrigger $a.delay_s" in register
    trigger = function_body(text, "Get-XuTrigger")
    # UTC, not [DateTime]::Now: a local now is ambiguous for the hour a daylight-saving change repeats.
    assert "$at = [DateTime]::UtcNow.AddSeconds($delay)" in trigger
    assert "[DateTime]::Now" not in without_comments(text) and "Get-Date" not in without_comments(text)


def check_every_answer_says_the_hosts_time(text: str) -> None:
    code = without_comments(text)
    assert re.search(r"\$AgentWatch = \[Diagnostics\.Stopwatch\]::StartNew\(\)", code.split("function ", 1)[0])
    envelope = re.search(r"\$envelope = \[ordered\]@\{(.*)\}", code)
    assert envelope is not None
    assert "host_time = $hostTime" in envelope.group(1) and "host_elapsed_ms = [int]$AgentWatch.ElapsedMilliseconds" in envelope.group(1)
    assert "$hostTime = [DateTime]::UtcNow.ToString(\"yyyy-MM-dd'T'HH:mm:ss.fff'Z'\", [Globalization.CultureInfo]::InvariantCulture)" in code
    assert "ConvertTo-Json -InputObject $envelope" in code


@pytest.mark.parametrize("check", [check_triggers_come_from_the_hosts_clock, check_every_answer_says_the_hosts_time])
def test_time(agent: str, check: object) -> None:
    assert callable(check)
    check(agent)
