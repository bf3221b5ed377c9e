"""A refused login is reported as "authentication failed", not as a host that does not answer."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleConnectionFailure

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._unreachable import unreachable_reason
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._fleet import fleet_report
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.report._tls_report import host_report
from support.action import run_action
from support.fake_host import FakeHost

# What the connection plugins say, as ansible-core 2.19+ hands it to a task's result ("Task failed: " first).
REFUSED = (
    "Task failed: basic: the specified credentials were rejected by the server",
    "ntlm: the specified credentials were rejected by the server",
    "Kerberos auth failure for principal xuadmin@EXAMPLE.COM: kinit: Password incorrect while getting initial credentials",
    "failed to authenticate with the server: Failed to authenticate the user xuadmin with ntlm",
    "Failed to connect to the host via ssh: xuadmin@xu01: Permission denied (publickey,password).",
)
SILENT = (
    "ntlm: HTTPConnectionPool(host='127.0.0.9', port=5985): Max retries exceeded with url: /wsman (Caused by NewConnectionError)",
    "the connection attempt timed out",
)


@pytest.mark.parametrize("message", REFUSED)
def test_a_refused_login_is_an_authentication_failure(message: str) -> None:
    assert unreachable_reason(message).startswith("authentication failed: ")
    assert message.removeprefix("Task failed: ") in unreachable_reason(message)


@pytest.mark.parametrize("message", SILENT)
def test_a_host_that_does_not_answer_could_not_be_reached(message: str) -> None:
    assert unreachable_reason(message) == f"could not be reached: {message}"


def test_the_fleet_summary_and_the_report_say_authentication_failed() -> None:
    host = FakeHost()

    def refuse(command: str, stdin: bytes) -> tuple[int, str, str]:
        raise AnsibleConnectionFailure(REFUSED[1])

    host.transport = refuse  # type: ignore[method-assign]
    assessment = run_action("xu_renew", {"phase": "assess", "options": {"xu_renew_mode": "reuse_key"}}, host)
    assert assessment["unreachable"] is True
    summary = assessment["summary"]
    assert summary["result"] == "unreachable" and summary["reason"].startswith("authentication failed: ")
    fleet = fleet_report({"xu01": summary}, ["xu01"], ["xu01"])
    assert fleet["failures"]["xu01"].startswith("Authentication failed, so not renewed: ")
    assert any("authentication failed" in line for line in fleet["lines"])
    row = host_report("xu01", {"unreachable": True, "msg": REFUSED[1]}, targeted=True, expiring_days=30)
    assert row.status == "unreachable" and row.problems[0].startswith("authentication failed: ")
