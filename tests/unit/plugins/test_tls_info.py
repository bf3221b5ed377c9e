"""xu_tls_info judged against scripted hosts: one remote call, the right facts and problems."""

from __future__ import annotations

import json

import pytest

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host import _action_base
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._action_base import ModuleRun, module_params
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._agent import AgentClient
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._host_state import CarriedStateAgent
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._tls_info import run_tls_info
from support.action import run_action
from support.certs import mint
from support.fake_host import FakeHost, tls_json
from support.inprocess import Steps

FQDN = "xu01.example.com"


def healthy_host(days_left: float = 200) -> tuple[FakeHost, str]:
    cert, _key = mint(FQDN, days_left=days_left)
    host = FakeHost()
    thumbprint = host.add_certificate(cert)
    host.files["config\\servers\\tls.json"] = tls_json(web=thumbprint, config=thumbprint.lower())
    host.files["config\\version.txt"] = "6.8.1.2\r\n"
    host.served = {8165: cert, 8064: cert}
    return host, thumbprint


def test_healthy_host_in_one_call() -> None:
    host, thumbprint = healthy_host()
    result = run_action("xu_tls_info", {}, host)
    assert not result.get("failed"), result
    assert result["changed"] is False
    assert len(host.calls) == 1
    assert [op["op"] for op in host.calls[0]] == [
        "discover", "cert_list", "fw_get", "task_get", "fw_get", "task_get", "port_probe", "port_probe", "port_probe", "journal_read",
    ]
    assert result["installed"] is True
    assert result["product"] == {"name": "xtract_universal", "title": "Xtract Universal", "version": "6.8.1.2"}
    assert result["fqdn"] == FQDN
    web = result["web_server"]
    assert (web["protocol"], web["tls"], web["https_port"], web["certificate_thumbprint"]) == ("https_unrestricted", True, 8165, thumbprint)
    certificate = web["certificate"]
    assert certificate["in_store"] and certificate["has_private_key"] and certificate["key_readable_by_service"]
    assert certificate["san_covers_fqdn"] and certificate["server_auth"] and certificate["days_left"] == 199
    assert result["config_server"]["certificate"]["thumbprint"] == thumbprint
    assert result["served"]["web_https"]["thumbprint"] == thumbprint
    assert result["served"]["config_server"]["thumbprint"] == thumbprint
    assert result["served"]["web_http"]["answering"] is False
    assert [r["path"] for r in result["thumbprint_references"]] == ["WebServer.Certificate.Thumbprint", "ConfigServer.Certificate.Thumbprint"]
    assert result["gate"] == {"state": "open", "rules": [], "auto_open": None, "hold": "open"}
    assert result["journal"] is None
    assert result["problems"] == []
    assert "warnings" not in result


def test_problems_are_judged_and_warned() -> None:
    cert, _key = mint("other.example.com", days_left=10, server_auth=False)
    host = FakeHost()
    thumbprint = host.add_certificate(cert, acl=[])
    host.files["config\\servers\\tls.json"] = tls_json(web=thumbprint, auth="WindowsCredentials")
    host.served = {8165: cert}
    result = run_action("xu_tls_info", {"expiry_warning_days": 30}, host)
    problems = result["problems"]
    assert any("expires in 9 days" in p for p in problems)
    assert any("does not name the host" in p for p in problems)
    assert any("Server Authentication" in p for p in problems)
    assert any("cannot read the private key" in p for p in problems)
    assert result["warnings"] == [f"xu01: {p}" for p in problems]
    assert result["config_server"]["tls"] is False and result["config_server"]["certificate"] is None


def test_certificate_deleted_while_served() -> None:
    host, _thumbprint = healthy_host()
    host.certificates.clear()
    result = run_action("xu_tls_info", {}, host)
    certificate = result["web_server"]["certificate"]
    # Details still come from what the port serves.
    assert certificate["in_store"] is False and certificate["subject"] == f"CN={FQDN}"
    assert any("not in LocalMachine\\My" in p for p in result["problems"])


def test_tls_off_and_pending_restart() -> None:
    host, _thumbprint = healthy_host()
    del host.files["config\\servers\\tls.json"]
    host.served = {}
    host.http_ports = {8065}
    result = run_action("xu_tls_info", {}, host)
    assert result["web_server"]["protocol"] == "http_unrestricted"
    assert result["served"]["web_http"]["answering"] is True
    assert "the web server serves plain HTTP (TLS is off)" in result["problems"]

    other, _key = mint(FQDN)
    host, _thumbprint = healthy_host()
    host.served[8165] = other
    result = run_action("xu_tls_info", {}, host)
    assert any("restart pending" in p for p in result["problems"])


def test_ports_from_settings_cost_a_second_call() -> None:
    host, _thumbprint = healthy_host()
    host.files["config\\servers\\web\\general.json"] = json.dumps({"HttpPort": 9065, "HttpsPort": 9165})
    result = run_action("xu_tls_info", {}, host)
    assert len(host.calls) == 2
    assert [op["args"]["port"] for op in host.calls[1]] == [9065, 9165, 8064]
    assert result["served"]["web_https"]["port"] == 9165

    host, _thumbprint = healthy_host()
    host.files["config\\servers\\web\\general.json"] = json.dumps({"HttpPort": 9065, "HttpsPort": 9165})
    run_action("xu_tls_info", {"web_http_port": 9065, "web_https_port": 9165}, host)
    assert len(host.calls) == 1


def test_gate_closed_with_auto_open() -> None:
    host, _thumbprint = healthy_host()
    host.rules = [{"name": "g-block", "display_name": "g", "direction": "Inbound", "action": "Block", "enabled": True,
                   "protocol": "TCP", "local_ports": ["8065"], "remote_addresses": ["0.0.0.0-9.255.255.255"]}]
    host.task = {"name": "xtractuniversal.tls gate auto-open", "state": "Ready", "next_run_utc": "2026-11-26T21:00:00Z", "description": "x"}
    result = run_action("xu_tls_info", {}, host)
    assert result["gate"]["state"] == "closed"
    assert result["gate"]["auto_open"] == {"task": "xtractuniversal.tls gate auto-open", "run_at": "2026-11-26T21:00:00Z", "state": "Ready"}
    assert host.calls[0][2]["args"] == {"group": "xtractuniversal.tls gate"}


def test_not_installed_is_reported_not_failed() -> None:
    host = FakeHost(service_found=False)
    result = run_action("xu_tls_info", {}, host)
    assert not result.get("failed")
    assert result["installed"] is False
    assert any("not installed" in p for p in result["problems"])


def test_remote_failure_carries_rc_stdout_stderr() -> None:
    host = FakeHost(answer_override=lambda command, stdin: (1, "", "#< CLIXML\nAccess is denied"))
    result = run_action("xu_tls_info", {}, host)
    assert result["failed"] is True
    assert result["rc"] == 1 and result["stderr"].endswith("Access is denied")
    assert "The agent failed on the host" in result["msg"]

    host = FakeHost(answer_override=lambda command, stdin: (0, "hello", ""))
    result = run_action("xu_tls_info", {}, host)
    assert result["failed"] and "did not answer" in result["msg"] and result["stdout"] == "hello"


def test_discover_error_fails_the_module() -> None:
    host = FakeHost(errors={"discover": {"type": "UnauthorizedAccessException", "message": "Access denied"}})
    result = run_action("xu_tls_info", {}, host)
    assert result["failed"] and "discover failed on the host: UnauthorizedAccessException: Access denied" in result["msg"]


def test_bad_arguments_fail_before_any_remote_call() -> None:
    host, _thumbprint = healthy_host()
    result = run_action("xu_tls_info", {"product": "sap_gui", "expiry_warning_days": "soon"}, host)
    assert result["failed"] and result["msg"].startswith("Invalid arguments")
    assert "product" in result["msg"]
    assert host.calls == []
    result = run_action("xu_tls_info", {"gate_rule_group": "bad;name"}, host)
    assert result["failed"] and "gate rule group" in result["msg"]
    assert host.calls == []


def test_missing_cryptography_is_a_clear_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_action_base, "CRYPTOGRAPHY_IMPORT_ERROR", ImportError("No module named 'cryptography'"))
    host, _thumbprint = healthy_host()
    result = run_action("xu_tls_info", {}, host)
    assert result["failed"] and "cryptography is required on the controller" in result["msg"]
    assert host.calls == []


def test_an_interrupted_run_is_reported() -> None:
    host, _thumbprint = healthy_host()
    host.journals["renew"] = json.dumps({"step": "tls_off", "old_thumbprint": "AB" * 20})
    result = run_action("xu_tls_info", {}, host)
    assert result["journal"] == {"step": "tls_off", "old_thumbprint": "AB" * 20}
    assert any("interrupted run left its journal (step tls_off)" in p for p in result["problems"])
    assert host.calls[0][-1] == {"id": 10, "op": "journal_read", "args": {"name": "renew"}}


def test_a_pending_switch_to_plain_http_is_reported() -> None:
    host, thumbprint = healthy_host()
    host.files["config\\servers\\tls.json"] = tls_json(protocol="HttpUnrestricted", web=thumbprint, config=thumbprint)
    result = run_action("xu_tls_info", {}, host)
    problems = result["problems"]
    assert f"the web server: port 8165 serves TLS with {thumbprint}, expected no TLS (restart pending?)" in problems
    assert "the web server serves plain HTTP (TLS is off)" in problems
    # What the settings do not control (how /version answers) is no pending restart.
    host, _thumbprint = healthy_host()
    host.http_status = 500
    assert run_action("xu_tls_info", {}, host)["problems"] == []


def test_read_errors_are_problems_not_failures() -> None:
    host, thumbprint = healthy_host()
    host.errors["cert_list"] = {"type": "CryptographicException", "message": "Keyset does not exist"}
    result = run_action("xu_tls_info", {}, host)
    assert not result.get("failed"), result
    assert result["problems"][0] == "cert_list: CryptographicException: Keyset does not exist"
    assert result["web_server"]["certificate"]["in_store"] is False and result["web_server"]["certificate_thumbprint"] == thumbprint


def test_probes_name_the_host_when_fqdn_is_given() -> None:
    host, _thumbprint = healthy_host()
    run_action("xu_tls_info", {}, host)
    assert {op["args"]["server_name"] for op in host.calls[0] if op["op"] == "port_probe"} == {None}
    run_action("xu_tls_info", {"fqdn": FQDN}, host)
    assert {op["args"]["server_name"] for op in host.calls[1] if op["op"] == "port_probe"} == {FQDN}


def test_a_journal_that_cannot_be_read_is_unknown_not_absent() -> None:
    host, _thumbprint = healthy_host()
    assert run_action("xu_tls_info", {}, host)["journal_error"] is None
    host.errors["journal_read"] = {"type": "UnauthorizedAccessException", "message": "Access to the path is denied."}
    result = run_action("xu_tls_info", {}, host)
    assert result["journal"] is None
    assert result["journal_error"] == "journal_read: UnauthorizedAccessException: Access to the path is denied."
    assert result["read_errors"] == []


def test_an_unread_store_is_reported_as_a_read_error() -> None:
    host, _thumbprint = healthy_host()
    host.errors["cert_list"] = {"type": "UnauthorizedAccessException", "message": "Access is denied."}
    result = run_action("xu_tls_info", {}, host)
    assert result["read_errors"] == ["cert_list: UnauthorizedAccessException: Access is denied."]
    assert result["journal_error"] is None


@pytest.mark.parametrize(("offset_s", "problem"), [(0, None), (120, None), (-180, None), (-400, "behind"), (3600, "ahead of")])
def test_the_hosts_clock_is_reported_and_judged(offset_s: float, problem: str | None) -> None:
    host, _thumbprint = healthy_host()
    host.clock_offset_s = offset_s
    result = run_action("xu_tls_info", {}, host)
    clock = result["host_clock"]
    # The estimate is off by at most its uncertainty: the host answered between the controller's send and receive.
    assert abs(clock["offset_s"] - offset_s) <= clock["uncertainty_s"] + 0.002
    assert clock["now"].endswith("Z") and len(clock["now"]) == len("2026-11-26T20:11:57.123Z")
    clock_problems = [p for p in result["problems"] if "the host's clock" in p]
    if problem is None:
        assert clock_problems == []
    else:
        assert clock_problems == [
            f"the host's clock is {abs(clock['offset_s']):.0f} s {problem} the controller's (more than 5 minutes): Kerberos logons and"
            " enrolment fail past 5 minutes; fix the host's time synchronisation (w32tm). The collection's deadlines and leases"
            " run on the host's own clock"
        ]


def test_a_carried_state_carries_the_hosts_clock() -> None:
    # The renew engine's act phase answers its reads from the assessment's snapshot: the host's clock comes with it.
    host, _thumbprint = healthy_host()
    host.clock_offset_s = 600
    steps = Steps(host)
    first = steps.run("xu_tls_info", {})
    state = steps.agent.state()
    assert state is not None and state["clock"]["offset_s"] == first["host_clock"]["offset_s"]
    carried, ignored = CarriedStateAgent.wrap(AgentClient(host.transport), "xu01", state)
    assert ignored is None
    again = run_tls_info(ModuleRun(params=module_params("xu_tls_info", {}), check_mode=False, diff=False, task_vars={}, agent=carried, host="xu01"))
    assert len(host.calls) == 1  # answered from the carried state
    assert again["host_clock"]["offset_s"] == first["host_clock"]["offset_s"]
    assert any(f"the host's clock is {first['host_clock']['offset_s']:.0f} s ahead of" in p for p in again["problems"])
