"""Which connections protect a PFX and its password on the wire, and the refusal to send them over one that does not.

The rules are those of ansible-core's winrm and psrp connection plugins, pywinrm's Transport.build_session and
pypsrp's _TransportHTTP (see plugins/plugin_utils/host/_transport.py); the real ansible-core plugins are configured
here the way a task executor configures them, so the options read are the ones they resolve.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.playbook.play_context import PlayContext
from ansible.plugins.loader import connection_loader
from ansible.template import Templar

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._agent import AgentClient, Operation
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import XuError
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._transport import (
    ALLOW_VARIABLE,
    ConnectionProtection,
    SecretsGuard,
    UnprotectedTransport,
    allow_unprotected,
    connection_protection,
    default_winrm_transports,
    psrp_protection,
    winrm_protection,
)
from support.action import fake_connection, run_action
from support.certs import mint
from support.fake_swap import FQDN, make_pfx, swap_host

PASSWORD = "Pfx-transport-test-pässword"  # noqa: S105 - a test value
CORE = (2, 21)


def winrm(**options: Any) -> ConnectionProtection:
    settings: dict[str, Any] = {"port": 5986, "scheme": None, "transports": None, "user": "admin", "message_encryption": None}
    settings.update(options)
    return winrm_protection(core=CORE, have_kerberos=True, encrypts=lambda auth: auth in ("ntlm", "kerberos", "credssp"), **settings)


@pytest.mark.parametrize(
    ("options", "protected", "encrypted_by"),
    [
        # Port 5985 without a scheme is http (winrm.py: 'http' if port == 5985 else 'https'); Basic never encrypts.
        ({"port": 5985, "transports": ["basic"]}, False, ()),
        ({"port": 5985, "transports": ["plaintext"]}, False, ()),
        # 'ssl' is Basic too: over an http scheme it is as clear as plaintext.
        ({"port": 5985, "scheme": "http", "transports": ["ssl"]}, False, ()),
        # No transport over http: plaintext (Basic).
        ({"port": 5985}, False, ()),
        # NTLM, Kerberos and CredSSP encrypt with message_encryption auto (the default) over http.
        ({"port": 5985, "transports": ["ntlm"]}, True, ("message_encryption",)),
        ({"port": 5985, "transports": ["kerberos"], "message_encryption": "always"}, True, ("message_encryption",)),
        ({"port": 5985, "transports": ["credssp"]}, True, ("message_encryption",)),
        # ... unless it is turned off.
        ({"port": 5985, "transports": ["ntlm"], "message_encryption": "never"}, False, ()),
        # Every transport Ansible may try must protect: a Basic fallback does not.
        ({"port": 5985, "transports": ["ntlm", "basic"]}, False, ()),
        # The default port 5986 is https; so is any other port without a scheme.
        ({}, True, ("tls",)),
        ({"port": 15985, "transports": ["basic"]}, True, ("tls",)),
        ({"port": 5985, "scheme": "https", "transports": ["basic"], "message_encryption": "never"}, True, ("tls",)),
        # TLS is what protects https; message encryption on top changes nothing about that.
        ({"port": 5986, "transports": ["ntlm"], "message_encryption": "always"}, True, ("tls",)),
    ],
)
def test_winrm_rules(options: dict[str, Any], protected: bool, encrypted_by: tuple[str, ...]) -> None:
    protection = winrm(**options)
    assert protection.protected is protected
    assert protection.encrypted_by == encrypted_by
    assert bool(protection.reason) is not protected


def test_winrm_libraries_that_cannot_encrypt_are_not_trusted() -> None:
    # pywinrm encrypts Kerberos only when the Kerberos library has authGSSWinRMEncryptMessage; otherwise 'auto' sends clear text.
    protection = winrm_protection(
        port=5985, scheme=None, transports=["kerberos"], user="a@EXAMPLE.COM", message_encryption=None, core=CORE, have_kerberos=True,
        encrypts=lambda auth: auth == "ntlm",
    )
    assert not protection.protected
    assert "cannot encrypt kerberos messages" in protection.reason


@pytest.mark.parametrize(
    ("user", "scheme", "core", "have_kerberos", "expected"),
    [
        ("admin", "http", (2, 21), True, ("plaintext",)),
        ("admin", "https", (2, 21), True, ("ssl",)),
        # A UPN: Kerberos alone from 2.19 on; before, Kerberos then the Basic fallback when a Kerberos library is there.
        ("admin@EXAMPLE.COM", "http", (2, 19), False, ("kerberos",)),
        ("admin@EXAMPLE.COM", "http", (2, 18), True, ("kerberos", "plaintext")),
        ("admin@EXAMPLE.COM", "http", (2, 16), False, ("plaintext",)),
    ],
)
def test_winrm_default_transports(user: str, scheme: str, core: tuple[int, int], have_kerberos: bool, expected: tuple[str, ...]) -> None:
    assert default_winrm_transports(user, scheme, core, have_kerberos) == expected


@pytest.mark.parametrize(
    ("options", "protected", "encrypted_by"),
    [
        ({"port": None, "protocol": None, "auth": None, "message_encryption": None}, True, ("tls",)),
        ({"port": 5985, "protocol": None, "auth": None, "message_encryption": None}, True, ("message_encryption",)),
        ({"port": 5985, "protocol": None, "auth": "ntlm", "message_encryption": "never"}, False, ()),
        ({"port": None, "protocol": "http", "auth": "basic", "message_encryption": "never"}, False, ()),
        ({"port": 5985, "protocol": "https", "auth": "basic", "message_encryption": "never"}, True, ("tls",)),
        ({"port": 8080, "protocol": None, "auth": "certificate", "message_encryption": None}, True, ("tls",)),
    ],
)
def test_psrp_rules(options: dict[str, Any], protected: bool, encrypted_by: tuple[str, ...]) -> None:
    protection = psrp_protection(**options)
    assert protection.protected is protected and protection.encrypted_by == encrypted_by


def configured(plugin: str, variables: dict[str, Any]) -> Any:
    """An ansible-core connection plugin with its options set from host variables, as the task executor sets them."""
    connection = connection_loader.get(plugin, PlayContext(), None)
    var_options = connection._resolve_option_variables(copy.deepcopy(variables), Templar(loader=DataLoader()))
    connection.set_options(var_options=var_options)
    return connection


@pytest.mark.parametrize(
    ("plugin", "variables", "protected", "summary"),
    [
        ("winrm", {"ansible_port": 5985, "ansible_winrm_transport": "basic"}, False, "winrm over http, port 5985, transport basic"),
        ("winrm", {"ansible_port": 5985, "ansible_winrm_transport": "ntlm"}, True, "transport ntlm, message encryption auto"),
        # An extra argument pywinrm takes: read from the plugin's _extras, as it passes it on.
        ("winrm", {"ansible_port": 5985, "ansible_winrm_transport": "ntlm", "ansible_winrm_message_encryption": "never"}, False,
         "message encryption never"),
        ("winrm", {"ansible_winrm_transport": "basic"}, True, "winrm over https, port 5986"),
        ("ssh", {"ansible_port": 2222}, True, "ssh"),
    ],
)
def test_the_real_plugins_resolved_options(plugin: str, variables: dict[str, Any], protected: bool, summary: str) -> None:
    protection = connection_protection(configured(plugin, variables))
    assert protection.plugin == plugin
    assert protection.protected is protected
    assert summary in protection.describe()


def test_an_unknown_connection_protects_nothing() -> None:
    protection = connection_protection(fake_connection("community.example.telnet", {}))
    assert protection.plugin == "telnet" and not protection.protected
    assert "does not know whether the telnet connection encrypts" in protection.reason


@pytest.mark.parametrize(("value", "allowed"), [(None, False), ("", False), (" ", False), ("yes", True), (True, True), ("false", False), ("0", False)])
def test_the_opt_in(value: Any, allowed: bool) -> None:
    assert allow_unprotected(value) is allowed


def test_a_bad_opt_in_names_the_variable() -> None:
    with pytest.raises(XuError, match=f"{ALLOW_VARIABLE} must be true or false, not 'maybe'"):
        allow_unprotected("maybe")


# -- the agent client: the one place every call passes --------------------------------------------------


def test_the_client_checks_before_it_sends() -> None:
    sent: list[bytes] = []

    def transport(command: str, stdin: bytes) -> tuple[int, str, str]:
        sent.append(stdin)
        return 0, json.dumps({"agent": "xtractuniversal.tls", "protocol": 1, "results": []}), ""

    basic = winrm(port=5985, transports=["basic"])
    client = AgentClient(transport, before_secrets=SecretsGuard("xu01", basic, allowed=False).before_secrets)
    client.call([])  # nothing secret: sent
    with pytest.raises(UnprotectedTransport) as refused:
        client.call([Operation("discover"), Operation("pfx_import", {"pfx_b64": "AAAA", "password": PASSWORD})])
    assert len(sent) == 1 and client.calls == 1
    assert refused.value.op == "pfx_import"
    assert "Nothing was sent" in refused.value.msg and ALLOW_VARIABLE in refused.value.msg
    assert "winrm over http, port 5985, transport basic" in refused.value.msg


# -- a module run: refused with the host untouched, or sent --------------------------------------------


def pfx_swap(connection_options: dict[str, Any], task_vars: dict[str, Any] | None = None) -> tuple[dict[str, Any], Any, str]:
    host, old, _cert = swap_host()
    cert, key = mint(FQDN, sans=(FQDN, "xu01"), days_left=300)
    args = {"old_thumbprint": old, "pfx_content": base64.b64encode(make_pfx(cert, key, PASSWORD)).decode(), "pfx_password": PASSWORD, "wait_timeout": 5,
            "grant_key_access": True}
    result = run_action("xu_cert_swap", args, host, connection=fake_connection("winrm", connection_options), task_vars=task_vars)
    return result, host, old


BASIC_HTTP = {"port": 5985, "transport": ["basic"], "remote_user": "labadmin", "_extras": {}}


def test_a_pfx_over_basic_http_is_refused_and_the_host_untouched() -> None:
    result, host, old = pfx_swap(BASIC_HTTP)
    assert result["failed"] is True and result["changed"] is False
    assert "Refusing to send the PFX (its private key) and its password to xu01" in result["msg"]
    assert "winrm over http, port 5985, transport basic" in result["msg"] and ALLOW_VARIABLE in result["msg"]
    # The read went; the call with the PFX never did: no import, no write, and the settings name the old certificate.
    assert [op["op"] for call in host.calls for op in call if op["op"] in ("pfx_import", "file_write", "service_restart")] == []
    assert old in host.files["config\\servers\\tls.json"]
    assert result["transport"]["protected"] is False and result["transport"]["encrypted_by"] == []
    assert "imported_thumbprint" not in result
    assert PASSWORD not in json.dumps(result)


def test_a_pfx_over_ntlm_with_message_encryption_is_sent() -> None:
    result, _host, _old = pfx_swap({"port": 5985, "transport": ["ntlm"], "remote_user": "labadmin", "_extras": {}})
    assert not result.get("failed"), result
    assert result["imported"] is True
    assert not any(ALLOW_VARIABLE in warning for warning in result.get("warnings", []))


def test_the_opt_in_sends_it_and_warns() -> None:
    result, _host, _old = pfx_swap(BASIC_HTTP, {ALLOW_VARIABLE: "true"})
    assert not result.get("failed"), result
    assert result["imported"] is True
    assert any(f"because {ALLOW_VARIABLE} is true" in warning and "xu01: the PFX" in warning for warning in result["warnings"])


def test_a_bad_opt_in_fails_before_any_call() -> None:
    result, host, _old = pfx_swap(BASIC_HTTP, {ALLOW_VARIABLE: "sometimes"})
    assert result["failed"] is True and ALLOW_VARIABLE in result["msg"]
    assert host.calls == []


# -- the report: xu_tls_info says which protection the connection has, the fleet report shows a bare one -----------


def test_tls_info_reports_the_connections_protection() -> None:
    host, _old, _cert = swap_host()
    basic = run_action("xu_tls_info", {}, host, connection=fake_connection("winrm", BASIC_HTTP))
    assert basic["transport"] == {
        "plugin": "winrm", "scheme": "http", "port": 5985, "auth": "basic", "message_encryption": "auto", "encrypted_by": [],
        "protected": False, "unprotected_allowed": False, "summary": "winrm over http, port 5985, transport basic, message encryption auto",
    }
    # Not a problem of the server.
    assert not any("connection" in problem for problem in basic["problems"])
    ntlm = run_action("xu_tls_info", {}, host, task_vars={ALLOW_VARIABLE: True})
    assert ntlm["transport"]["encrypted_by"] == ["message_encryption"] and ntlm["transport"]["protected"] is True
    assert ntlm["transport"]["unprotected_allowed"] is True
    ssh = run_action("xu_tls_info", {}, host, connection=fake_connection("ssh", {"port": 22}))
    assert ssh["transport"]["encrypted_by"] == ["ssh"] and ssh["transport"]["summary"] == "ssh, port 22"


def test_the_fleet_report_notes_a_bare_connection() -> None:
    from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.report._tls_report import host_report, table_lines  # noqa: PLC0415

    host, _old, _cert = swap_host()
    infos = {
        "xu01": run_action("xu_tls_info", {}, host, connection=fake_connection("winrm", BASIC_HTTP)),
        "xu02": run_action("xu_tls_info", {}, host),
        "xu03": run_action("xu_tls_info", {}, host, connection=fake_connection("winrm", BASIC_HTTP), task_vars={ALLOW_VARIABLE: "yes"}),
    }
    rows = [host_report(name, info, True, 30) for name, info in infos.items()]
    lines = table_lines(rows, {})
    # Once for the hosts each applies to, after the table.
    notes = [line for line in lines if line.startswith("NOTE   ")]
    assert len(notes) == 2
    assert notes[0].startswith("NOTE   xu01: the connection (winrm over http, port 5985, transport basic,")
    assert notes[1].startswith("NOTE   xu03: the connection (winrm over http, port 5985, transport basic,")
    text = " ".join(" ".join(line.split()) for line in lines)
    assert "a PFX and its password are not sent over it (xu_allow_unprotected_transport)" in text
    assert "xu_allow_unprotected_transport lets a PFX and its password cross it" in text
    # The connection is no problem of the server: every row has the same status and problems, and report.json carries it.
    assert len({(row.status, row.problems) for row in rows}) == 1
    assert rows[1].to_result()["transport"]["protected"] is True
