"""The renew playbook as operators call it: every variable as a string on the command line, as -e and AWX surveys send it."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
from invariants import baseline
from labtools import Lab
from test_renew_role import RESTART_DELAY, by_result, issue_pfx, renew, summaries, untouched

# Every variable of the role that is not a string, as a string.
STRING_TYPED = ("-e", "xu_renew_strict_san=true", "-e", "xu_renew_remove_old=true", "-e", "xu_renew_wait_timeout=120",
                "-e", "xu_renew_gate_auto_open_after=30", "-e", "xu_renew_gate_allow_from=")


@pytest.mark.lab
def test_force_false_as_a_string_renews_only_what_is_due(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "5", "--scenario", "mixed", "--restart-delay", RESTART_DELAY)
    bases = {host: baseline(lab, host) for host in lab.hosts}
    due = {"xu02", "xu03", "xu05"}
    run = renew(lab, tmp_path, "-e", "xu_renew_mode=replace", "-e", "xu_renew_force=false", "-e", "xu_renew_before_days=30",
                *STRING_TYPED, *issue_pfx(lab, tmp_path, set(lab.hosts)))
    assert run.rc == 0, run.stdout[-5000:] + run.stderr[-3000:]
    # "false" would be a true string in a condition: the healthy host stays untouched.
    assert by_result(summaries(run)) == {"renewed": due, "not_due": {"xu01"}, "skipped": {"xu04"}}
    assert untouched(lab, "xu01", bases["xu01"]) == []


@pytest.mark.lab
def test_before_days_as_a_string_is_a_number(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "2", "--restart-delay", RESTART_DELAY)
    # A healthy fleet's certificates have a year left: 400 days makes both due, in check mode nothing changes.
    run = renew(lab, tmp_path, "--check", "-e", "xu_renew_mode=reuse_key", "-e", "xu_renew_before_days=400", *STRING_TYPED)
    assert run.rc == 0, run.stdout[-5000:] + run.stderr[-3000:]
    assert by_result(summaries(run)) == {"would_renew": {"xu01", "xu02"}}
    assert "unreachable" not in run.stdout.lower().split("play recap")[0]


@pytest.mark.lab
@pytest.mark.parametrize(
    ("variable", "value"),
    [("xu_renew_gate_auto_open_after", "0"), ("xu_renew_before_days", "soon"), ("xu_renew_force", "maybe")],
)
def test_a_wrong_variable_is_named_and_nothing_changes(variable: str, value: str, lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "1", "--scenario", "mixed", "--restart-delay", RESTART_DELAY)
    base = baseline(lab, "xu01")
    run = renew(lab, tmp_path, "-e", "xu_renew_mode=reuse_key", "-e", "xu_renew_force=true", "-e", f"{variable}={value}")
    assert run.rc != 0
    assert variable in run.stdout + run.stderr
    assert untouched(lab, "xu01", base) == []


@pytest.mark.lab
def test_pfx_dir_finds_each_host_s_pfx(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "3", "--scenario", "mixed", "--restart-delay", RESTART_DELAY)
    # issue_pfx writes <certs>/<host>.pfx and hands a Jinja path; the folder alone must do the same.
    extra = issue_pfx(lab, tmp_path, {"xu02", "xu03"})
    secrets = [arg for arg in extra if arg.startswith("@")]
    run = renew(lab, tmp_path, "-e", "xu_renew_mode=replace", "-e", f"xu_renew_pfx_dir={tmp_path / 'certs'}", "-e", secrets[0])
    assert run.rc == 0, run.stdout[-5000:] + run.stderr[-3000:]
    assert by_result(summaries(run)) == {"renewed": {"xu02", "xu03"}, "not_due": {"xu01"}}
