"""Each change leaves an entry in the host's Application event log, in a call the module makes anyway."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import XuError
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._eventlog import (
    CERTIFICATE_SWAPPED,
    CHANGE_ROLLED_BACK,
    MAX_MESSAGE,
    OLD_CERTIFICATE_REMOVED,
    EventNote,
    run_id_of,
)
from support.action import run_action
from support.certs import mint
from support.fake_swap import FQDN, make_pfx, swap_host, thumbprint_of

PASSWORD = "event-log-test-password"  # noqa: S105 - a test value


def pfx_args(cert: Any, key: Any, **extra: Any) -> dict[str, Any]:
    return {"pfx_content": base64.b64encode(make_pfx(cert, key, PASSWORD)).decode(), "pfx_password": PASSWORD, **extra}


def test_a_swap_and_the_removal_each_leave_an_entry_with_thumbprints_and_run_id() -> None:
    host, old, _cert = swap_host()
    cert, key = mint(FQDN, sans=(FQDN,), days_left=365)
    new = thumbprint_of(cert)
    args = pfx_args(cert, key, old_thumbprint=old, remove_old=True, grant_key_access=True, run_id="awx-4711")
    checked = run_action("xu_cert_swap", args, host, check_mode=True)
    assert checked["changed"] and host.event_log == []  # check mode writes nothing, not even a log entry
    result = run_action("xu_cert_swap", args, host)
    assert not result.get("failed"), result
    swapped, removed = host.event_log
    assert (swapped["event_id"], swapped["entry_type"]) == (CERTIFICATE_SWAPPED, "Information")
    assert swapped["message"].startswith(f"Certificate {old} replaced by {new}: 1 settings file(s) now name it; imported from a PFX")
    for line in (f"old_thumbprint: {old}", f"new_thumbprint: {new}", "run_id: awx-4711", "module: xtractuniversal.tls.xu_cert_swap"):
        assert line in swapped["message"].split("\r\n")
    assert (removed["event_id"], "run_id: awx-4711") == (OLD_CERTIFICATE_REMOVED, removed["message"].split("\r\n")[-2])
    assert PASSWORD not in str(host.event_log)
    # Nothing changes, nothing is logged.
    again = run_action("xu_cert_swap", args, host)
    assert again["changed"] is False and len(host.event_log) == 2


def test_a_rollback_leaves_a_warning_entry_with_the_reason() -> None:
    host, old, _cert = swap_host()
    cert, key = mint(FQDN, sans=(FQDN,), days_left=365)
    host.restart_failures = 1
    result = run_action("xu_cert_swap", pfx_args(cert, key, old_thumbprint=old, grant_key_access=True), host)
    assert result["failed"] and result["rolled_back"] is True
    # Each call's entry says what that call did: the change and restart, then the rollback.
    applied, entry = host.event_log
    assert applied["event_id"] == CERTIFICATE_SWAPPED
    assert (entry["event_id"], entry["entry_type"]) == (CHANGE_ROLLED_BACK, "Warning")
    assert entry["message"].startswith(f"Rolled back: Certificate {old} replaced by") and "Reason: the service did not come back" in entry["message"]


def test_an_entry_that_cannot_be_written_is_a_warning_not_a_failure() -> None:
    host, old, _cert = swap_host()
    cert, key = mint(FQDN, sans=(FQDN,), days_left=365)
    host.errors["event_write"] = {"type": "SecurityException", "message": "The source was not found, but some or all event logs could not be searched."}
    result = run_action("xu_cert_swap", pfx_args(cert, key, old_thumbprint=old, grant_key_access=True), host)
    assert not result.get("failed") and result["changed"], result
    assert any("event log entry was not written (SecurityException" in warning for warning in result["warnings"])


@pytest.mark.parametrize("run_id", ["has space", "x" * 65, "semi;colon", "über"])
def test_a_bad_run_id_fails_before_the_host_is_contacted(run_id: str) -> None:
    host, old, _cert = swap_host()
    cert, key = mint(FQDN, sans=(FQDN,), days_left=365)
    result = run_action("xu_cert_swap", pfx_args(cert, key, old_thumbprint=old, run_id=run_id), host)
    assert result["failed"] and "run_id" in result["msg"] and host.calls == []
    assert result["failed"] and host.event_log == []


def test_run_ids_are_kept_or_made_once() -> None:
    assert run_id_of({"run_id": "20261128T120000Z-abc"}) == "20261128T120000Z-abc"
    made = run_id_of({})
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", made) and run_id_of({"run_id": ""}) != made
    with pytest.raises(XuError):
        run_id_of({"run_id": "a/b"})


def test_a_long_reason_is_cut_to_what_the_log_takes() -> None:
    note = EventNote("xu_cert_swap", "r1", CERTIFICATE_SWAPPED, "s")
    message = note.rolled_back("x" * 40000).args["message"]
    assert len(message) == MAX_MESSAGE and message.endswith("...")
