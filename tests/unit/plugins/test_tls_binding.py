"""xu_tls_binding: its pure parts (options, settings rewrite, certificate judgement) and whole runs against a fake host."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.gate._gate import DEFAULT_GATE_GROUP
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._agent import AgentClient
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import XuError
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._snapshot import Snapshot, read_snapshot
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._profiles import DEFAULT_SETTINGS_MAP, resolve_profile
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._settings import SettingsError
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._tls_binding import (
    BindingRequest,
    judge_certificate,
    parse_request,
    rewrite_settings,
)
from support.action import run_action
from support.certs import mint
from support.fake_changes import ChangingFakeHost
from support.fake_host import INSTALL_DIR, SERVICE_ACCOUNT, SERVICE_SID, FakeHost, intercept, tls_json

FQDN = "xu01.example.com"
TLS = "config\\servers\\tls.json"
TLS_PATH = f"{INSTALL_DIR}\\{TLS}"
TP = "AD3B9B0C9F6E3F1A2B3C4D5E6F708192A3B4ECE6"
DEFAULTS: dict[str, Any] = {
    "web_protocol": None, "web_certificate": None, "config_server_certificate": None, "restart": "if_changed",
    "wait_timeout": 120, "grant_key_access": False, "strict_san": False, "fqdn": None,
}


def request(**options: Any) -> BindingRequest:
    return parse_request(DEFAULTS | options, dict(DEFAULT_SETTINGS_MAP))


# -- options ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pasted",
    [
        TP,
        TP.lower(),
        "\u200ead 3b 9b 0c 9f 6e 3f 1a 2b 3c 4d 5e 6f 70 81 92 a3 b4 ec e6",
        "AD:3B:9B:0C:9F:6E:3F:1A:2B:3C:4D:5E:6F:70:81:92:A3:B4:EC:E6",
        f"  {TP}\u200e\n",
    ],
)
def test_thumbprints_are_accepted_as_pasted(pasted: str) -> None:
    parsed = request(web_certificate=pasted, config_server_certificate=pasted)
    assert parsed.web_certificate == parsed.config_server_certificate == TP


@pytest.mark.parametrize(
    ("pasted", "detail"),
    [(TP[:-1], "got 39 characters"), (TP + "0", "got 41 characters"), ("ZZ" + TP[2:], "including non-hexadecimal ones"), ("", "got 0")],
)
def test_bad_thumbprints_are_named_with_the_fix(pasted: str, detail: str) -> None:
    with pytest.raises(XuError) as caught:
        request(config_server_certificate=pasted)
    assert caught.value.msg.startswith("config_server_certificate ")
    assert "is not a certificate thumbprint: expected 40 hexadecimal digits" in caught.value.msg
    assert detail in caught.value.msg and "Cert:\\LocalMachine\\My" in caught.value.msg


def test_wait_timeout_and_settings_map_are_checked() -> None:
    with pytest.raises(XuError, match="wait_timeout must be a positive number of seconds, got 0"):
        request(wait_timeout=0)
    with pytest.raises(XuError, match=r"settings_map.web_certificate: Invalid settings path 'Web..Cert'"):
        parse_request(DEFAULTS, DEFAULT_SETTINGS_MAP | {"web_certificate": "Web..Cert"})
    with pytest.raises(XuError, match=r"settings_map.web_protocol \(WebServer\) contains settings_map.web_certificate"):
        parse_request(DEFAULTS, DEFAULT_SETTINGS_MAP | {"web_protocol": "WebServer"})


# -- the settings rewrite ---------------------------------------------------------------------


def test_rewrite_in_the_assumed_layout_keeps_everything_else() -> None:
    document = json.loads(tls_json(web="1" * 40, config="1" * 40)) | {"Extra": {"Keep": [1, 2]}}
    new, changed = rewrite_settings(document, DEFAULT_SETTINGS_MAP, request(web_protocol="https_ad_users", web_certificate=TP.lower()))
    assert changed == ["web_protocol", "web_certificate"]
    assert new["WebServer"] == {"Protocol": "HttpsRestrictedAdUsers", "Certificate": {"StoreLocation": "LocalMachine", "StoreName": "My", "Thumbprint": TP}}
    assert new["ConfigServer"] == document["ConfigServer"] and new["Extra"] == {"Keep": [1, 2]}
    assert document["WebServer"]["Certificate"]["Thumbprint"] == "1" * 40  # the input is not changed


def test_rewrite_of_a_missing_file_creates_the_assumed_layout() -> None:
    everything = request(web_protocol="https_unrestricted", web_certificate=TP, config_server_certificate=TP)
    new, changed = rewrite_settings(None, DEFAULT_SETTINGS_MAP, everything)
    assert changed == ["web_protocol", "web_certificate", "config_server_certificate"]
    reference = {"StoreLocation": "LocalMachine", "StoreName": "My", "Thumbprint": TP}
    assert new == {"WebServer": {"Protocol": "HttpsUnrestricted", "Certificate": reference}, "ConfigServer": {"Certificate": reference}}
    assert list(new["WebServer"]["Certificate"]) == ["StoreLocation", "StoreName", "Thumbprint"]


def test_rewrite_through_another_layout() -> None:
    settings_map = {
        "web_protocol": "Tls.Web.Mode",
        "web_certificate": "Tls.Web.CertificateHash",
        "config_server_authentication": "Tls.Designer.Auth",
        "config_server_certificate": "Bindings[1].Hash",
    }
    document = {"tls": {"web": {"mode": "HttpUnrestricted", "Port": 8165}}, "Bindings": [{"Hash": None}, {"Hash": "00" * 20, "Name": "designer"}]}
    new, changed = rewrite_settings(
        document, settings_map, request(web_protocol="https_custom_users", web_certificate=TP, config_server_certificate=TP),
    )
    assert changed == ["web_protocol", "web_certificate", "config_server_certificate"]
    # Existing property names keep their spelling (matched case-insensitively, as XU reads them).
    assert new == {
        "tls": {"web": {"mode": "HttpsRestrictedCustomUsers", "Port": 8165, "CertificateHash": TP}},
        "Bindings": [{"Hash": None}, {"Hash": TP, "Name": "designer"}],
    }


def test_equal_values_are_left_in_their_form() -> None:
    document = json.loads(tls_json(protocol="httpsunrestricted", web=TP.lower(), config=TP))
    same = request(web_protocol="https_unrestricted", web_certificate=TP, config_server_certificate=TP)
    new, changed = rewrite_settings(document, DEFAULT_SETTINGS_MAP, same)
    assert changed == []
    assert new == document


def test_a_reference_to_another_store_is_pointed_at_my() -> None:
    document = {"WebServer": {"Certificate": {"storelocation": "CurrentUser", "StoreName": "WebHosting", "Thumbprint": "1" * 40}}}
    new, _changed = rewrite_settings(document, DEFAULT_SETTINGS_MAP, request(web_certificate=TP))
    assert new["WebServer"]["Certificate"] == {"storelocation": "LocalMachine", "StoreName": "My", "Thumbprint": TP}


def test_a_null_on_the_way_becomes_an_object() -> None:
    new, _changed = rewrite_settings({"WebServer": None}, DEFAULT_SETTINGS_MAP, request(web_protocol="http_unrestricted"))
    assert new == {"WebServer": {"Protocol": "HttpUnrestricted"}}


@pytest.mark.parametrize(
    ("document", "settings_map", "message"),
    [
        ({"WebServer": "on"}, DEFAULT_SETTINGS_MAP, "cannot set WebServer.Protocol: WebServer is not an object"),
        ([1, 2], DEFAULT_SETTINGS_MAP, "tls.json holds a JSON list, not an object"),
        ({"Bindings": []}, DEFAULT_SETTINGS_MAP | {"web_protocol": "Bindings[0].Mode"}, "has no item [0]"),
        ({"Modes": ["a"]}, DEFAULT_SETTINGS_MAP | {"web_protocol": "Modes[3]"}, "there is no item [3]"),
    ],
)
def test_layouts_the_map_does_not_fit_are_refused(document: Any, settings_map: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        rewrite_settings(document, settings_map, request(web_protocol="http_unrestricted"))
    assert message in str(caught.value)


# -- judging certificates ---------------------------------------------------------------------


def snapshot_of(host: FakeHost) -> Snapshot:
    return read_snapshot(AgentClient(host.transport), resolve_profile({}), DEFAULT_GATE_GROUP)


def judge(host: FakeHost, thumbprint: str, *, strict_san: bool = False, grant_key_access: bool = False, fqdn: str | None = FQDN) -> Any:
    return judge_certificate(["web server"], thumbprint, snapshot_of(host), fqdn=fqdn, strict_san=strict_san, grant_key_access=grant_key_access)


def test_a_good_certificate_passes() -> None:
    host = FakeHost()
    thumbprint = host.add_certificate(mint(FQDN)[0])
    judgement = judge(host, thumbprint)
    assert (judgement.failures, judgement.warnings, judgement.grant) == ([], [], False)
    # A wildcard covers one label; no EKU extension means every purpose, as on Windows.
    wildcard = host.add_certificate(mint("*.example.com", server_auth=None)[0])
    assert judge(host, wildcard, strict_san=True).failures == []


@pytest.mark.parametrize(
    ("minted", "private_key", "message"),
    [
        ({"days_left": -1}, True, "expired on"),
        ({"valid_from_days_ago": -2}, True, "is not valid before"),
        ({}, False, "has no private key; import it from a PFX that holds the key"),
    ],
)
def test_unusable_certificates_fail(minted: dict[str, Any], private_key: bool, message: str) -> None:
    host = FakeHost()
    thumbprint = host.add_certificate(mint(FQDN, **minted)[0], has_private_key=private_key)
    judgement = judge(host, thumbprint)
    assert len(judgement.failures) == 1 and message in judgement.failures[0]
    assert judgement.failures[0].startswith(f"the web server certificate {thumbprint} ")


def test_a_certificate_not_in_the_store_fails() -> None:
    judgement = judge(FakeHost(), TP)
    assert judgement.failures == [
        f"the web server certificate {TP} is not in LocalMachine\\My on the host; import it there first, or set web_certificate to a certificate that is"
    ]


@pytest.mark.parametrize("strict_san", [False, True])
def test_name_and_purpose_doubts_warn_or_fail(strict_san: bool) -> None:
    host = FakeHost()
    thumbprint = host.add_certificate(mint("other.example.com", server_auth=False)[0])
    judgement = judge(host, thumbprint, strict_san=strict_san)
    doubts = judgement.failures if strict_san else judgement.warnings
    assert (judgement.warnings if strict_san else judgement.failures) == []
    assert len(doubts) == 2
    assert f"does not name {FQDN} in its Subject Alternative Name (other.example.com)" in doubts[0]
    assert "lacks the Server Authentication extended key usage" in doubts[1]
    assert all(("strict_san: false" in d) == strict_san for d in doubts)
    assert judge(host, thumbprint, fqdn="other.example.com").warnings == [doubts[1].split(";")[0]]


def test_an_unreadable_key_is_granted_or_refused() -> None:
    host = FakeHost()
    thumbprint = host.add_certificate(mint(FQDN)[0], acl=[{"identity": "NT AUTHORITY\\SYSTEM", "sid": "S-1-5-18", "rights": "FullControl", "type": "Allow"}])
    refused = judge(host, thumbprint)
    assert len(refused.failures) == 1
    assert f"the service account {SERVICE_ACCOUNT} cannot read the private key" in refused.failures[0]
    assert "set grant_key_access: true, or grant it Read on the key manually" in refused.failures[0]
    granted = judge(host, thumbprint, grant_key_access=True)
    assert granted.failures == [] and granted.grant is True


def test_a_key_without_a_reported_acl_is_a_warning() -> None:
    host = FakeHost()
    thumbprint = host.add_certificate(mint(FQDN)[0])
    host.certificates[0]["key"] = {"provider": "CSP", "acl": None}
    judgement = judge(host, thumbprint, grant_key_access=True)
    assert judgement.failures == [] and judgement.grant is False
    assert "cannot be told" in judgement.warnings[0]


# -- whole runs -------------------------------------------------------------------------------


def tls_off_host() -> tuple[ChangingFakeHost, str]:
    """XU on plain HTTP (no tls.json); a valid certificate in the store whose key the service cannot read."""
    host = ChangingFakeHost()
    host.files["config\\version.txt"] = "6.8.1.2"
    thumbprint = host.add_certificate(mint(FQDN)[0], acl=[{"identity": "NT AUTHORITY\\SYSTEM", "sid": "S-1-5-18", "rights": "FullControl", "type": "Allow"}])
    assert host.start_service()
    return host, thumbprint


def bound_host() -> tuple[ChangingFakeHost, str, str]:
    """Certificate A bound to both servers and served; certificate B in the store, readable."""
    host = ChangingFakeHost()
    old = host.add_certificate(mint(FQDN)[0])
    new = host.add_certificate(mint(FQDN)[0])
    host.files[TLS] = tls_json(web=old, config=old).replace("\n", "\r\n") + "\r\n"
    assert host.start_service()
    return host, old, new


def ops(call: list[dict[str, Any]]) -> list[str]:
    return [str(op["op"]) for op in call]


READ_OPS = ["discover", "cert_list", "fw_get", "task_get", "fw_get", "task_get", "port_probe", "port_probe", "port_probe"]


def test_turning_tls_on_grants_writes_restarts_and_verifies() -> None:
    host, thumbprint = tls_off_host()
    pasted = "\u200e" + " ".join(thumbprint[i:i + 2] for i in range(0, 40, 2)).lower()
    args = {"web_protocol": "https_unrestricted", "web_certificate": pasted, "grant_key_access": True}
    result = run_action("xu_tls_binding", args, host)
    assert not result.get("failed"), result
    assert [ops(call) for call in host.calls] == [
        READ_OPS, ["key_grant_read", "file_write", "service_restart", "port_probe", "port_probe", "event_write"],
    ]
    assert host.calls[1][0]["args"] == {"thumbprint": thumbprint, "account": SERVICE_SID}  # granted by SID, never by name
    assert host.calls[1][1]["args"]["expected_sha256"] == "absent"
    assert result["changed"] is True and result["rolled_back"] is False and result["restarted"] is True
    assert result["web_protocol"] == "https_unrestricted" and result["web_certificate"] == thumbprint
    assert result["config_server_certificate"] is None and result["config_server_authentication"] == "windows_credentials"
    assert result["key_access_granted"] == [thumbprint]
    assert result["backup_file"] is None  # there was no file to keep
    assert result["restart_required"] is False
    assert result["served"] == {"web_https": thumbprint, "config_server": None}
    reference = {"StoreLocation": "LocalMachine", "StoreName": "My", "Thumbprint": thumbprint}
    assert json.loads(host.file(TLS) or "") == {"WebServer": {"Protocol": "HttpsUnrestricted", "Certificate": reference}}
    assert "diff" not in result and "warnings" not in result

    again = run_action("xu_tls_binding", args, host)
    assert again["changed"] is False and again["restarted"] is False and again["key_access_granted"] == []
    assert len(host.calls) == 3 and ops(host.calls[2]) == READ_OPS
    assert again["served"] == {"web_https": thumbprint, "config_server": None}


def test_check_mode_judges_and_reports_but_changes_nothing() -> None:
    host, old, new = bound_host()
    files = dict(host.files)
    result = run_action("xu_tls_binding", {"web_certificate": new, "config_server_certificate": new}, host, check_mode=True, diff=True)
    assert result["changed"] is True and result["restarted"] is True and result["rolled_back"] is False
    assert result["web_certificate"] == result["config_server_certificate"] == new
    assert len(host.calls) == 1 and host.files == files and host.restarts == 0
    diff = result["diff"]
    assert diff["before_header"] == diff["after_header"] == TLS_PATH
    assert diff["before"] == files[TLS]
    assert diff["after"] == files[TLS].replace(old, new)  # only the thumbprints differ, line ends and indentation kept
    assert result["served"] == {"web_https": old, "config_server": old}

    refused = run_action("xu_tls_binding", {"web_certificate": "1" * 40}, host, check_mode=True)
    assert refused["failed"] and "not in LocalMachine\\My" in refused["msg"]


def test_swapping_certificates_keeps_a_backup_and_shows_the_diff() -> None:
    host, old, new = bound_host()
    before = host.file(TLS)
    result = run_action("xu_tls_binding", {"web_certificate": new, "config_server_certificate": new}, host, diff=True)
    assert not result.get("failed"), result
    assert ops(host.calls[1]) == ["file_write", "service_restart", "port_probe", "port_probe", "event_write"]
    backup = result["backup_file"]
    assert backup.startswith(TLS_PATH + ".") and backup.endswith("Z.bak")
    assert host.file(backup) == before
    assert result["diff"]["after"] == host.file(TLS)
    assert result["served"] == {"web_https": new, "config_server": new}
    assert host.file(TLS) == (before or "").replace(old, new)


def test_a_backup_is_named_by_the_hosts_time() -> None:
    # The names order a file's backups on the host, whatever the clock of the controller that wrote them.
    host, _old, new = bound_host()
    host.clock_offset_s = -3 * 24 * 3600
    days = {host.host_now().strftime("%Y%m%d")}
    result = run_action("xu_tls_binding", {"web_certificate": new, "config_server_certificate": new}, host)
    assert not result.get("failed"), result
    days.add(host.host_now().strftime("%Y%m%d"))
    assert result["backup_file"][len(TLS_PATH) + 1:][:8] in days, (result["backup_file"], days)


def test_restart_never_then_if_changed_restarts_the_pending_change() -> None:
    host, old, new = bound_host()
    args: dict[str, Any] = {"web_certificate": new, "config_server_certificate": new, "restart": "never"}
    result = run_action("xu_tls_binding", args, host)
    assert result["changed"] is True and result["restarted"] is False and result["restart_required"] is True
    assert ops(host.calls[1]) == ["file_write", "event_write"] and host.restarts == 0
    assert result["served"] == {"web_https": old, "config_server": old}

    # Same options, default restart: the settings are already written, but the service still serves the old certificate.
    args["restart"] = "if_changed"
    result = run_action("xu_tls_binding", args, host)
    assert result["changed"] is True and result["restarted"] is True and result["restart_required"] is False
    assert ops(host.calls[3]) == ["service_restart", "port_probe", "port_probe", "event_write"]
    assert result["backup_file"] is None and result["served"] == {"web_https": new, "config_server": new}

    assert run_action("xu_tls_binding", args, host)["changed"] is False
    assert len(host.calls) == 5


def test_an_odd_version_answer_is_not_a_pending_restart() -> None:
    # The ports serve what the settings say; only /version answers something unexpected. Restarting cannot change
    # that, so a run with nothing to change must not restart (it did, on every run).
    host, old, _new = bound_host()
    host.http_status = 500
    result = run_action("xu_tls_binding", {"web_certificate": old, "config_server_certificate": old}, host)
    assert not result.get("failed"), result
    assert result["changed"] is False and result["restarted"] is False and result["restart_required"] is False
    assert len(host.calls) == 1 and host.restarts == 0


def test_a_pending_switch_to_plain_http_is_seen() -> None:
    # The settings say plain HTTP, the running service still presents its certificate on the HTTPS port.
    host, old, _new = bound_host()
    host.http_ports.add(8065)
    host.files[TLS] = tls_json(protocol="HttpUnrestricted", web=old, config=old)
    result = run_action("xu_tls_binding", {"restart": "never"}, host)
    assert result["changed"] is False and result["restart_required"] is True, result
    result = run_action("xu_tls_binding", {}, host)
    assert result["changed"] is True and result["restarted"] is True and result["restart_required"] is False
    assert 8165 not in host.served and result["served"] == {"web_http": None, "config_server": old}


def test_a_partial_read_is_refused_before_anything_changes() -> None:
    host, _old, new = bound_host()
    host.errors["cert_list"] = {"type": "CryptographicException", "message": "Keyset does not exist"}
    files = dict(host.files)
    result = run_action("xu_tls_binding", {"web_certificate": new}, host)
    assert result["failed"] is True and "could not be read (cert_list: CryptographicException: Keyset does not exist)" in result["msg"]
    assert len(host.calls) == 1 and host.files == files and host.restarts == 0
    assert host.served[8165] is not None


def test_restart_always_restarts_without_a_change() -> None:
    host, old, _new = bound_host()
    result = run_action("xu_tls_binding", {"web_certificate": old, "restart": "always"}, host)
    assert result["changed"] is True and result["restarted"] is True and result["backup_file"] is None
    assert ops(host.calls[1]) == ["service_restart", "port_probe", "port_probe", "event_write"]


def test_a_failed_restart_is_rolled_back() -> None:
    host, _old, new = bound_host()
    before = host.file(TLS)
    host.restart_failures = 1
    result = run_action("xu_tls_binding", {"web_protocol": "https_ad_users", "web_certificate": new}, host)
    assert result["failed"] is True and result["rolled_back"] is True and result["changed"] is False
    assert "the service did not come back" in result["msg"] and "rolled back" in result["msg"]
    assert [ops(call)[0] for call in host.calls] == ["discover", "file_write", "file_restore"]
    assert host.file(TLS) == before and host.file(result["backup_file"]) == before
    assert result["restored_files"] == [TLS_PATH]
    assert host.service_state == "Running" and host.restarts == 2


def test_a_failed_grant_fails_before_writing() -> None:
    host, thumbprint = tls_off_host()
    host.errors["key_grant_read"] = {"type": "UnauthorizedAccessException", "message": "Attempted to perform an unauthorized operation."}
    result = run_action("xu_tls_binding", {"web_protocol": "https_unrestricted", "web_certificate": thumbprint, "grant_key_access": True}, host)
    assert result["failed"] and result["rolled_back"] is False and result["changed"] is False
    assert "key_grant_read failed on the host: UnauthorizedAccessException" in result["msg"]
    assert host.file(TLS) is None and host.restarts == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"web_certificate": "1" * 40}, "is not in LocalMachine\\My on the host"),
        ({"web_protocol": "https_unrestricted"}, "the web server would use HttpsUnrestricted without a certificate; set web_certificate"),
        ({"web_protocol": "https_unrestricted", "web_certificate": "THUMB"}, "web_certificate 'THUMB' is not a certificate thumbprint"),
        ({"web_protocol": "https_unrestricted", "web_certificate": "@cert"}, "cannot read the private key"),
        ({"web_certificate": "@cert", "settings_map": {"web_protocol": "WebServer"}}, "each setting needs a path of its own"),
        ({"web_protocol": "https_smart"}, "value of web_protocol must be one of"),
    ],
)
def test_bad_input_fails_before_anything_is_changed(args: dict[str, Any], message: str) -> None:
    host, thumbprint = tls_off_host()
    args = {key: thumbprint if value == "@cert" else value for key, value in args.items()}
    files = dict(host.files)
    result = run_action("xu_tls_binding", args, host)
    assert result["failed"] is True and result["changed"] is False
    assert message in result["msg"], result["msg"]
    assert all(ops(call) == READ_OPS for call in host.calls) and len(host.calls) <= 1
    assert host.files == files and host.restarts == 0


def test_expired_and_keyless_certificates_in_the_settings_are_refused() -> None:
    host = ChangingFakeHost()
    expired = host.add_certificate(mint(FQDN, days_left=-3)[0])
    host.files[TLS] = tls_json(web=expired, config=expired)
    host.start_service()
    result = run_action("xu_tls_binding", {"web_protocol": "https_ad_users"}, host)
    assert result["failed"] and f"the web server and configuration server certificate {expired} expired on" in result["msg"]
    assert "set web_certificate / config_server_certificate to a valid certificate" in result["msg"]
    assert len(host.calls) == 1


def test_certificates_stored_for_later_are_warned_about() -> None:
    host, thumbprint = tls_off_host()
    result = run_action("xu_tls_binding", {"web_certificate": thumbprint, "config_server_certificate": thumbprint, "grant_key_access": True}, host)
    assert not result.get("failed"), result
    assert any("is stored but not used while the web server serves plain HTTP" in w for w in result["warnings"])
    assert any("authentication is windows_credentials, not custom_credentials_tls" in w for w in result["warnings"])
    assert result["served"] == {"web_http": None, "config_server": None}


def test_a_san_that_misses_the_host_warns_or_stops() -> None:
    host, old, _new = bound_host()
    other = host.add_certificate(mint("other.example.com")[0])
    strict = run_action("xu_tls_binding", {"web_certificate": other, "strict_san": True}, host)
    assert strict["failed"] and "does not name xu01.example.com" in strict["msg"] and len(host.calls) == 1
    lenient = run_action("xu_tls_binding", {"web_certificate": other}, host)
    assert not lenient.get("failed"), lenient
    assert lenient["warnings"] == [f"xu01: the web server certificate {other} does not name xu01.example.com in its Subject Alternative Name"
                                   " (other.example.com), so clients will reject it; set fqdn if clients use another name"]
    assert lenient["served"] == {"web_https": other, "config_server": old}
    assert run_action("xu_tls_binding", {"web_certificate": other, "fqdn": "other.example.com", "strict_san": True}, host)["changed"] is False


def test_another_layout_through_settings_map() -> None:
    settings_map = {
        "web_protocol": "Web.Mode",
        "web_certificate": "Web.Tls.Hash",
        "config_server_authentication": "Designer.Mode",
        "config_server_certificate": "Designer.Tls.Hash",
    }
    host = ChangingFakeHost(settings_map=settings_map)
    thumbprint = host.add_certificate(mint(FQDN)[0])
    host.files[TLS] = json.dumps({"Web": {"Mode": "HttpUnrestricted"}, "Designer": {"Mode": "CustomCredentialsTls", "Tls": {"Hash": thumbprint}}}, indent=4)
    assert host.start_service()
    result = run_action("xu_tls_binding", {"web_protocol": "https_unrestricted", "web_certificate": thumbprint, "settings_map": settings_map}, host)
    assert not result.get("failed"), result
    # Only the assumed layout's Certificate.Thumbprint reference is given the store: this layout names none.
    assert json.loads(host.file(TLS) or "")["Web"] == {"Mode": "HttpsUnrestricted", "Tls": {"Hash": thumbprint}}
    assert (host.file(TLS) or "").startswith('{\n    "Web"')
    assert result["served"] == {"web_https": thumbprint, "config_server": thumbprint}
    assert "warnings" not in result


def test_unknown_setting_values_are_refused() -> None:
    host, _old, new = bound_host()
    host.files[TLS] = tls_json(protocol="HttpsWithClientCertificates", web=new, config=new)
    result = run_action("xu_tls_binding", {"config_server_certificate": new}, host)
    assert result["failed"]
    assert 'WebServer.Protocol is "HttpsWithClientCertificates", not one of HttpUnrestricted' in result["msg"]
    assert "set web_protocol, or check settings_map.web_protocol" in result["msg"]
    # Naming the protocol settles it.
    assert not run_action("xu_tls_binding", {"web_protocol": "https_unrestricted", "config_server_certificate": new}, host).get("failed")


def test_thumbprints_the_map_does_not_name_are_pointed_out() -> None:
    host, old, _new = bound_host()
    document = json.loads(tls_json(web=old, config=old)) | {"Legacy": {"Hash": "2" * 40}}
    host.files[TLS] = json.dumps(document, indent=2)
    result = run_action("xu_tls_binding", {"web_certificate": old}, host)
    assert result["changed"] is False
    assert result["warnings"] == [
        f"xu01: tls.json holds the thumbprint {'2' * 40} at Legacy.Hash, which settings_map does not name;"
        " if your version keeps a certificate there, map it with settings_map"
    ]


def test_an_apply_call_without_an_answer_says_the_outcome_is_unknown() -> None:
    host, _old, new = bound_host()
    intercept(host, lambda stdin: (1, "", "The pipe has been ended.") if host.calls else None)
    result = run_action("xu_tls_binding", {"web_certificate": new}, host)
    assert result["failed"] and result["rolled_back"] is False and result["rc"] == 1
    assert "The pipe has been ended." in result["msg"] and "whether the change was applied is not known" in result["msg"]
