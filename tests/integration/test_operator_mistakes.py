"""The playbooks as operators get them wrong: a mistyped variable, a missing or empty group, batches cut at a space,
--limit over a big group, a daily run with nothing due, a wrong WinRM password. Each is seen from outside: the run's rc
and output, and the lab's own record of every remote call."""

from __future__ import annotations

import base64
import json
import pathlib
from typing import Any

import pytest
import yaml
from labtools import REPO, Lab, PlaybookRun
from test_renew_role import PASSWORD, RESTART_DELAY

from xulab import control

RENEW = str(REPO / "playbooks" / "renew.yml")
REPORT = str(REPO / "playbooks" / "tls_report.yml")
# ansible-core 2.16 prints "ERROR! <message>", 2.19 and later "[ERROR]: ... <message>" and the keyword's origin.
MOST_LINES = 25


def play(lab: Lab, playbook: str, tmp_path: pathlib.Path, *extra: str) -> PlaybookRun:
    return lab.playbook(playbook, tmp_path=tmp_path, extra_args=("-f", "10", *extra))


def printed_summary(run: PlaybookRun) -> str:
    """The fleet summary's lines as one text (the callback wraps long lines)."""
    lines = next(entry["result"]["msg"] for entry in run.results if entry["task"] == "Print the fleet summary")
    return " ".join(" ".join(lines).split())


def remote_calls(lab: Lab) -> dict[str, int]:
    return {host: lab.remote_calls(host) for host in lab.hosts}


def refused_before_any_host(lab: Lab, run: PlaybookRun, before: dict[str, int], *expected: str) -> None:
    """The run failed at once, in a short output that says ``expected`` on one line, and no host saw a remote call."""
    output = run.stdout + run.stderr
    assert run.rc != 0, output[-3000:]
    for text in expected:
        assert any(text in line for line in output.splitlines()), f"{text!r} not on one line of:\n{output[-3000:]}"
    assert len(output.strip().splitlines()) <= MOST_LINES, output
    assert "TASK [" not in output
    assert remote_calls(lab) == before


@pytest.mark.lab
def test_a_mistyped_variable_stops_the_run_before_any_host_is_touched(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "2", "--scenario", "mixed", "--restart-delay", RESTART_DELAY)
    before = remote_calls(lab)
    run = play(lab, RENEW, tmp_path, "-e", "xu_renew_mode=reuse_key", "-e", "xu_renew_befor_days=400")
    refused_before_any_host(lab, run, before, "xu_renew_befor_days is not a variable of this collection (did you mean xu_renew_before_days?)")
    run = play(lab, RENEW, tmp_path, "-e", "xu_renew_mdoe=replace")
    refused_before_any_host(lab, run, before, "xu_renew_mdoe is not a variable of this collection (did you mean xu_renew_mode?)")
    run = play(lab, REPORT, tmp_path, "-e", "xu_report_fail_within_day=30")
    refused_before_any_host(lab, run, before,
                            "xu_report_fail_within_day is not a variable of this collection (did you mean xu_report_fail_within_days?)")
    # --limit (AWX's Limit) does not skip the check.
    run = play(lab, RENEW, tmp_path, "-e", "xu_renew_mode=reuse_key", "-e", "xu_renew_befor_days=400", "--limit", "xu01")
    refused_before_any_host(lab, run, before, "did you mean xu_renew_before_days?")


@pytest.mark.lab
def test_a_missing_or_empty_group_fails_the_run(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "2", "--scenario", "mixed", "--restart-delay", RESTART_DELAY)
    before = remote_calls(lab)
    for extra in ((), ("--limit", "xu01")):
        run = play(lab, RENEW, tmp_path, "-e", "xu_renew_mode=reuse_key", "-e", "xu_renew_hosts=xu_server", *extra)
        refused_before_any_host(lab, run, before, "xu_renew_hosts: the inventory has no group 'xu_server' (did you mean xu_servers?)")
        run = play(lab, REPORT, tmp_path, "-e", "xu_report_hosts=xu_server", *extra)
        refused_before_any_host(lab, run, before, "xu_report_hosts: the inventory has no group 'xu_server' (did you mean xu_servers?)")
    inventory = yaml.safe_load(lab.inventory.read_text())
    # A group without hosts, as an AWX inventory holds one (every group is a child of all).
    inventory["all"]["children"]["xu_empty"] = {}
    lab.inventory.write_text(yaml.safe_dump(inventory))
    run = play(lab, RENEW, tmp_path, "-e", "xu_renew_mode=reuse_key", "-e", "xu_renew_hosts=xu_empty")
    refused_before_any_host(lab, run, before, "xu_renew_hosts: the group 'xu_empty' has no hosts")
    # An inventory whose servers are in a group of another name, and the default group is not there at all.
    inventory["all"]["children"]["windows"] = inventory["all"]["children"].pop("xu_servers")
    lab.inventory.write_text(yaml.safe_dump(inventory))
    run = play(lab, RENEW, tmp_path, "-e", "xu_renew_mode=reuse_key")
    refused_before_any_host(lab, run, before, "xu_renew_hosts: the inventory has no group 'xu_servers'")
    run = play(lab, REPORT, tmp_path)
    refused_before_any_host(lab, run, before, "xu_report_hosts: the inventory has no group 'xu_servers'")


@pytest.mark.lab
def test_batches_cut_at_a_space_are_refused_before_any_host_is_read(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "2", "--scenario", "mixed", "--restart-delay", RESTART_DELAY)
    before = remote_calls(lab)
    # The shell hands ansible-playbook one argument; ansible-playbook ends the value at the space: "1," and a stray "3".
    run = play(lab, RENEW, tmp_path, "-e", "xu_renew_mode=reuse_key", "-e", "xu_renew_serial=1, 3")
    refused_before_any_host(lab, run, before, "xu_renew_serial '1,' has a comma without a batch size", "-e 'xu_renew_serial=1,3'")
    run = play(lab, RENEW, tmp_path, "-e", "xu_renew_mode=reuse_key", "-e", "xu_renew_serial=1,soon")
    refused_before_any_host(lab, run, before, "xu_renew_serial must be a batch size")


@pytest.mark.lab
def test_limit_prints_one_line_for_the_hosts_left_out(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "4", "--scenario", "mixed", "--restart-delay", RESTART_DELAY)
    for playbook, extra in ((RENEW, ("--check", "-e", "xu_renew_mode=reuse_key")), (REPORT, ())):
        run = play(lab, playbook, tmp_path, *extra, "--limit", "xu01")
        assert "NOT TARGETED  3 hosts of the group are outside --limit (AWX: Limit)" in run.stdout, run.stdout[-4000:]
        assert not [line for line in run.stdout.splitlines() if "not_targeted" in line and "TOTAL" not in line], run.stdout[-4000:]


@pytest.mark.lab
def test_a_daily_run_with_nothing_due_is_quiet(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "2", "--scenario", "healthy", "--restart-delay", RESTART_DELAY)
    run = play(lab, RENEW, tmp_path, "-e", "xu_renew_mode=reuse_key")
    assert run.rc == 0, run.stdout[-4000:]
    assert "TOTAL  2 hosts: 2 not_due" in run.stdout
    assert "Could not match supplied host pattern" not in run.stdout + run.stderr
    assert "[WARNING]" not in run.stdout + run.stderr


@pytest.mark.lab
def test_a_wrong_winrm_password_is_reported_as_authentication_failed(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "2", "--scenario", "healthy", "--expiring-in", "10", "--restart-delay", RESTART_DELAY)
    inventory = yaml.safe_load(lab.inventory.read_text())
    inventory["all"]["children"]["xu_servers"]["hosts"]["xu02"]["ansible_password"] = "not-the-password"  # noqa: S105
    lab.inventory.write_text(yaml.safe_dump(inventory))
    # The lab answers HTTP 401 as WinRM does; Ansible calls the host unreachable.
    renewal = play(lab, RENEW, tmp_path, "--check", "-e", "xu_renew_mode=reuse_key")
    assert renewal.rc != 0
    summary = printed_summary(renewal)
    assert "authentication failed: the host refused the connection's credentials (ansible_user, ansible_password):" in summary, summary
    assert "the specified credentials were rejected by the server" in summary, summary
    assert "Authentication failed, so not renewed" in renewal.stdout
    report = play(lab, REPORT, tmp_path)
    assert report.rc != 0
    table = printed_summary(report)
    assert "authentication failed: the host refused the connection's credentials" in table, table
    assert "FAILS 1 host: xu02" in table, table
    # The reason is on the host's own failed task.
    failed = [str(entry["result"].get("msg")) for entry in report.results if entry["host"] == "xu02" and entry["status"] == "failed"]
    assert any(msg.startswith("Authentication failed: the host refused the connection's credentials") for msg in failed), failed


@pytest.mark.lab
def test_relative_paths_are_the_user_s_playbook_s_not_the_collection_s_nor_the_working_directory_s(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    """A project (an AWX project, or a folder of playbooks run from elsewhere) with wrappers that import the collection's."""
    lab: Lab = lab_factory("--hosts", "2", "--scenario", "healthy", "--expiring-in", "10", "--restart-delay", RESTART_DELAY)
    project = tmp_path / "project"
    (project / "certs").mkdir(parents=True)
    (project / "renew.yml").write_text("- ansible.builtin.import_playbook: xtractuniversal.tls.renew\n")
    (project / "report.yml").write_text("- ansible.builtin.import_playbook: xtractuniversal.tls.tls_report\n")
    (project / "certs" / "xu01.pfx").write_bytes(base64.b64decode(control.request(lab.dir, "issue", host="xu01", password=PASSWORD)["pfx_b64"]))
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"xu_renew_pfx_password": PASSWORD}))
    # Run from the checkout, not from the project: the working directory is not where relative paths point.
    run = play(lab, str(project / "renew.yml"), tmp_path, "-e", "xu_renew_mode=replace", "-e", "xu_renew_pfx_dir=certs", "-e", f"@{secrets}")
    summary = printed_summary(run)
    assert "xu01 renewed" in summary, summary
    # xu02 has no file there: the message names the variable that was set, and the folder it was looked for in.
    assert f"the PFX {project}/certs/xu02.pfx (xu_renew_pfx_dir) does not exist on the controller" in summary, summary
    report_run = play(lab, str(project / "report.yml"), tmp_path, "-e", "xu_report_dir=reports")
    assert sorted(path.name for path in (project / "reports").iterdir()) == ["report.csv", "report.html", "report.json"], report_run.stdout[-3000:]
    assert not (REPO / "reports").exists()
