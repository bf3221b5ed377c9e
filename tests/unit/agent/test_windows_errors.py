"""The controller's judgement of Windows errors (plugins/plugin_utils/host/_windows_errors.py), from the shapes Windows reports.

The shapes come from the lab's error builders (tests/lab/xulab/errors.py), which make them as PowerShell does
(cited there and in the table), so the table and the lab cannot drift apart unnoticed.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._agent import AgentClient, Operation, parse_answer
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import OperationError
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._windows_errors import (
    ACCESS_DENIED,
    KINDS,
    NOT_FOUND,
    OTHER,
    ROWS,
    TRANSIENT,
    absent_matchers,
    classify,
    judge_queries,
)
from xulab.errors import InnerException, PrimitiveError, cim_query_not_found, cim_windows_error, hresult

CITATION = re.compile(r"https://\S+|[\w.-]+/[\w.-]+ \S+\.(cs|md|resx|ps1|cdxml)\b")

# Each shape as the lab (and Windows) reports it, and the kind the controller must see in it.
SHAPES: dict[str, tuple[PrimitiveError, str]] = {
    "empty rule group": (cim_query_not_found("Get-NetFirewallRule", "MSFT_NetFirewallRule", "RuleGroup", "gate"), NOT_FOUND),
    "no such task": (cim_query_not_found("Get-ScheduledTask", "MSFT_ScheduledTask", "TaskName", "gate auto-open"), NOT_FOUND),
    "CIM provider: not found": (PrimitiveError("CimException", "The requested object could not be found.", fqid="MI RESULT 6,Get-NetFirewallApplicationFilter",
                                               category="ObjectNotFound", native_code=6), NOT_FOUND),
    "missing file": (PrimitiveError("FileNotFoundException", "Could not find file 'C:\\x'."), NOT_FOUND),
    "missing service": (PrimitiveError("InvalidOperationException", "Service x was not found on computer '.'.",
                                       inner=[InnerException("Win32Exception", native_code=1060)]), NOT_FOUND),
    "protocol NotFound": (PrimitiveError("NotFound", "service x does not exist"), NOT_FOUND),
    "access denied (.NET)": (PrimitiveError("UnauthorizedAccessException", "Access to the path is denied."), ACCESS_DENIED),
    "access denied (CIM)": (cim_windows_error("New-NetFirewallRule", "Access is denied.", 5, "PermissionDenied"), ACCESS_DENIED),
    "access denied (service)": (PrimitiveError("InvalidOperationException", "Cannot open x service on computer '.'.",
                                               inner=[InnerException("Win32Exception", native_code=5)]), ACCESS_DENIED),
    "service busy": (PrimitiveError("InvalidOperationException", "Cannot stop x service on computer '.'.",
                                    inner=[InnerException("Win32Exception", native_code=1061)]), TRANSIENT),
    "file in use": (PrimitiveError("IOException", "The process cannot access the file because it is being used by another process.",
                                   hresult=hresult(0x80070020)), TRANSIENT),
    "firewall service stopped": (cim_windows_error("Get-NetFirewallRule", "The service has not been started.", 1062, "NotSpecified"), OTHER),
    "rule exists": (cim_windows_error("New-NetFirewallRule", "Cannot create a file when that file already exists.", 183, "NotSpecified"), OTHER),
    "wrong PFX password": (PrimitiveError("CryptographicException", "The specified network password is not correct.", hresult=hresult(0x80070056)), OTHER),
    "protocol HashMismatch": (PrimitiveError("HashMismatch", "journal x exists"), OTHER),
}


def test_every_row_cites_where_its_shape_comes_from() -> None:
    for row in ROWS:
        assert row.kind in KINDS
        assert CITATION.search(row.source) or row.type is not None, row
        assert any(value is not None for value in (row.exception, row.fqid, row.category, row.hresult, row.native_code, row.type)), row


@pytest.mark.parametrize("name", list(SHAPES))
def test_each_windows_shape_is_judged_as_it_should_be(name: str) -> None:
    error, kind = SHAPES[name]
    assert classify(error.as_json()) == kind


def test_messages_are_never_what_decides() -> None:
    # Windows translates messages: the same record with a German text is judged the same.
    error = cim_query_not_found("Get-NetFirewallRule", "MSFT_NetFirewallRule", "RuleGroup", "gate").as_json()
    assert classify({**error, "message": "Es wurden keine MSFT_NetFirewallRule-Objekte gefunden."}) == NOT_FOUND
    # And a text that sounds like "not found" with another identity is not "not found".
    assert classify({**error, "exception": "System.InvalidOperationException", "fqid": "InvalidOperation", "category": "InvalidOperation"}) == OTHER
    assert classify(None) == OTHER and classify({}) == OTHER


def test_the_agent_applies_only_not_found_shapes_it_can_compare() -> None:
    matchers = absent_matchers()
    assert {"exception": "Microsoft.PowerShell.Cmdletization.Cim.CimJobException", "fqid": "CmdletizationQuery_NotFound",
            "category": "ObjectNotFound"} in matchers
    assert all(set(m) <= {"exception", "fqid", "category"} and "exception" in m for m in matchers)


def test_a_query_error_is_judged_beside_its_result() -> None:
    not_found = cim_query_not_found("Get-NetFirewallRule", "MSFT_NetFirewallRule", "RuleGroup", "gate").as_json()
    result = {"rules": None, "rules_error": not_found, "active_rules": ["x"], "active_rules_error": None, "profiles": []}
    assert judge_queries("fw_get", result) == ({"rules": [], "active_rules": ["x"], "profiles": []}, None)
    denied = cim_windows_error("Get-NetFirewallRule", "Access is denied.", 5, "PermissionDenied").as_json()
    assert judge_queries("fw_get", {**result, "rules_error": denied})[1] == denied
    # An answer without error fields (an agent before the error identities) stays as it is.
    assert judge_queries("fw_get", {"rules": [], "active_rules": [], "profiles": []}) == ({"rules": [], "active_rules": [], "profiles": []}, None)
    missing_task = cim_query_not_found("Get-ScheduledTask", "MSFT_ScheduledTask", "TaskName", "t").as_json()
    assert judge_queries("task_get", {"task": None, "task_error": missing_task}) == ({"task": None}, None)


def answer_of(*entries: dict[str, Any]) -> str:
    return json.dumps({"agent": "xtractuniversal.tls", "protocol": 1, "results": list(entries)})


def test_an_access_denied_read_fails_the_operation_with_its_kind() -> None:
    denied = cim_windows_error("Get-ScheduledTask", "Access is denied.", 5, "PermissionDenied").as_json()
    (result,) = parse_answer(0, answer_of({"id": 1, "op": "task_get", "status": "ok", "result": {"task": None, "task_error": denied}}),
                             "", [Operation("task_get", {"name": "t"})])
    assert result.status == "error" and result.error_kind == ACCESS_DENIED
    with pytest.raises(OperationError) as failure:
        result.value()
    assert failure.value.kind == ACCESS_DENIED and failure.value.identity["fqid"] == "Windows System Error 5,Get-ScheduledTask"
    assert failure.value.msg == "task_get failed on the host: CimException: Access is denied."


def test_an_answer_after_a_byte_order_mark_is_read() -> None:
    # A console whose output encoding carries a BOM writes U+FEFF before the answer; Python's strip() keeps it.
    answer = answer_of({"id": 1, "op": "cert_list", "status": "ok", "result": {"certificates": []}})
    for stdout in ("\ufeff" + answer, "banner\r\n\ufeff" + answer + "\r\n"):
        (result,) = parse_answer(0, stdout, "", [Operation("cert_list", {})])
        assert result.ok


def test_the_not_found_shapes_travel_only_with_operations_that_need_them() -> None:
    sent: list[dict[str, Any]] = []

    def transport(_command: str, stdin: bytes) -> tuple[int, str, str]:
        request = json.loads(stdin)["request"]
        sent.append(request)
        results = [{"id": o["id"], "op": o["op"], "status": "ok", "result": {}} for o in request["ops"]]
        return 0, json.dumps({"agent": "xtractuniversal.tls", "protocol": 1, "results": results}), ""

    client = AgentClient(transport)
    client.call([Operation("cert_list", {})])
    client.call([Operation("fw_set", {"group": "g", "rules": []})])
    assert "absent_errors" not in sent[0] and sent[1]["absent_errors"] == absent_matchers()
