"""xu_tls_restore: input checks, the no-op run, and restores against a host whose changes take effect."""

from __future__ import annotations

from typing import Any

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._certificate import thumbprint_of as der_thumbprint
from support.action import run_action
from support.certs import der, mint
from support.fake_changes import ChangingFakeHost, sha256_text
from support.fake_host import INSTALL_DIR, FakeHost, intercept, tls_json

BACKUP = "C:\\Program Files\\XtractUniversal\\config\\servers\\tls.json.20261126T000000Z.bak"


def test_relative_backup_fails_before_any_remote_call() -> None:
    host = FakeHost()
    result = run_action("xu_tls_restore", {"backup_file": "tls.json.bak"}, host)
    assert result["failed"] and "absolute Windows path" in result["msg"]
    assert host.calls == []


def test_missing_backup_is_reported_after_the_read() -> None:
    host = FakeHost(files={"config\\servers\\tls.json": tls_json(web="AB" * 20, config="AB" * 20)})
    result = run_action("xu_tls_restore", {"backup_file": BACKUP}, host)
    assert result["failed"] and "does not exist on the host" in result["msg"]
    assert len(host.calls) == 1
    assert host.calls[0][0]["args"]["files"][-1] == BACKUP


def test_identical_file_is_not_changed_and_check_mode_reports_a_restore() -> None:
    content = tls_json(web="AB" * 20, config="AB" * 20)
    host = FakeHost(files={"config\\servers\\tls.json": content, BACKUP: content})
    result = run_action("xu_tls_restore", {"backup_file": BACKUP}, host)
    assert result["changed"] is False and result["restored"] is False
    assert len(host.calls) == 1

    host.files["config\\servers\\tls.json"] = tls_json(protocol="HttpUnrestricted")
    result = run_action("xu_tls_restore", {"backup_file": BACKUP}, host, check_mode=True, diff=True)
    assert result["changed"] is True and result["restored"] is True and result["restarted"] is False
    assert "HttpsUnrestricted" in result["diff"]["after"] and "HttpUnrestricted" in result["diff"]["before"]
    assert len(host.calls) == 2


# -- against a host whose changes take effect -------------------------------------------------------

TLS = "config\\servers\\tls.json"
TLS_PATH = f"{INSTALL_DIR}\\{TLS}"
BACKUP_KEY = "config\\servers\\tls.json.20261126T000000Z.bak"


def restore_host(*, backup_readable: bool = True) -> tuple[ChangingFakeHost, str, str]:
    """Certificate A bound and served; the backup binds certificate B (whose key the service may not read)."""
    host = ChangingFakeHost()
    old = host.add_certificate(mint("xu01.example.com")[0])
    other = host.add_certificate(mint("xu01.example.com")[0], acl=None if backup_readable else [])
    host.files[TLS] = tls_json(web=old, config=old)
    host.files[BACKUP_KEY] = tls_json(web=other, config=other)
    assert host.start_service()
    return host, old, other


def ops(call: list[dict[str, Any]]) -> list[str]:
    return [str(op["op"]) for op in call]


def test_restore_restarts_and_verifies_through_the_shared_machinery() -> None:
    host, _old, other = restore_host()
    result = run_action("xu_tls_restore", {"backup_file": BACKUP}, host)
    assert not result.get("failed"), result
    assert result["changed"] and result["restored"] and result["restarted"] and result["rolled_back"] is False
    assert ops(host.calls[1]) == ["file_restore", "service_restart", "port_probe", "port_probe", "event_write"]
    before = host.calls[0]  # the read
    kept = host.calls[1][0]["args"]["keep_current_path"]
    assert host.calls[1][0]["args"] == {"backup_path": BACKUP, "path": TLS_PATH, "keep_current_path": kept}
    assert kept.startswith(TLS_PATH + ".") and kept.endswith(".bak") and result["current_backup_file"] == kept
    assert result["served"] == {"web_https": other, "config_server": other}
    assert host.file(TLS) == host.file(BACKUP_KEY)
    # The file it replaced is kept, so an edit made after the backup is not lost.
    assert host.file(kept) is not None and host.file(kept) != host.file(TLS) and before
    # No option turns that copy off: the module decides.
    refused = run_action("xu_tls_restore", {"backup_file": BACKUP, "backup": False}, restore_host()[0])
    assert refused["failed"] is True and "backup" in refused["msg"]


def test_a_failed_restart_rolls_forward_to_the_content_before() -> None:
    host, old, other = restore_host(backup_readable=False)
    before = host.file(TLS)
    result = run_action("xu_tls_restore", {"backup_file": BACKUP}, host)
    assert result["failed"] is True and result["rolled_back"] is True, result
    assert f"Restoring {TLS_PATH} from {BACKUP} failed: the service did not come back" in result["msg"] and "rolled back" in result["msg"]
    assert result["changed"] is False and result["path"] == TLS_PATH and result["backup_file"] == BACKUP
    assert len(host.calls) == 3
    assert ops(host.calls[2]) == ["file_write", "service_restart", "port_probe", "port_probe", "event_write"]
    # The content read before is written back only over the restored backup (guarded by its hash).
    assert host.calls[2][0]["args"] == {"path": TLS_PATH, "content": before, "bom": False, "backup_path": None,
                                        "expected_sha256": sha256_text(host.file(BACKUP_KEY) or "")}
    assert host.file(TLS) == before
    assert host.service_state == "Running" and host.restarts == 2
    assert {port: der_thumbprint(der(cert)) for port, cert in host.served.items() if cert is not None} == {8165: old, 8064: old}
    assert other in [c["thumbprint"] for c in host.certificates]


def test_a_roll_forward_does_not_overwrite_a_file_changed_meanwhile() -> None:
    host, _old, _other = restore_host()
    host.restart_failures = 1

    def edited_before_the_roll_forward(stdin: bytes) -> None:
        if len(host.calls) == 2:
            host.files[TLS] = "{}"

    intercept(host, edited_before_the_roll_forward)
    result = run_action("xu_tls_restore", {"backup_file": BACKUP}, host)
    assert result["failed"] is True and result["rolled_back"] is False
    assert any(p.startswith("file_write: HashMismatch") for p in result["rollback_problems"])
    assert host.file(TLS) == "{}"


def test_unknown_settings_in_the_backup_are_refused_before_anything_changes() -> None:
    host, _old, other = restore_host()
    host.files[BACKUP_KEY] = tls_json(protocol="HttpsWithClientCertificates", web=other, config=other)
    files = dict(host.files)
    result = run_action("xu_tls_restore", {"backup_file": BACKUP}, host)
    assert result["failed"] is True
    assert 'WebServer.Protocol is "HttpsWithClientCertificates", not one of' in result["msg"] and "settings_map.web_protocol" in result["msg"]
    assert len(host.calls) == 1 and host.files == files and host.restarts == 0


def test_a_partial_read_is_refused_before_anything_changes() -> None:
    host, _old, _other = restore_host()
    host.errors["cert_list"] = {"type": "CryptographicException", "message": "Keyset does not exist"}
    files = dict(host.files)
    result = run_action("xu_tls_restore", {"backup_file": BACKUP}, host)
    assert result["failed"] is True and "could not be read (cert_list: CryptographicException" in result["msg"]
    assert len(host.calls) == 1 and host.files == files and host.restarts == 0
