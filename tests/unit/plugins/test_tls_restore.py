from __future__ import annotations

from support.action import run_action
from support.fake_host import FakeHost, tls_json

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
