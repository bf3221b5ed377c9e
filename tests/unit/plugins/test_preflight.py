"""The check the playbooks make before any host is touched: unknown variable names, the target group, the batches."""

from __future__ import annotations

from typing import Any

import pytest
from ansible import context
from ansible.errors import AnsibleFilterError

from ansible_collections.xtractuniversal.tls.plugins.filter.preflight import preflight

GROUPS = {"all": ["xu01", "xu02"], "ungrouped": [], "xu_servers": ["xu01", "xu02"], "xu_empty": [], "windows": ["xu01", "xu02"]}


def error_of(group: Any = None, playbook: str = "renew", names: tuple[str, ...] = (), **keywords: Any) -> str:
    with pytest.raises(AnsibleFilterError) as raised:
        preflight(group, playbook, GROUPS, list(names), **keywords)
    message = str(raised.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("typo", "meant"),
    [("xu_renew_befor_days", "xu_renew_before_days"), ("xu_renew_mdoe", "xu_renew_mode"),
     ("xu_report_fail_within_day", "xu_report_fail_within_days"), ("xu_renew_pfx_passwd", "xu_renew_pfx_password")],
)
@pytest.mark.parametrize("playbook", ["renew", "report"])
def test_an_unknown_variable_is_named_with_the_closest_known_one(typo: str, meant: str, playbook: str) -> None:
    message = error_of(playbook=playbook, names=("xu_renew_mode", typo))
    assert f"{typo} is not a variable of this collection (did you mean {meant}?)" in message


def test_every_variable_of_the_collection_passes() -> None:
    names = ("xu_renew_mode", "xu_renew_serial", "xu_renew_hosts", "xu_renew_fail_on_blocked", "xu_renew_credential_pfx_content",
             "xu_renew_pfx_password", "xu_report_fail_within_days", "xu_report_dir", "xu_report_hosts", "xu_other_thing", "ansible_host")
    assert preflight(None, "renew", GROUPS, list(names)) == "xu_servers"
    assert preflight("", "report", GROUPS, list(names)) == "xu_servers"


def test_a_missing_group_is_named_with_the_closest_one() -> None:
    assert "xu_renew_hosts: the inventory has no group 'xu_server' (did you mean xu_servers?)" in error_of("xu_server")
    assert "xu_report_hosts: the inventory has no group 'xu_server'" in error_of("xu_server", "report")
    # An AWX inventory without the default group.
    without = {"all": ["xu01"], "ungrouped": [], "windows": ["xu01"]}
    with pytest.raises(AnsibleFilterError, match="no group 'xu_servers' \\(its groups: windows\\)"):
        preflight(None, "renew", without, [])


def test_an_empty_group_fails() -> None:
    assert "xu_renew_hosts: the group 'xu_empty' has no hosts" in error_of("xu_empty")


def test_the_group_comes_back() -> None:
    assert preflight("windows", "renew", GROUPS, []) == "windows"
    assert preflight(" windows ", "report", GROUPS, []) == "windows"


@pytest.mark.parametrize("serial", ["1,", "1,,3", "0", "1,soon"])
def test_batches_ansible_cannot_use_are_refused_before_any_host_is_read(serial: str) -> None:
    assert "xu_renew_serial" in error_of(serial=serial)


def test_the_report_has_no_batches() -> None:
    assert preflight(None, "report", GROUPS, [], serial="1,") == "xu_servers"


def test_a_value_cut_at_a_space_is_explained() -> None:
    # -e "xu_renew_serial=1, 3": ansible-playbook makes xu_renew_serial "1," and _raw_params "3".
    message = error_of(serial="1,", raw_params="3")
    assert "an extra var without a name ('3')" in message and "-e 'xu_renew_serial=1,3'" in message


def test_every_problem_at_once_in_one_line() -> None:
    message = error_of("xu_server", names=("xu_renew_befor_days",), serial="1,")
    assert message.count(";") >= 2 and "xu_renew_befor_days" in message and "xu_server" in message and "xu_renew_serial" in message


def test_the_filter_takes_what_ansible_hands_it() -> None:
    with pytest.raises(AnsibleFilterError, match="groups"):
        preflight(None, "renew", ["xu_servers"], [])
    with pytest.raises(AnsibleFilterError, match="names"):
        preflight(None, "renew", GROUPS, "xu_renew_mode")
    with pytest.raises(AnsibleFilterError, match="playbooks"):
        preflight(None, "site", GROUPS, [])


def test_a_syntax_check_has_no_inventory_to_judge(monkeypatch: pytest.MonkeyPatch) -> None:
    """ansible-playbook --syntax-check (ansible-lint runs it) templates hosts with an empty inventory: only the names count."""
    monkeypatch.setattr(context, "CLIARGS", {"syntax": True})
    assert preflight(None, "renew", {"all": [], "ungrouped": []}, []) == "xu_servers"
    with pytest.raises(AnsibleFilterError, match="xu_renew_befor_days"):
        preflight(None, "renew", {"all": [], "ungrouped": []}, ["xu_renew_befor_days"])
