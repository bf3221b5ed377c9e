"""xu_cert_swap: the settings rewrite on several layouts, the input checks, and every flow against a scripted host."""

from __future__ import annotations

import base64
import json
import pathlib
from typing import Any

import pytest

from ansible_collections.xtractuniversal.tls.plugins.action.xu_cert_swap import ActionModule
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._pfx import PBES2_OID_DER
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import XuError
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._eventlog import CERTIFICATE_SWAPPED
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.journal._journal import JournalRide
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._cert_swap import (
    RENEWALS_JOURNAL,
    rewrite_references,
    string_values,
    styled_like,
)
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._settings import SettingsFile
from support.action import run_action
from support.certs import mint
from support.fake_changes import TLS_FILE
from support.fake_host import intercept
from support.fake_swap import FQDN, SwapFakeHost, make_pfx, swap_host, thumbprint_of
from support.inprocess import Steps

OLD = "AD3B9B0C9F6E3F1A2B3C4D5E6F708192A3B4ECE6"
NEW = "5D0C4E1F2A3B4C5D6E7F8091A2B3C4D5E6F70819"
PASSWORD = "s3cret-Pfx-pässword"  # noqa: S105 - a test value
INSTALL = "C:\\Program Files\\XtractUniversal"


def served_thumbprint(host: SwapFakeHost, port: int) -> str | None:
    served = host.served.get(port)
    return thumbprint_of(served) if served is not None else None


def settings(text: str, path: str = TLS_FILE) -> SettingsFile:
    return SettingsFile(path, f"{INSTALL}\\{path}", True, text, None)


# -- the text-level rewrite ---------------------------------------------------------------------


def test_string_values_know_keys_from_values() -> None:
    text = '{"A": "x", "B": [1, "y", {"C": "z", "D": null}], "E": {"F": true, "G": "w"}}'
    found = [(lit.path, lit.value) for lit in string_values(text)]
    assert found == [(("A",), "x"), (("B", 1), "y"), (("B", 2, "C"), "z"), (("E", "G"), "w")]
    escaped = '{"k\\"ey": "va\\\\lue\\"", "n": "\\u00e9"}'
    assert [(lit.path, lit.value) for lit in string_values(escaped)] == [(('k"ey',), 'va\\lue"'), (("n",), "é")]


ASSUMED = json.dumps({
    "WebServer": {"Protocol": "HttpsUnrestricted", "Certificate": {"StoreLocation": "LocalMachine", "StoreName": "My", "Thumbprint": OLD}},
    "ConfigServer": {"Authentication": "CustomCredentialsTls", "Certificate": {"StoreLocation": "LocalMachine", "StoreName": "My", "Thumbprint": OLD.lower()}},
}, indent=2).replace("\n", "\r\n") + "\r\n"


@pytest.mark.parametrize(
    ("layout", "text", "paths", "new_values"),
    [
        ("assumed, CRLF, one upper and one lower", ASSUMED,
         ["WebServer.Certificate.Thumbprint", "ConfigServer.Certificate.Thumbprint"], [NEW, NEW.lower()]),
        ("flat, tabs, pasted with U+200E and spaces: written in the clean form",
         '{\n\t"Protocol": "HttpsUnrestricted",\n\t"CertificateThumbprint": "\u200e' + " ".join(OLD[i:i + 2].lower() for i in range(0, 40, 2))
         + '",\n\t"Other": "1111111111111111111111111111111111111111"\n}',
         ["CertificateThumbprint"], [NEW]),
        ("list of endpoints, minified, colons",
         '{"Endpoints":[{"Name":"web","Hash":"' + ":".join(OLD[i:i + 2] for i in range(0, 40, 2)) + '"},{"Name":"config","Hash":"' + OLD + '"}]}',
         ["Endpoints[0].Hash", "Endpoints[1].Hash"], [NEW, NEW]),
        ("nested lists, escaped unicode elsewhere",
         '{"Name": "Caf\\u00e9", "Sets": [[{"T": "' + OLD + '"}], []]}', ["Sets[0][0].T"], [NEW]),
    ],
)
def test_rewrite_keeps_the_formatting(layout: str, text: str, paths: list[str], new_values: list[str]) -> None:
    rewrite = rewrite_references(settings(text), OLD, NEW)
    assert rewrite is not None, layout
    assert [r.path for r in rewrite.references] == paths
    assert [r.new_value for r in rewrite.references] == new_values
    assert all(r.file == f"{INSTALL}\\{TLS_FILE}" for r in rewrite.references)
    # Only the thumbprint literals differ: line ends, indentation and everything else stay.
    expected = text
    for reference in rewrite.references:
        expected = expected.replace(json.dumps(reference.old_value, ensure_ascii=False), json.dumps(reference.new_value), 1)
        expected = expected.replace(json.dumps(reference.old_value), json.dumps(reference.new_value), 1)
    assert rewrite.after == expected
    assert rewrite.after.count("\r\n") == text.count("\r\n")
    assert OLD not in rewrite.after.upper().replace(" ", "").replace(":", "")


def test_rewrite_leaves_keys_and_other_thumbprints() -> None:
    text = json.dumps({OLD: "key named like the thumbprint", "Other": NEW, "Thumbprint": OLD})
    rewrite = rewrite_references(settings(text), OLD, NEW)
    assert rewrite is not None
    assert json.loads(rewrite.after) == {OLD: "key named like the thumbprint", "Other": NEW, "Thumbprint": NEW}
    assert rewrite_references(settings('{"Thumbprint": "' + NEW + '"}'), OLD, NEW) is None


def test_rewrite_refuses_duplicate_keys() -> None:
    text = '{"Thumbprint": "' + OLD + '", "Thumbprint": "1111111111111111111111111111111111111111"}'
    with pytest.raises(XuError, match="Refusing to rewrite"):
        rewrite_references(settings(text), OLD, NEW)


def test_rewrite_of_broken_json_names_the_file() -> None:
    with pytest.raises(XuError, match=r"Unable to parse .*tls.json as JSON.*fix the file"):
        rewrite_references(settings('{"Thumbprint": '), OLD, NEW)


@pytest.mark.parametrize(
    ("old_value", "styled"),
    [(OLD, NEW), (OLD.lower(), NEW.lower()), ("\u200e" + OLD.lower(), NEW), (" ".join(OLD.lower()), NEW), ("Ad3b" + OLD[4:], NEW), ("1" * 40, NEW)],
)
def test_the_new_thumbprint_follows_the_old_case(old_value: str, styled: str) -> None:
    assert styled_like(old_value, NEW) == styled


# -- input checks: all before any remote call ---------------------------------------------------


def pfx_args(cert: Any, key: Any, password: str | None = PASSWORD, **extra: Any) -> dict[str, Any]:
    return {"pfx_content": base64.b64encode(make_pfx(cert, key, password)).decode(), "pfx_password": password, **extra}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"old_thumbprint": "AD3B9B", "new_thumbprint": NEW}, "old_thumbprint 'AD3B9B' is not a certificate thumbprint: expected 40 hexadecimal digits"),
        ({"old_thumbprint": OLD, "new_thumbprint": NEW[:-1] + "Z"}, "new_thumbprint"),
        ({"old_thumbprint": OLD, "new_thumbprint": NEW, "pfx_content": "AAAA"}, "mutually exclusive: new_thumbprint|pfx_path|pfx_content"),
        ({"old_thumbprint": OLD, "new_thumbprint": NEW, "renew_reusing_key": True}, "renew_reusing_key: true and new_thumbprint both name"),
        ({"old_thumbprint": OLD, "renew_reusing_key": False}, "renew_reusing_key: false names no new certificate"),
        ({"old_thumbprint": OLD}, "one of the following is required: new_thumbprint, pfx_path, pfx_content, renew_reusing_key"),
        ({"old_thumbprint": OLD, "new_thumbprint": NEW, "pfx_password": "hunter2!"}, "pfx_password only apply to a PFX"),
        ({"old_thumbprint": OLD, "new_thumbprint": OLD.lower()}, "The new certificate is the old one"),
        ({"old_thumbprint": OLD, "new_thumbprint": NEW, "wait_timeout": 0}, "wait_timeout must be a positive number"),
        ({"old_thumbprint": OLD, "new_thumbprint": NEW, "settings_files": ["C:\\x.json"]}, "must be a path relative to the install dir"),
        ({"old_thumbprint": OLD, "new_thumbprint": NEW, "settings_files": ["..\\x.json"]}, "without '..'"),
        ({"old_thumbprint": OLD, "pfx_content": "not base64!"}, "pfx_content must be the PFX file encoded as base64"),
        ({"old_thumbprint": OLD, "new_thumbprint": NEW, "restart": "sometimes"}, "restart"),
        ({"new_thumbprint": NEW}, "update_references is True but all of the following are missing: old_thumbprint"),
        ({"renew_reusing_key": True, "update_references": False}, "renew_reusing_key: true renews the certificate named by old_thumbprint"),
    ],
)
def test_bad_input_fails_before_any_remote_call(args: dict[str, Any], message: str) -> None:
    host, _old, _cert = swap_host()
    result = run_action("xu_cert_swap", args, host)
    assert result["failed"] is True and message in result["msg"], result["msg"]
    assert host.calls == []


def test_renew_reusing_key_false_counts_as_absent() -> None:
    host, old, _cert = swap_host()
    new_cert, new_key = mint(FQDN)
    new = host.add_keyed(new_cert, new_key)
    result = run_action("xu_cert_swap", {"old_thumbprint": old, "new_thumbprint": new, "renew_reusing_key": False}, host)
    assert not result.get("failed"), result
    assert result["changed"] is True


@pytest.mark.parametrize(
    ("pfx", "message"),
    [
        ("wrong password", "the password (pfx_password) is wrong"),
        ("expired", "expired on"),
        ("not yet valid", "is not valid before"),
        ("no key", "holds no private key"),
    ],
)
def test_bad_pfx_fails_before_any_remote_call(pfx: str, message: str) -> None:
    host, old, _cert = swap_host()
    cert, key = mint(FQDN, days_left=-1 if pfx == "expired" else 300, valid_from_days_ago=-3 if pfx == "not yet valid" else 30)
    args = pfx_args(cert, None if pfx == "no key" else key, old_thumbprint=old)
    if pfx == "wrong password":
        args["pfx_password"] = "not it"  # noqa: S105 - a test value
    result = run_action("xu_cert_swap", args, host)
    assert result["failed"] and message in result["msg"], result["msg"]
    assert host.calls == []


def test_strict_san_fails_before_the_host_is_read_when_it_can() -> None:
    host, old, _cert = swap_host()
    cert, key = mint("other.example.com", server_auth=False)
    result = run_action("xu_cert_swap", pfx_args(cert, key, old_thumbprint=old, strict_san=True, fqdn=FQDN), host)
    assert result["failed"] and "does not name xu01.example.com" in result["msg"] and "Server Authentication" in result["msg"]
    assert host.calls == []
    # The EKU needs no host name.
    result = run_action("xu_cert_swap", pfx_args(cert, key, old_thumbprint=old, strict_san=True), host)
    assert result["failed"] and "Server Authentication" in result["msg"] and host.calls == []
    # Without fqdn, the host's name is read first: one read call, nothing changed.
    before = dict(host.files)
    misnamed, key = mint("other.example.com")
    result = run_action("xu_cert_swap", pfx_args(misnamed, key, old_thumbprint=old, strict_san=True), host)
    assert result["failed"] and "does not name xu01.example.com" in result["msg"]
    assert len(host.calls) == 1 and host.files == before
    # Not strict: a warning, and the swap goes on.
    result = run_action("xu_cert_swap", pfx_args(misnamed, key, old_thumbprint=old, grant_key_access=True), host)
    assert not result.get("failed"), result
    assert any("does not name xu01.example.com" in w for w in result["warnings"])


# -- new_thumbprint -----------------------------------------------------------------------------


def host_with_new() -> tuple[SwapFakeHost, str, str]:
    host, old, _cert = swap_host()
    cert, key = mint(FQDN, sans=(FQDN,), days_left=365)
    return host, old, host.add_keyed(cert, key)


def test_new_thumbprint_check_mode_then_apply_then_idempotent() -> None:
    host, old, new = host_with_new()
    before = dict(host.files)
    args = {"old_thumbprint": "\u200e" + old.lower(), "new_thumbprint": " ".join(new[i:i + 2] for i in range(0, 40, 2))}

    checked = run_action("xu_cert_swap", args, host, check_mode=True, diff=True)
    assert checked["changed"] is True and not checked.get("failed"), checked
    assert len(host.calls) == 1 and host.files == before and host.restarts == 0
    assert [r["path"] for r in checked["references"]] == ["WebServer.Certificate.Thumbprint", "ConfigServer.Certificate.Thumbprint"]
    assert checked["diff"][0]["before"] == before[TLS_FILE]
    assert checked["diff"][0]["after"] == before[TLS_FILE].replace(old, new)
    assert checked["restarted"] is True and checked["served"] == {}

    applied = run_action("xu_cert_swap", args, host)
    assert applied["changed"] is True and not applied.get("failed"), applied
    assert len(host.calls) == 3
    ops = [op["op"] for op in host.calls[2]]
    assert ops == ["cert_check", "file_write", "service_restart", "port_probe", "port_probe", "event_write"]
    assert host.files[TLS_FILE] == before[TLS_FILE].replace(old, new)
    (backup,) = applied["backup_files"].values()
    assert host.file(backup) == before[TLS_FILE]
    assert applied["old_thumbprint"] == old and applied["new_thumbprint"] == new
    assert applied["served"]["web_https"]["thumbprint"] == new and applied["served"]["config_server"]["thumbprint"] == new
    assert served_thumbprint(host, 8165) == new
    assert applied["removed_old"] is False and old in host.thumbprints()
    assert applied["new_certificate"]["thumbprint"] == new and applied["rolled_back"] is False

    again = run_action("xu_cert_swap", args, host)
    assert again["changed"] is False and not again.get("failed"), again
    assert len(host.calls) == 4 and again["references"] == []


def test_new_thumbprint_must_be_usable() -> None:
    host, old, _cert = swap_host()
    result = run_action("xu_cert_swap", {"old_thumbprint": old, "new_thumbprint": NEW}, host)
    assert result["failed"] and f"new_thumbprint {NEW} is not in LocalMachine\\My" in result["msg"]

    expired, key = mint(FQDN, days_left=-1)
    new = host.add_keyed(expired, key)
    result = run_action("xu_cert_swap", {"old_thumbprint": old, "new_thumbprint": new}, host)
    assert result["failed"] and "expired on" in result["msg"]

    unreadable, key = mint(FQDN)
    new = host.add_keyed(unreadable, key, acl=[])
    result = run_action("xu_cert_swap", {"old_thumbprint": old, "new_thumbprint": new}, host)
    assert result["failed"] and "cannot read the private key" in result["msg"] and "grant_key_access: true" in result["msg"]
    assert all(op["op"] not in ("file_write", "service_restart") for call in host.calls for op in call)

    result = run_action("xu_cert_swap", {"old_thumbprint": old, "new_thumbprint": new, "grant_key_access": True}, host)
    assert not result.get("failed"), result
    assert result["key_access_granted"] is True
    assert [op["op"] for op in host.calls[-1]][:3] == ["cert_check", "key_grant_read", "file_write"]


def test_no_reference_is_an_error_unless_allowed() -> None:
    host, _old, _cert = swap_host()
    stray, key = mint(FQDN)
    unbound = host.add_keyed(stray, key)
    new_cert, new_key = mint(FQDN)
    new = host.add_keyed(new_cert, new_key)
    before = dict(host.files)
    result = run_action("xu_cert_swap", {"old_thumbprint": unbound, "new_thumbprint": new}, host)
    assert result["failed"] and f"No settings reference the old certificate {unbound}" in result["msg"]
    assert "allow_no_reference: true" in result["msg"] and len(host.calls) == 1 and host.files == before

    result = run_action("xu_cert_swap", {"old_thumbprint": unbound, "new_thumbprint": new, "allow_no_reference": True, "remove_old": True}, host)
    assert not result.get("failed"), result
    # Nothing to rewrite, no restart; the unbound old certificate is removed while the ports present what the settings name.
    assert result["changed"] is True and result["references"] == [] and result["restarted"] is False
    assert [op["op"] for op in host.calls[-1]] == ["cert_remove", "event_write"]
    bound_now = served_thumbprint(host, 8165)
    assert {entry["thumbprint"] for entry in host.calls[-1][0]["args"]["require_served"]} == {bound_now} != {unbound}
    assert unbound not in host.thumbprints() and host.files == before


def test_extra_settings_files() -> None:
    host, old, new = host_with_new()
    host.files["config\\servers\\designer.json"] = json.dumps({"Pinned": [{"Thumbprint": old.lower()}]})
    args = {"old_thumbprint": old, "new_thumbprint": new, "settings_files": ["config/servers/designer.json", "config\\missing.json"]}
    result = run_action("xu_cert_swap", args, host)
    assert not result.get("failed"), result
    assert json.loads(host.files["config\\servers\\designer.json"]) == {"Pinned": [{"Thumbprint": new.lower()}]}
    assert {(r["file"].rsplit("\\", 1)[1], r["path"]) for r in result["references"]} == {
        ("designer.json", "Pinned[0].Thumbprint"), ("tls.json", "WebServer.Certificate.Thumbprint"), ("tls.json", "ConfigServer.Certificate.Thumbprint"),
    }
    assert any("config\\missing.json does not exist" in w for w in result["warnings"])
    # The extra files are read in the same read call.
    assert "config\\servers\\designer.json" in host.calls[0][0]["args"]["files"]
    assert len(host.calls) == 2


def test_removal_check_names_the_host_when_fqdn_is_set() -> None:
    """The host-side check before removing the old certificate probes with the name clients use, as the verification did."""
    host, old, _cert = swap_host()
    cert, key = mint(FQDN, sans=(FQDN, "xu01"), days_left=365)
    new = thumbprint_of(cert)
    result = run_action("xu_cert_swap", pfx_args(cert, key, old_thumbprint=old, remove_old=True, grant_key_access=True, fqdn=FQDN), host)
    assert not result.get("failed"), result
    # Removed in the apply call, once the host itself sees what the controller's verdict requires (certificate and HTTP).
    (removal,) = [op for op in host.calls[-1] if op["op"] == "cert_remove"]
    assert removal["args"]["require_served"] == [
        {"port": 8165, "thumbprint": new, "server_name": FQDN, "http_path": "/version", "http_statuses": [200]},
        {"port": 8064, "thumbprint": new, "server_name": FQDN},
    ]
    assert all(op["args"]["server_name"] == FQDN for op in host.calls[-1] if op["op"] == "port_probe")


# -- PFX ----------------------------------------------------------------------------------------


def test_pfx_import_grant_swap_and_remove_old() -> None:
    host, old, _cert = swap_host()
    cert, key = mint(FQDN, sans=(FQDN, "xu01"), days_left=365)
    new = thumbprint_of(cert)
    args = pfx_args(cert, key, old_thumbprint=old, remove_old=True, grant_key_access=True)

    checked = run_action("xu_cert_swap", args, host, check_mode=True)
    assert checked["changed"] and checked["imported"] and checked["key_access_granted"] and checked["removed_old"], checked
    assert new not in host.thumbprints() and len(host.calls) == 1

    result = run_action("xu_cert_swap", args, host)
    assert not result.get("failed"), result
    # read, then one apply call that removes the old certificate once the host sees the new one served as the verdict requires
    assert len(host.calls) == 3
    apply_ops = host.calls[2]
    assert [op["op"] for op in apply_ops] == [
        "pfx_import", "key_grant_read", "file_write", "service_restart", "port_probe", "port_probe", "event_write", "cert_remove", "event_write",
    ]
    assert apply_ops[0]["args"]["password"] == PASSWORD and apply_ops[0]["args"]["exportable"] is False
    # The AES-encrypted PFX travels re-encoded, so that Server 2016 can read it too.
    assert PBES2_OID_DER in base64.b64decode(args["pfx_content"])
    assert PBES2_OID_DER not in base64.b64decode(apply_ops[0]["args"]["pfx_b64"])
    # Probed by the name the host reported, as a server bound to its DNS name requires.
    assert apply_ops[7]["args"]["require_served"] == [
        {"port": 8165, "thumbprint": new, "server_name": FQDN, "http_path": "/version", "http_statuses": [200]},
        {"port": 8064, "thumbprint": new, "server_name": FQDN},
    ]
    assert {op["args"].get("server_name") for op in apply_ops if op["op"] == "port_probe"} == {FQDN}
    assert result["imported"] and result["key_access_granted"] and result["removed_old"]
    assert result["new_thumbprint"] == new and result["new_certificate"]["chain_trusted_by"] == "pfx"
    assert old not in host.thumbprints() and served_thumbprint(host, 8064) == new
    # The password is masked wherever it would appear in the result.
    assert PASSWORD not in json.dumps(result)

    again = run_action("xu_cert_swap", args, host)
    assert again["changed"] is False and not again.get("failed"), again
    assert len(host.calls) == 4


def test_without_an_old_certificate_a_pfx_is_only_installed_and_made_readable() -> None:
    # A server that serves plain HTTP has no certificate to replace: the PFX is installed for xu_tls_binding to bind.
    host, _old, _cert = swap_host()
    settings_before = dict(host.files)
    cert, key = mint(FQDN, sans=(FQDN,), days_left=365)
    new = thumbprint_of(cert)
    args = pfx_args(cert, key, update_references=False, grant_key_access=True)

    checked = run_action("xu_cert_swap", args, host, check_mode=True)
    assert checked["changed"] and checked["imported"] and checked["old_thumbprint"] is None and new not in host.thumbprints()

    result = run_action("xu_cert_swap", args, host)
    assert not result.get("failed") and result["changed"] and result["new_thumbprint"] == new, result
    assert [op["op"] for op in host.calls[-1]] == ["pfx_import", "key_grant_read", "event_write"]
    assert new in host.thumbprints() and host.files == settings_before and not result["restarted"]
    assert f"Certificate {new} installed: imported from a PFX" in host.calls[-1][-1]["args"]["message"]

    again = run_action("xu_cert_swap", args, host)
    assert again["changed"] is False and not again.get("failed"), again


def test_pfx_key_needs_grant_key_access() -> None:
    host, old, _cert = swap_host()
    cert, key = mint(FQDN)
    result = run_action("xu_cert_swap", pfx_args(cert, key, old_thumbprint=old), host)
    assert result["failed"] and "cannot read the private key" in result["msg"] and "grant_key_access: true" in result["msg"]
    assert len(host.calls) == 1


def test_pfx_path_is_read_on_the_controller(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ansible.parsing.dataloader import DataLoader  # noqa: PLC0415

    host, old, _cert = swap_host()
    cert, key = mint(FQDN)
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "xu01.pfx").write_bytes(make_pfx(cert, key, PASSWORD))
    original_init = ActionModule.__init__

    def with_real_loader(self: ActionModule, *args: Any, **kwargs: Any) -> None:
        kwargs["loader"] = DataLoader()
        original_init(self, *args, **kwargs)
        self._task.get_search_path = lambda: [str(tmp_path)]

    monkeypatch.setattr(ActionModule, "__init__", with_real_loader)
    args = {"old_thumbprint": old, "pfx_path": "xu01.pfx", "pfx_password": PASSWORD, "grant_key_access": True}
    result = run_action("xu_cert_swap", args, host)
    assert not result.get("failed"), result
    assert result["new_thumbprint"] == thumbprint_of(cert) and result["imported"] is True

    result = run_action("xu_cert_swap", {**args, "pfx_path": "missing.pfx"}, host)
    assert result["failed"] and "pfx_path missing.pfx cannot be read on the controller" in result["msg"]


def test_restart_failure_rolls_back_and_reports_the_imported_certificate() -> None:
    host, old, cert = swap_host()
    before = dict(host.files)
    host.restart_failures = 1
    new_cert, new_key = mint(FQDN)
    result = run_action("xu_cert_swap", pfx_args(new_cert, new_key, old_thumbprint=old, remove_old=True, grant_key_access=True), host)
    assert result["failed"] is True and result["rolled_back"] is True, result
    assert result["imported_thumbprint"] == thumbprint_of(new_cert) and result["changed"] is True
    assert len(host.calls) == 3  # read, apply, rollback
    assert host.files[TLS_FILE] == before[TLS_FILE]
    # The old certificate stayed (the host refused or skipped its removal: nothing served the new one) and is served again.
    assert old in host.thumbprints() and host.served[8165] == cert and host.removed == []
    assert all(op["args"]["require_served"] for call in host.calls for op in call if op["op"] == "cert_remove")
    assert PASSWORD not in json.dumps(result)


def test_a_bad_verdict_with_remove_old_keeps_the_old_certificate_for_the_rollback() -> None:
    # The ports present the new certificate (so require_served holds on the host), but /version answers 500:
    # the controller's verdict fails. The old certificate must still be there for the rollback to bind.
    host, old, cert = swap_host()
    before = dict(host.files)
    new_cert, new_key = mint(FQDN)
    new = thumbprint_of(new_cert)

    def broken_web_server_once(h: Any) -> None:
        h.http_status = 500 if h.restarts == 1 else 200

    host.after_start.append(broken_web_server_once)
    result = run_action("xu_cert_swap", pfx_args(new_cert, new_key, old_thumbprint=old, remove_old=True, grant_key_access=True), host)
    assert result["failed"] is True and result["rolled_back"] is True, result
    assert "GET /version on port 8165 answered 500, expected 200" in result["msg"]
    assert len(host.calls) == 3  # read, apply, rollback
    # The removal rode in the apply call, and the host refused it: /version did not answer 200, as the verdict requires.
    (removal,) = [op for call in host.calls for op in call if op["op"] == "cert_remove"]
    assert {"port": 8165, "thumbprint": new, "server_name": FQDN, "http_path": "/version", "http_statuses": [200]} in removal["args"]["require_served"]
    assert old in host.thumbprints() and host.removed == []
    assert host.files[TLS_FILE] == before[TLS_FILE]
    assert host.service_state == "Running" and host.served[8165] == cert and host.served[8064] == cert
    assert new in host.thumbprints() and result["imported_thumbprint"] == new


def test_a_failed_removal_only_warns_and_keeps_the_swaps_entry() -> None:
    host, old, new = host_with_new()
    host.errors["cert_remove"] = {"type": "UnauthorizedAccessException", "message": "Access is denied."}
    result = run_action("xu_cert_swap", {"old_thumbprint": old, "new_thumbprint": new, "remove_old": True}, host)
    assert not result.get("failed"), result
    assert result["changed"] is True and result["removed_old"] is False and result["restarted"] is True
    assert [[op["op"] for op in call] for call in host.calls[1:]] == [
        ["cert_check", "file_write", "service_restart", "port_probe", "port_probe", "event_write", "cert_remove", "event_write"],
    ]
    # The swap's own entry is written before the removal, so a refused removal does not take it along.
    assert [entry["event_id"] for entry in host.event_log] == [CERTIFICATE_SWAPPED]
    assert any(f"The old certificate {old} was left in the store: UnauthorizedAccessException" in w for w in result["warnings"])
    assert old in host.thumbprints() and served_thumbprint(host, 8165) == new

    # An unanswered removal call of its own (without a restart it follows the swap): the swap is done, whether the
    # old certificate went is not known.
    host, old, new = host_with_new()
    intercept(host, lambda stdin: (1, "", "The WinRM connection was reset") if b'"cert_remove"' in stdin else None)
    result = run_action("xu_cert_swap", {"old_thumbprint": old, "new_thumbprint": new, "remove_old": True, "restart": "never"}, host)
    assert not result.get("failed"), result
    assert result["removed_old"] is False and old in host.thumbprints()
    assert any("is not known" in w and "WinRM connection was reset" in w for w in result["warnings"])


def test_restart_never_keeps_the_old_certificate_while_the_service_still_serves_it() -> None:
    host, old, new = host_with_new()
    result = run_action("xu_cert_swap", {"old_thumbprint": old, "new_thumbprint": new, "remove_old": True, "restart": "never"}, host)
    assert not result.get("failed"), result
    # The settings name the new certificate, the running service still presents the old one: removing it would
    # leave a service that cannot start again (and a run that restarts it meanwhile would find it gone).
    assert result["removed_old"] is False and result["restarted"] is False and old in host.thumbprints()
    assert [[op["op"] for op in call] for call in host.calls[1:]] == [["cert_check", "file_write", "event_write"], ["cert_remove", "event_write"]]
    assert {entry["thumbprint"] for entry in host.calls[2][0]["args"]["require_served"]} == {new}
    assert any(f"The old certificate {old} was left in the store" in w for w in result["warnings"])
    # Once it has been restarted and serves the new one, the next run removes the old one.
    assert host.start_service() and served_thumbprint(host, 8165) == new
    again = run_action("xu_cert_swap", {"old_thumbprint": old, "new_thumbprint": new, "remove_old": True, "restart": "never"}, host)
    assert again["removed_old"] is True and old not in host.thumbprints()


def test_an_unknown_protocol_is_refused_before_anything_changes() -> None:
    host, old, new = host_with_new()
    host.files[TLS_FILE] = host.files[TLS_FILE].replace("HttpsUnrestricted", "HttpsWithClientCertificates")
    before = dict(host.files)
    result = run_action("xu_cert_swap", {"old_thumbprint": old, "new_thumbprint": new}, host)
    assert result["failed"] is True, result
    assert 'WebServer.Protocol is "HttpsWithClientCertificates", not one of HttpUnrestricted' in result["msg"]
    assert "settings_map.web_protocol" in result["msg"]
    assert len(host.calls) == 1 and host.files == before and host.restarts == 0

    # A renewal is refused before certreq runs.
    result = run_action("xu_cert_swap", {"old_thumbprint": old, "renew_reusing_key": True}, host)
    assert result["failed"] is True and "HttpsWithClientCertificates" in result["msg"]
    assert len(host.calls) == 2 and host.archived == [] and host.journals == {}

    host.files[TLS_FILE] = before[TLS_FILE].replace("HttpsWithClientCertificates", "HttpsUnrestricted").replace(
        "CustomCredentialsTls", "CustomCredentialsQuic")
    result = run_action("xu_cert_swap", {"old_thumbprint": old, "new_thumbprint": new}, host)
    assert result["failed"] is True
    assert 'ConfigServer.Authentication is "CustomCredentialsQuic"' in result["msg"] and "settings_map.config_server_authentication" in result["msg"]
    assert len(host.calls) == 3 and host.restarts == 0


def test_a_partial_read_is_refused_before_anything_changes() -> None:
    # With the store unreadable every certificate looks absent: the old one would look gone and the rollback be skipped.
    host, old, _cert = swap_host()
    host.errors["cert_list"] = {"type": "CryptographicException", "message": "Keyset does not exist"}
    before = dict(host.files)
    new_cert, new_key = mint(FQDN)
    result = run_action("xu_cert_swap", pfx_args(new_cert, new_key, old_thumbprint=old, grant_key_access=True), host)
    assert result["failed"] is True, result
    assert "could not be read (cert_list: CryptographicException: Keyset does not exist)" in result["msg"]
    assert len(host.calls) == 1 and host.files == before and host.restarts == 0
    assert thumbprint_of(new_cert) not in host.thumbprints()


def test_without_the_old_certificate_a_failed_restart_is_not_rolled_back() -> None:
    # win-acme deleted the old certificate; going back to it could not start either.
    host, old, new = host_with_new()
    host.certificates = [c for c in host.certificates if c["thumbprint"] != old]
    host.restart_failures = 1
    result = run_action("xu_cert_swap", {"old_thumbprint": old, "new_thumbprint": new}, host)
    assert result["failed"] is True and result["rolled_back"] is False, result
    assert "were not rolled back" in result["msg"] and f"The settings name {new}" in result["msg"]
    assert len(host.calls) == 2 and new in host.files[TLS_FILE]
    assert [op["op"] for op in host.calls[1]] == ["cert_check", "file_write", "service_restart", "port_probe", "port_probe", "event_write"]

    # The next run finds the swap done and the service can be started again.
    again = run_action("xu_cert_swap", {"old_thumbprint": old, "new_thumbprint": new, "restart": "always"}, host)
    assert not again.get("failed") and again["restarted"] is True and again["served"]["web_https"]["thumbprint"] == new


# -- renew_reusing_key ----------------------------------------------------------------------------


def test_renewal_check_mode_apply_idempotent() -> None:
    host, old, _cert = swap_host()
    args = {"old_thumbprint": old, "renew_reusing_key": True}

    checked = run_action("xu_cert_swap", args, host, check_mode=True, diff=True)
    assert checked["changed"] is True and checked["renewed"] is True and checked["new_thumbprint"] is None, checked
    assert [r["new_value"] for r in checked["references"]] == [None, None] and "diff" not in checked
    assert len(host.calls) == 1 and host.archived == []
    assert host.calls[0][-1] == {"id": 7, "op": "journal_read", "args": {"name": RENEWALS_JOURNAL}}

    result = run_action("xu_cert_swap", args, host)
    assert not result.get("failed"), result
    new = result["new_thumbprint"]
    assert result["renewed"] is True and host.archived == [old] and new in host.thumbprints()
    assert len(host.calls) == 4  # read, renew, apply
    assert [op["op"] for op in host.calls[2]] == ["cert_renew_reuse_key", "journal_write"]
    # The old certificate is archived: no rollback to it is possible, so the restart runs without one.
    assert [op["op"] for op in host.calls[3]] == ["file_write", "service_restart", "port_probe", "port_probe", "event_write"]
    assert served_thumbprint(host, 8165) == new and result["served"]["web_https"]["thumbprint"] == new
    (record,) = json.loads(host.journals[RENEWALS_JOURNAL])["renewals"]
    assert record["old_thumbprint"] == old

    again = run_action("xu_cert_swap", args, host)
    assert again["changed"] is False and again["renewed"] is False and again["new_thumbprint"] == new, again
    assert len(host.calls) == 5


def test_renewal_failure_changes_nothing() -> None:
    host, old, _cert = swap_host()
    before = dict(host.files)
    host.certreq_failures = 1
    result = run_action("xu_cert_swap", {"old_thumbprint": old, "renew_reusing_key": True}, host)
    assert result["failed"] and "Renewing" in result["msg"] and "nothing was changed" in result["msg"] and "RPC server" in result["msg"]
    assert len(host.calls) == 2 and host.files == before and host.journals == {} and old in host.thumbprints()


def test_an_unfinished_renewal_is_finished_without_renewing_again() -> None:
    host, old, _cert = swap_host()
    host.errors["file_write"] = {"type": "IOException", "message": "The process cannot access the file"}
    result = run_action("xu_cert_swap", {"old_thumbprint": old, "renew_reusing_key": True}, host)
    assert result["failed"] and "IOException" in result["msg"]
    renewed = [t for t in host.thumbprints() if t != old]
    assert host.archived == [old] and len(renewed) == 1
    del host.errors["file_write"]
    result = run_action("xu_cert_swap", {"old_thumbprint": old, "renew_reusing_key": True}, host)
    assert not result.get("failed"), result
    assert result["renewed"] is False and result["new_thumbprint"] == renewed[0] and result["changed"] is True
    assert host.archived == [old]
    assert all(op["op"] != "cert_renew_reuse_key" for op in host.calls[-1])


def test_renewal_refuses_what_certreq_cannot_renew() -> None:
    host, old, _cert = swap_host(old_days_left=-1)
    result = run_action("xu_cert_swap", {"old_thumbprint": old, "renew_reusing_key": True}, host)
    assert result["failed"] and "a CA refuses to renew an expired certificate" in result["msg"]
    assert len(host.calls) == 1

    host, _old, _cert = swap_host()
    result = run_action("xu_cert_swap", {"old_thumbprint": OLD, "renew_reusing_key": True, "allow_no_reference": True}, host)
    assert result["failed"] and "no renewal of it is recorded" in result["msg"]


def test_secrets_are_masked_in_every_result() -> None:
    assert {name for name, spec in ActionModule.argument_spec().items() if spec.get("no_log")} == {"pfx_password", "pfx_content"}
    # A password that happens to be a word of the settings shows the masking at work.
    host, old, _cert = swap_host()
    cert, key = mint(FQDN)
    password = "ConfigServer"  # noqa: S105 - a test value
    result = run_action("xu_cert_swap", pfx_args(cert, key, password, old_thumbprint=old, grant_key_access=True), host, check_mode=True, diff=True)
    assert not result.get("failed"), result
    assert "ConfigServer" not in json.dumps(result) and '"********": {' in result["diff"][0]["after"]


def test_a_copy_without_its_key_is_repaired_from_the_pfx() -> None:
    host, old, _cert = swap_host()
    cert, key = mint(FQDN, sans=(FQDN, "xu01"), days_left=365)
    new = thumbprint_of(cert)
    host.add_certificate(cert, has_private_key=False)
    # Given by thumbprint alone it cannot be used: the store has no key for it.
    result = run_action("xu_cert_swap", {"old_thumbprint": old, "new_thumbprint": new}, host)
    assert result["failed"] and "has no private key" in result["msg"]
    # With its PFX the key comes back: imported, not refused.
    result = run_action("xu_cert_swap", pfx_args(cert, key, old_thumbprint=old, grant_key_access=True), host)
    assert not result.get("failed"), result
    assert result["imported"] is True and served_thumbprint(host, 8165) == new
    apply_ops = [op["op"] for op in host.calls[-1]]
    assert apply_ops[0] == "pfx_import"
    entry = host.certificate_entry(new)
    assert entry is not None and entry["has_private_key"]


def test_the_loser_of_two_swaps_says_what_it_did_and_did_not() -> None:
    """Another swap rewrote tls.json between this one's read and its write: the settings are not touched, and the
    result says that the PFX's certificate was imported all the same."""
    host, old, _cert = swap_host()
    cert, key = mint(FQDN)

    def other_swap_writes_first(stdin: bytes) -> None:
        if b'"pfx_import"' in stdin:
            host.files[TLS_FILE] = host.files[TLS_FILE] + " "

    intercept(host, other_swap_writes_first)
    result = run_action("xu_cert_swap", pfx_args(cert, key, old_thumbprint=old, grant_key_access=True), host)
    assert result["failed"] is True and result["changed"] is True and result["rolled_back"] is False
    assert "HashMismatch" in result["msg"] and "nothing had been changed" not in result["msg"]
    assert f"no setting had been changed, but {thumbprint_of(cert)} had been imported from the PFX" in result["msg"]
    assert result["imported_thumbprint"] == thumbprint_of(cert) and host.restarts == 0


RUN_JOURNAL = JournalRide("renew", "during", {"step": "started", "mode": "replace"}, 30)


@pytest.mark.parametrize("failing", ["event_write", "cert_remove"])
def test_the_journal_goes_once_the_new_certificate_is_served_whatever_fails_after(failing: str) -> None:
    # An event log entry that cannot be written, or an old certificate that cannot be removed, leaves a complete
    # renewal: the run's journal (its lease) must not outlive it.
    host, old, new = host_with_new()
    host.errors[failing] = {"type": "UnauthorizedAccessException", "message": "Access is denied."}
    args = {"old_thumbprint": old, "new_thumbprint": new, "remove_old": True, "run_id": "run-1"}
    steps = Steps(host)
    result = steps.run("xu_cert_swap", args, RUN_JOURNAL)
    assert not result.get("failed"), result
    assert "renew" not in host.journals and steps.agent.journal_present["renew"] is False
    names = [op["op"] for op in host.calls[1]]
    assert names.index("served_check") < names.index("journal_write", 1) < names.index("cert_remove")
    assert served_thumbprint(host, 8165) == new
    assert (old in host.thumbprints()) is (failing == "cert_remove")


def test_a_journal_left_by_a_failed_guard_is_reported_present() -> None:
    # The served check before the journal's removal fails: the renewal stands, the caller removes the journal.
    host, old, new = host_with_new()
    host.errors["served_check"] = {"type": "PreconditionFailed", "message": "port 8165 presents no certificate"}
    args = {"old_thumbprint": old, "new_thumbprint": new, "run_id": "run-1"}
    steps = Steps(host)
    steps.run("xu_cert_swap", args, RUN_JOURNAL)
    assert "renew" in host.journals and steps.agent.journal_present["renew"] is True
    assert any("The journal renew was kept" in w for w in steps.warnings), steps.warnings


def test_the_loser_of_two_aliases_of_one_server_imported_nothing_and_says_so() -> None:
    # Two inventory names for one server: the other alias's run wrote its journal between this run's read and its change.
    host, old, _cert = swap_host()
    steps = Steps(host)
    assert not steps.run("xu_tls_info", {}).get("failed")
    host.journals["renew"] = json.dumps({"run_id": "run-alias", "step": "started", "lease_expires": "2999-01-01T00:00:00Z"})
    new_cert, new_key = mint(FQDN)
    args = pfx_args(new_cert, new_key, old_thumbprint=old, grant_key_access=True)
    ride = JournalRide("renew", "during", {"step": "started", "mode": "replace"}, 30)
    result = steps.run("xu_cert_swap", {**args, "run_id": "run-1"}, ride)
    assert result["failed"] is True and result.get("changed") is not True, result
    assert "imported" not in result["msg"] and "imported_thumbprint" not in result, result["msg"]
    # The host holds what the other run left: its journal, and no certificate of this run.
    assert json.loads(host.journals["renew"])["run_id"] == "run-alias" and thumbprint_of(new_cert) not in host.thumbprints()


def test_a_certificate_that_ends_before_the_old_one_is_refused_unless_allowed_and_then_the_old_one_stays() -> None:
    host, old, _cert = swap_host(old_days_left=9)
    before = dict(host.files)
    # A PFX that expires in an hour, where the bound certificate has 9 days left.
    short_cert, short_key = mint(FQDN, sans=(FQDN, "xu01"), days_left=1 / 24)
    args = pfx_args(short_cert, short_key, old_thumbprint=old, remove_old=True, grant_key_access=True)
    for check_mode in (True, False):
        refused = run_action("xu_cert_swap", args, host, check_mode=check_mode)
        assert refused["failed"] is True and "before the one it replaces" in refused["msg"] and "allow_shorter" in refused["msg"]
        assert host.files == before and thumbprint_of(short_cert) not in host.thumbprints()
    allowed = run_action("xu_cert_swap", {**args, "allow_shorter": True}, host)
    assert not allowed.get("failed"), allowed
    assert served_thumbprint(host, 8165) == thumbprint_of(short_cert) and allowed["removed_old"] is False
    # The longer certificate stays in the store, whatever remove_old says.
    assert old in host.thumbprints()
