"""The lab answers with the error records Windows returns, and the controller's table judges them.

An absent firewall rule group or scheduled task is the normal state of every host; Windows reports it with an
error record (PowerShell's QueryJobBase: a CimJobException, CmdletizationQuery_NotFound_*, ObjectNotFound), not with
an empty list. These tests hold the lab to that shape and the controller's judgement (plugins/plugin_utils/
_windows_errors.py) to the lab's answers, so a controller that reads an error as "nothing there", or a failure as
"not found", fails here.
"""

from __future__ import annotations

import pytest
from lab.labkit import AgentCall, HostFactory, judged, results, run

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import OperationError
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._windows_errors import ACCESS_DENIED, NOT_FOUND, OTHER, classify

CIM_JOB = "Microsoft.PowerShell.Cmdletization.Cim.CimJobException"
GATE = "xu-gate"
BLOCK = [{"name": "xu-gate block", "display_name": "gate", "action": "Block", "local_ports": ["8165"], "remote_addresses": ["10.0.0.0/8"]}]


def test_an_absent_rule_group_is_the_query_error_record_and_the_controller_reads_it_as_no_rules(
    host_factory: HostFactory, agent_call: AgentCall
) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            ops = [("fw_get", {"group": GATE}), ("task_get", {"name": f"{GATE} auto-open"})]
            _result, answer = await agent_call(host, ops)
            read, task = (r["result"] for r in results(answer))
            # What Windows answers: no list at all, the query's error record beside it.
            assert read["rules"] is None and read["active_rules"] is None
            for error in (read["rules_error"], read["active_rules_error"]):
                assert error["type"] == "CimJobException" and error["exception"] == CIM_JOB
                assert error["fqid"] == "CmdletizationQuery_NotFound_RuleGroup,Get-NetFirewallRule"
                assert error["category"] == "ObjectNotFound"
            assert task["task"] is None
            assert task["task_error"]["fqid"] == "CmdletizationQuery_NotFound_TaskName,Get-ScheduledTask"
            # What the controller makes of it: an empty group and no task, with the profiles as read.
            firewall, task_read = (r.value() for r in judged(answer, ops))
            assert firewall["rules"] == [] and firewall["active_rules"] == [] and len(firewall["profiles"]) == 3
            assert "rules_error" not in firewall and task_read == {"task": None}

    run(scenario())


def test_replacing_an_empty_group_needs_the_controllers_not_found_shapes(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            # Without the table's shapes the agent cannot tell an empty group from a failed read: it reports and stops.
            _result, answer = await agent_call(host, [("fw_set", {"group": GATE, "rules": BLOCK})], absent_errors=False)
            error = results(answer)[0]["error"]
            assert error["exception"] == CIM_JOB and classify(error) == NOT_FOUND
            assert host.firewall.group_rules(GATE) == []
            _result, answer = await agent_call(host, [("task_remove", {"name": "nothing"})], absent_errors=False)
            assert results(answer)[0]["error"]["fqid"].startswith("CmdletizationQuery_NotFound_TaskName")
            # With them (what AgentClient sends), the same calls go on.
            _result, answer = await agent_call(host, [("fw_set", {"group": GATE, "rules": BLOCK}), ("task_remove", {"name": "nothing"})])
            assert [r["result"] for r in results(answer)] == [{"removed": 0, "added": 1}, {"removed": False}]
            assert [rule.name for rule in host.firewall.group_rules(GATE)] == ["xu-gate block"]

    run(scenario())


def test_a_stopped_firewall_is_never_read_as_an_empty_group(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            host.faults.set("firewall_service", "stopped")
            ops = [("fw_get", {"group": GATE})]
            _result, answer = await agent_call(host, ops)
            error = results(answer)[0]["error"]
            assert error["type"] == "CimException" and error["fqid"].startswith("Windows System Error 1062,")
            assert classify(error) == OTHER
            (read,) = judged(answer, ops)
            with pytest.raises(OperationError) as failure:
                read.value()
            assert failure.value.kind == OTHER
            # Nor does fw_set take it for an empty group, with the not-found shapes or without.
            _result, answer = await agent_call(host, [("fw_set", {"group": GATE, "rules": BLOCK})])
            assert classify(results(answer)[0]["error"]) == OTHER

    run(scenario())


def test_a_read_that_fails_otherwise_fails_the_operation(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            host.faults.set("fail_primitive", "fw_get")
            ops = [("fw_get", {"group": GATE})]
            _result, answer = await agent_call(host, ops)
            (read,) = judged(answer, ops)
            assert read.status == "error" and read.error_kind == ACCESS_DENIED

    run(scenario())
