"""The shared change machinery against a host whose changes take effect: apply, verify, and every rollback path."""

from __future__ import annotations

import dataclasses
import datetime
import json

import pytest

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._certificate import parse_der, thumbprint_of
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._agent import AgentClient, Operation
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import OperationError, XuError
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._host_state import StaleState
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._snapshot import Probe, settings_mismatches
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._apply import (
    ChangeFailed,
    Expectation,
    FileChange,
    RestartPlan,
    apply_changes,
    backup_path_for,
    backup_stamp,
    dependent_warnings,
    expectations_for,
    expectations_if_known,
    restart_operations,
    restart_verdict,
    settings_text,
)
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._profiles import DEFAULT_SETTINGS_MAP
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._settings import TlsState
from support.certs import der, mint
from support.fake_changes import SERVICE_NAME, ChangingFakeHost, sha256_text
from support.fake_host import INSTALL_DIR, SERVICE_SID, tls_json

TLS_PATH = f"{INSTALL_DIR}\\config\\servers\\tls.json"
WEB_PATH = f"{INSTALL_DIR}\\config\\servers\\web\\general.json"
STAMP = "20261126T204206000042Z"
BACKUP = backup_path_for(TLS_PATH, STAMP)


def state(protocol: str = "https_unrestricted", web: str | None = None, auth: str = "custom_credentials_tls", config: str | None = None) -> TlsState:
    return TlsState(
        tls_file_exists=True, web_protocol=protocol, web_protocol_raw=None, web_certificate=web,
        config_server_authentication=auth, config_server_authentication_raw=None, config_server_certificate=config,
        web_http_port=8065, web_https_port=8165, config_server_port=8064,
    )


def bound_host() -> tuple[ChangingFakeHost, str, str]:
    """Certificate A bound to both servers and served; certificate B in the store, unbound."""
    host = ChangingFakeHost()
    old = host.add_certificate(mint()[0])
    new = host.add_certificate(mint()[0])
    host.files["config\\servers\\tls.json"] = tls_json(web=old, config=old)
    assert host.start_service()
    return host, old, new


def change_to(host: ChangingFakeHost, thumbprint: str, *, path: str = TLS_PATH) -> FileChange:
    before = host.file(path)
    return FileChange(path, before, tls_json(web=thumbprint, config=thumbprint), None if before is None else sha256_text(before))


def restart_plan(expected: TlsState) -> RestartPlan:
    return RestartPlan(SERVICE_NAME, 30, expectations_for(expected))


def served(host: ChangingFakeHost) -> dict[int, str]:
    """What each TLS port of the fake host presents, by thumbprint."""
    return {port: thumbprint_of(der(cert)) for port, cert in host.served.items() if cert is not None}


def ops(call: list[dict[str, object]]) -> list[object]:
    return [op["op"] for op in call]


def test_apply_writes_restarts_and_verifies_in_one_call() -> None:
    host, old, new = bound_host()
    before = host.file(TLS_PATH)
    outcome = apply_changes(
        AgentClient(host.transport), changes=[change_to(host, new)], stamp=STAMP, backup=True,
        restart=restart_plan(state(web=new, config=new)), previous=expectations_for(state(web=old, config=old)),
    )
    assert len(host.calls) == 1
    assert ops(host.calls[0]) == ["file_write", "service_restart", "port_probe", "port_probe"]
    write = host.calls[0][0]["args"]
    assert write == {
        "path": TLS_PATH, "content": tls_json(web=new, config=new), "bom": False, "backup_path": BACKUP, "expected_sha256": sha256_text(before or ""),
    }
    assert host.calls[0][1]["args"] == {"name": SERVICE_NAME, "wait_ports": [8165, 8064], "timeout_s": 30}
    assert outcome.backups == {TLS_PATH: BACKUP}
    assert host.file(BACKUP) == before
    assert outcome.restarted and outcome.restart is not None and outcome.restart["started"]
    assert {name: probe.certificate.thumbprint for name, probe in outcome.served.items() if probe.certificate} == {"web_https": new, "config_server": new}


def test_restart_failure_restores_the_backup_and_restarts() -> None:
    host, old, new = bound_host()
    before = host.file(TLS_PATH)
    host.restart_failures = 1
    with pytest.raises(ChangeFailed) as caught:
        apply_changes(
            AgentClient(host.transport), changes=[change_to(host, new)], stamp=STAMP, backup=True,
            restart=restart_plan(state(web=new, config=new)), previous=expectations_for(state(web=old, config=old)),
        )
    failure = caught.value.to_result()
    assert failure["rolled_back"] is True and failure["restored_files"] == [TLS_PATH]
    assert "the service did not come back" in failure["msg"] and "timely fashion" in failure["msg"]
    assert "serves its previous certificates again" in failure["msg"]
    assert len(host.calls) == 2
    assert ops(host.calls[1]) == ["file_restore", "service_restart", "port_probe", "port_probe"]
    assert host.calls[1][0]["args"] == {"backup_path": BACKUP, "path": TLS_PATH}
    assert host.file(TLS_PATH) == before
    assert host.service_state == "Running" and host.restarts == 2
    assert served(host) == {8165: old, 8064: old}


def test_wrong_certificate_served_is_rolled_back() -> None:
    host, old, new = bound_host()
    stale = mint()[0]
    # The first start after the change presents another certificate than the settings say.
    host.after_start.append(lambda h: h.served.update({8165: stale}) if h.restarts == 1 else None)
    with pytest.raises(ChangeFailed) as caught:
        apply_changes(
            AgentClient(host.transport), changes=[change_to(host, new)], stamp=STAMP, backup=True,
            restart=restart_plan(state(web=new, config=new)), previous=expectations_for(state(web=old, config=old)),
        )
    failure = caught.value.to_result()
    assert f"port 8165 serves {thumbprint_of(der(stale))}, expected {new}" in failure["msg"]
    assert failure["rolled_back"] is True
    assert host.file(TLS_PATH) == tls_json(web=old, config=old)
    assert served(host) == {8165: old, 8064: old}


def test_a_created_file_is_removed_again() -> None:
    host = ChangingFakeHost()
    thumbprint = host.add_certificate(mint()[0])
    host.start_service()
    assert host.http_ports == {8065, 8064}
    host.restart_failures = 1
    change = FileChange(TLS_PATH, None, tls_json(web=thumbprint, auth="WindowsCredentials"), None)
    with pytest.raises(ChangeFailed) as caught:
        apply_changes(
            AgentClient(host.transport), changes=[change], stamp=STAMP, backup=True,
            restart=restart_plan(state(web=thumbprint, auth="windows_credentials")),
            previous=expectations_for(state(protocol="http_unrestricted", auth="windows_credentials")),
        )
    assert caught.value.fields["rolled_back"] is True
    assert host.calls[0][0]["args"]["expected_sha256"] == "absent" and host.calls[0][0]["args"]["backup_path"] is None
    assert ops(host.calls[1]) == ["file_remove", "service_restart", "port_probe", "port_probe"]
    assert host.calls[1][0]["args"] == {"path": TLS_PATH, "backup_path": None}
    assert host.file(TLS_PATH) is None
    assert host.http_ports == {8065, 8064} and host.service_state == "Running"


def test_without_backup_the_text_read_before_is_written_back() -> None:
    host, old, new = bound_host()
    before = host.file(TLS_PATH)
    host.restart_failures = 1
    with pytest.raises(ChangeFailed) as caught:
        apply_changes(
            AgentClient(host.transport), changes=[change_to(host, new)], stamp=STAMP, backup=False,
            restart=restart_plan(state(web=new, config=new)), previous=expectations_for(state(web=old, config=old)),
        )
    assert caught.value.fields["rolled_back"] is True
    assert host.calls[0][0]["args"]["backup_path"] is None
    written_back = {"path": TLS_PATH, "content": before, "bom": False, "backup_path": None, "expected_sha256": None}
    assert host.calls[1][0] == {"id": 1, "op": "file_write", "args": written_back}
    assert host.file(TLS_PATH) == before
    assert not any(key.endswith(".bak") for key in host.files)


def test_a_file_changed_since_it_was_read_is_not_overwritten() -> None:
    host, old, new = bound_host()
    change = change_to(host, new)
    host.files["config\\servers\\tls.json"] = tls_json(web=old, config=old, protocol="HttpsRestrictedAdUsers")
    edited = host.file(TLS_PATH)
    # A guard that refused: with a carried host_state the module runs again from a fresh read (StaleState).
    with pytest.raises(StaleState) as caught:
        apply_changes(
            AgentClient(host.transport), changes=[change], stamp=STAMP, backup=True,
            restart=restart_plan(state(web=new, config=new)), previous=expectations_for(state(web=old, config=old)),
        )
    failure = caught.value.to_result()
    assert "writing the settings failed: HashMismatch" in failure["msg"] and "nothing had been changed" in failure["msg"]
    assert failure["rolled_back"] is False
    assert len(host.calls) == 1 and host.restarts == 0
    assert ops(host.calls[0]) == ["file_write", "service_restart", "port_probe", "port_probe"]
    assert host.file(TLS_PATH) == edited


def test_a_failed_second_write_puts_the_first_back_without_a_restart() -> None:
    host, old, new = bound_host()
    host.files["config\\servers\\web\\general.json"] = json.dumps({"HttpPort": 8065, "HttpsPort": 8165})
    web_before = host.file(WEB_PATH)
    tls_before = host.file(TLS_PATH)
    second = FileChange(WEB_PATH, web_before, json.dumps({"HttpPort": 9065}), "0" * 64)  # stale hash
    with pytest.raises(ChangeFailed) as caught:
        apply_changes(
            AgentClient(host.transport), changes=[change_to(host, new), second], stamp=STAMP, backup=True,
            restart=restart_plan(state(web=new, config=new)), previous=expectations_for(state(web=old, config=old)),
        )
    assert caught.value.fields == {"rolled_back": True, "restored_files": [TLS_PATH]}
    assert ops(host.calls[1]) == ["file_restore"]
    assert host.file(TLS_PATH) == tls_before and host.file(WEB_PATH) == web_before
    assert host.restarts == 0


def test_a_rollback_that_cannot_bring_the_service_back_says_so() -> None:
    host, old, new = bound_host()
    host.restart_failures = 2
    with pytest.raises(ChangeFailed) as caught:
        apply_changes(
            AgentClient(host.transport), changes=[change_to(host, new)], stamp=STAMP, backup=True,
            restart=restart_plan(state(web=new, config=new)), previous=expectations_for(state(web=old, config=old)),
        )
    failure = caught.value.to_result()
    assert failure["rolled_back"] is False
    assert failure["restored_files"] == [TLS_PATH]
    assert any(p.startswith("after the rollback the service did not come back") for p in failure["rollback_problems"])
    assert host.file(TLS_PATH) == tls_json(web=old, config=old)


def test_a_failing_restore_is_reported() -> None:
    host, old, new = bound_host()
    host.restart_failures = 1
    host.errors["file_restore"] = {"type": "UnauthorizedAccessException", "message": "Access to the path is denied."}
    with pytest.raises(ChangeFailed) as caught:
        apply_changes(
            AgentClient(host.transport), changes=[change_to(host, new)], stamp=STAMP, backup=True,
            restart=restart_plan(state(web=new, config=new)), previous=expectations_for(state(web=old, config=old)),
        )
    failure = caught.value.to_result()
    assert failure["rolled_back"] is False
    assert "file_restore: UnauthorizedAccessException: Access to the path is denied." in failure["rollback_problems"]


def test_a_rollback_call_that_fails_leaves_rolled_back_false() -> None:
    host, old, new = bound_host()
    host.restart_failures = 1
    answer = host.transport

    def second_call_fails(command: str, stdin: bytes) -> tuple[int, str, str]:
        if host.calls:
            return 1, "", "The WinRM connection was reset"
        host.answer_override = None
        rc, stdout, stderr = answer(command, stdin)
        host.answer_override = second_call_fails
        return rc, stdout, stderr

    host.answer_override = second_call_fails
    with pytest.raises(ChangeFailed) as caught:
        apply_changes(
            AgentClient(host.transport), changes=[change_to(host, new)], stamp=STAMP, backup=True,
            restart=restart_plan(state(web=new, config=new)), previous=expectations_for(state(web=old, config=old)),
        )
    failure = caught.value.to_result()
    assert failure["rolled_back"] is False
    assert "the rollback failed too" in failure["msg"] and "WinRM connection was reset" in failure["rollback_error"]


def test_a_failed_preparation_writes_nothing() -> None:
    host, _old, new = bound_host()
    before = dict(host.files)
    grant = Operation("key_grant_read", {"thumbprint": "1" * 40, "account": "NT Service\\XtractUniversal Service"})
    with pytest.raises(OperationError, match="key_grant_read failed on the host: NotFound"):
        apply_changes(AgentClient(host.transport), changes=[change_to(host, new)], stamp=STAMP, backup=True, restart=None, pre_ops=[grant])
    assert ops(host.calls[0]) == ["key_grant_read", "file_write"]
    assert host.files == before


def test_a_restart_alone_is_rolled_back_by_restarting() -> None:
    host, old, _new = bound_host()
    host.restart_failures = 1
    with pytest.raises(ChangeFailed) as caught:
        apply_changes(
            AgentClient(host.transport), changes=[], stamp=STAMP, backup=True,
            restart=restart_plan(state(web=old, config=old)), previous=expectations_for(state(web=old, config=old)),
        )
    assert caught.value.fields["rolled_back"] is True
    assert "restored nothing" in caught.value.msg
    assert ops(host.calls[1]) == ["service_restart", "port_probe", "port_probe"]
    assert host.service_state == "Running"


def test_a_rollback_without_expectations_does_not_claim_what_is_served() -> None:
    host, _old, new = bound_host()
    host.restart_failures = 1
    with pytest.raises(ChangeFailed) as caught:
        apply_changes(
            AgentClient(host.transport), changes=[change_to(host, new)], stamp=STAMP, backup=True,
            restart=restart_plan(state(web=new, config=new)), previous=None,
        )
    assert caught.value.fields["rolled_back"] is True
    assert ops(host.calls[1]) == ["file_restore", "service_restart"]
    assert "and restarted the service" in caught.value.msg
    assert "previous certificates" not in caught.value.msg


def test_post_operations_run_after_the_checks() -> None:
    host, old, new = bound_host()
    grant = Operation("key_grant_read", {"thumbprint": new, "account": "NT Service\\XtractUniversal Service"})
    outcome = apply_changes(
        AgentClient(host.transport), changes=[change_to(host, new)], stamp=STAMP, backup=True,
        restart=restart_plan(state(web=new, config=new)), pre_ops=[grant], post_ops=[Operation("cert_list", {"store": "My", "thumbprints": [old]})],
    )
    assert ops(host.calls[0]) == ["key_grant_read", "file_write", "service_restart", "port_probe", "port_probe", "cert_list"]
    assert [r.op for r in outcome.pre_results] == ["key_grant_read"] and outcome.pre_results[0].value() == {"changed": False, "sid": SERVICE_SID}
    assert [r.op for r in outcome.post_results] == ["cert_list"]


def test_expectations_follow_the_settings() -> None:
    assert expectations_for(state(web="A" * 40, config="B" * 40)) == [
        Expectation("web_https", 8165, True, "A" * 40, "/version"),
        Expectation("config_server", 8064, True, "B" * 40),
    ]
    assert expectations_for(state(protocol="http_unrestricted", auth="windows_credentials")) == [
        Expectation("web_http", 8065, False, None, "/version"),
        Expectation("config_server", 8064, False, None),
    ]


@pytest.mark.parametrize(
    ("original", "expected"),
    [
        (None, '{\n  "A": {\n    "B": 1\n  }\n}\n'),
        ('{\r\n    "A": 0\r\n}\r\n', '{\r\n    "A": {\r\n        "B": 1\r\n    }\r\n}\r\n'),
        ('{\n\t"A": 0\n}', '{\n\t"A": {\n\t\t"B": 1\n\t}\n}'),
        ('{"A": 0}\n', '{\n  "A": {\n    "B": 1\n  }\n}\n'),
    ],
)
def test_settings_text_keeps_the_original_style(original: str | None, expected: str) -> None:
    assert settings_text({"A": {"B": 1}}, original) == expected


def test_settings_text_keeps_non_ascii_text() -> None:
    assert settings_text({"Name": "Zürich"}, None) == '{\n  "Name": "Zürich"\n}\n'


def test_backup_names() -> None:
    moment = datetime.datetime(2026, 11, 26, 20, 42, 6, 42, tzinfo=datetime.timezone.utc)
    assert backup_stamp(moment) == STAMP
    assert backup_path_for(TLS_PATH, STAMP) == f"{TLS_PATH}.{STAMP}.bak"
    assert backup_stamp(moment) != backup_stamp(moment + datetime.timedelta(microseconds=1))


def test_a_file_gone_before_an_unguarded_write_is_removed_again() -> None:
    host, old, new = bound_host()
    host.restart_failures = 1
    before = host.file(TLS_PATH)
    del host.files["config\\servers\\tls.json"]
    unguarded = FileChange(TLS_PATH, before, tls_json(web=new, config=new), None)
    with pytest.raises(ChangeFailed) as caught:
        apply_changes(
            AgentClient(host.transport), changes=[unguarded], stamp=STAMP, backup=True,
            restart=restart_plan(state(web=new, config=new)), previous=expectations_for(state(web=old, config=old)),
        )
    # The host kept no backup, so the rollback removes the file instead of restoring a backup that does not exist.
    assert ops(host.calls[1])[0] == "file_remove"
    assert host.file(TLS_PATH) is None
    assert caught.value.fields["restored_files"] == [TLS_PATH]


def test_restricted_modes_accept_an_authentication_challenge() -> None:
    certificate = mint()[0]
    thumbprint = thumbprint_of(der(certificate))
    facts = parse_der(der(certificate))
    challenged = Probe(8165, True, True, facts, 401, None, None)
    restricted = expectations_for(state(protocol="https_ad_users", web=thumbprint, auth="windows_credentials"))[0]
    assert restricted.judge(challenged) is None
    unrestricted = expectations_for(state(protocol="https_unrestricted", web=thumbprint, auth="windows_credentials"))[0]
    assert unrestricted.judge(challenged) == "GET /version on port 8165 answered 401, expected 200"
    assert restricted.judge(Probe(8165, True, True, facts, 500, None, None)) == "GET /version on port 8165 answered 500, expected 200 or 401 or 403"


def test_unknown_setting_values_have_no_expectations() -> None:
    unknown = dataclasses.replace(state(), web_protocol=None, web_protocol_raw="HttpsWithClientCertificates")
    with pytest.raises(XuError, match=r'WebServer.Protocol is "HttpsWithClientCertificates", not one of HttpUnrestricted.*settings_map.web_protocol'):
        expectations_for(unknown)
    with pytest.raises(XuError, match=r'Web.Mode is "HttpsWithClientCertificates"'):
        expectations_for(unknown, {**DEFAULT_SETTINGS_MAP, "web_protocol": "Web.Mode"})
    assert expectations_if_known(unknown) is None
    odd_auth = dataclasses.replace(state(), config_server_authentication=None, config_server_authentication_raw="Quic")
    with pytest.raises(XuError, match=r'ConfigServer.Authentication is "Quic".*settings_map.config_server_authentication'):
        expectations_for(odd_auth)


def test_settings_mismatches_compare_only_what_the_settings_control() -> None:
    certificate = mint()[0]
    facts = parse_der(der(certificate))
    thumbprint = facts.thumbprint
    served = {"web_https": Probe(8165, True, True, facts, 500, None, None), "config_server": Probe(8064, True, True, facts, None, None, None)}
    assert settings_mismatches(state(web=thumbprint, config=thumbprint), served) == []
    other = "1" * 40
    assert settings_mismatches(state(web=other, config=thumbprint), served) == [f"the web server: port 8165 serves {thumbprint}, expected {other}"]
    plain = state(protocol="http_unrestricted", auth="windows_credentials")
    assert settings_mismatches(plain, served) == [
        f"the web server: port 8165 serves TLS with {thumbprint}, expected no TLS",
        f"the configuration server: port 8064 serves TLS with {thumbprint}, expected no TLS",
    ]
    silent = {"web_https": Probe(8165, True, False, None, None, None, "refused")}
    assert settings_mismatches(state(web=thumbprint), silent) == ["the web server: port 8165 serves no TLS certificate, expected " + thumbprint]
    assert settings_mismatches(plain, silent) == []
    # An unknown setting says nothing about what should be served.
    assert settings_mismatches(dataclasses.replace(plain, web_protocol=None, config_server_authentication=None), served) == []


def test_nothing_to_do_makes_no_call() -> None:
    host, _old, _new = bound_host()
    outcome = apply_changes(AgentClient(host.transport), changes=[], stamp=STAMP, backup=True, restart=None)
    assert host.calls == [] and outcome.restarted is False and outcome.backups == {}


def test_a_bad_restart_without_rollback_is_reported_in_the_outcome() -> None:
    host, _old, new = bound_host()
    host.restart_failures = 1
    outcome = apply_changes(
        AgentClient(host.transport), changes=[change_to(host, new)], stamp=STAMP, backup=True,
        restart=restart_plan(state(web=new, config=new)), roll_back_restart=False,
    )
    assert len(host.calls) == 1 and outcome.restarted
    assert outcome.problem is not None and outcome.problem.startswith("the service did not come back")
    assert host.file(TLS_PATH) == tls_json(web=new, config=new)


def test_restart_operations_and_verdict_go_together() -> None:
    host, old, _new = bound_host()
    plan = restart_plan(state(web=old, config=old))
    results = AgentClient(host.transport).call(restart_operations(plan))
    assert [r.op for r in results] == ["service_restart", "port_probe", "port_probe"]
    verdict = restart_verdict(plan, results)
    assert verdict.problem is None and verdict.restart is not None and verdict.restart["started"]
    assert {name: probe.certificate.thumbprint for name, probe in verdict.served.items() if probe.certificate} == {"web_https": old, "config_server": old}
    host.http_status = 503
    verdict = restart_verdict(plan, AgentClient(host.transport).call(restart_operations(plan)))
    assert verdict.problem == "GET /version on port 8165 answered 503, expected 200"


def test_a_file_with_a_bom_keeps_it_in_the_write_and_in_the_rollback() -> None:
    host, old, new = bound_host()
    before = host.file(TLS_PATH)
    host.restart_failures = 1
    change = dataclasses.replace(change_to(host, new), bom=True)
    with pytest.raises(ChangeFailed):
        apply_changes(
            AgentClient(host.transport), changes=[change], stamp=STAMP, backup=False,
            restart=restart_plan(state(web=new, config=new)), previous=expectations_for(state(web=old, config=old)),
        )
    assert host.calls[0][0]["args"]["bom"] is True
    assert host.calls[1][0]["op"] == "file_write" and host.calls[1][0]["args"]["bom"] is True
    assert host.calls[1][0]["args"]["content"] == before


def test_a_dependent_left_stopped_is_a_warning_not_a_rollback() -> None:
    answer = {"started": True, "state": "Running", "start_error": None, "ports": [], "elapsed_s": 1.0,
              "dependents": [{"name": "XuScheduler", "state": "Stopped"}, {"name": "Other", "state": "Running"}]}
    assert dependent_warnings(answer) == [
        "the dependent service XuScheduler was running before the restart and is Stopped now; start it (Start-Service 'XuScheduler')"
    ]
    assert dependent_warnings({"started": True}) == []
