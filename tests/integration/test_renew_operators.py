"""The renew playbook as operators run it: variables as strings (-e, AWX surveys), --limit, a failed canary."""

from __future__ import annotations

import base64
import itertools
import json
import pathlib
from typing import Any

import pytest
import yaml
from invariants import baseline
from labtools import Lab, PlaybookRun
from test_renew_role import PASSWORD, RESTART_DELAY, by_result, issue_pfx, renew, summaries, untouched

from xulab import control

# Every variable of the role that is not a string, as a string.
STRING_TYPED = ("-e", "xu_renew_strict_san=true", "-e", "xu_renew_remove_old=true", "-e", "xu_renew_wait_timeout=120",
                "-e", "xu_renew_gate_auto_open_after=30", "-e", "xu_renew_gate_allow_from=")


@pytest.mark.lab
def test_force_false_as_a_string_renews_only_what_is_due(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "5", "--scenario", "mixed", "--restart-delay", RESTART_DELAY)
    bases = {host: baseline(lab, host) for host in lab.hosts}
    due = {"xu02", "xu03", "xu05"}
    # The batches as a survey answer: one string, which ansible-core alone would fail on with an unexpected exception.
    run = renew(lab, tmp_path, "-e", "xu_renew_mode=replace", "-e", "xu_renew_force=false", "-e", "xu_renew_before_days=30",
                "-e", json.dumps({"xu_renew_serial": "1, 1"}), *STRING_TYPED, *issue_pfx(lab, tmp_path, set(lab.hosts)))
    assert run.rc == 0, run.stdout[-5000:] + run.stderr[-3000:]
    # "false" would be a true string in a condition: the healthy host stays untouched.
    assert by_result(summaries(run)) == {"renewed": due, "not_due": {"xu01"}, "skipped": {"xu04"}}
    assert untouched(lab, "xu01", bases["xu01"]) == []
    # One host at a time: each restart is over before the next host's begins.
    restarts = [[e["ts"] for e in lab.events(host)[bases[host].events:] if e["type"] == "service"] for host in sorted(due)]
    assert all(restarts) and all(max(a) < min(b) for a, b in itertools.pairwise(restarts)), restarts
    assert run.stdout.count("PLAY [Renew the servers that are due") == len(due)


@pytest.mark.lab
def test_the_default_batches_are_a_canary_then_the_rest_whatever_the_mode(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    """Each host's steps are remote calls of one task: no mode needs small batches to keep its lockout short."""
    lab: Lab = lab_factory("--hosts", "5", "--scenario", "healthy", "--expiring-in", "10", "--restart-delay", RESTART_DELAY)
    bases = {host: baseline(lab, host) for host in lab.hosts}
    group_vars = lab.dir / "group_vars"
    group_vars.mkdir(exist_ok=True)
    batches = {}
    for strategy in ("documented", "minimal_outage"):
        (group_vars / "xu_servers.yml").write_text(yaml.safe_dump({"xu_renew_mode": "reuse_key", "xu_renew_strategy": strategy}))
        run = renew(lab, tmp_path, "--check")
        assert run.rc == 0, run.stdout[-5000:] + run.stderr[-3000:]
        assert by_result(summaries(run)) == {"would_renew": set(lab.hosts)}
        batches[strategy] = run.stdout.count("PLAY [Renew the servers that are due")
    assert batches == {"documented": 2, "minimal_outage": 2}
    assert all(untouched(lab, host, bases[host]) == [] for host in lab.hosts)


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
    [("xu_renew_gate_auto_open_after", "0"), ("xu_renew_before_days", "soon"), ("xu_renew_force", "maybe"), ("xu_renew_serial", "1,none")],
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


def failed_messages(run: PlaybookRun) -> dict[str, str]:
    return {e["host"]: e["result"]["msg"] for e in run.results if e["status"] == "failed"}


@pytest.mark.lab
def test_limit_to_a_blocked_host_fails_the_run_and_reports_the_rest_as_not_targeted(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "5", "--scenario", "mixed", "--restart-delay", RESTART_DELAY)
    # replace mode without a PFX: the expiring xu02 is due but blocked.
    run = renew(lab, tmp_path, "-e", "xu_renew_mode=replace", "--limit", "xu02")
    assert run.rc == 2, run.stdout[-4000:]
    assert list(failed_messages(run)) == ["xu02"]
    assert "xu_renew_pfx_path" in failed_messages(run)["xu02"]
    assert "TOTAL  1 host: 1 blocked" in run.stdout
    assert "NOT TARGETED  4 hosts of the group are outside --limit (AWX: Limit)" in run.stdout
    # localhost in the limit (as with the old summary play) changes nothing: the other hosts are not targeted, not unreachable.
    both = renew(lab, tmp_path, "-e", "xu_renew_mode=replace", "--limit", "localhost,xu02")
    assert both.rc == 2 and "TOTAL  1 host: 1 blocked" in both.stdout, both.stdout[-4000:]
    assert "NOT TARGETED  4 hosts of the group are outside --limit (AWX: Limit)" in both.stdout
    assert "unreachable" not in both.stdout.split("PLAY RECAP")[0]


@pytest.mark.lab
def test_a_failed_canary_still_reports_every_host(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "3", "--scenario", "healthy", "--expiring-in", "10", "--restart-delay", RESTART_DELAY)
    bases = {host: baseline(lab, host) for host in lab.hosts}
    lab.fault("xu01", certreq_fails=1)
    run = renew(lab, tmp_path, "-e", "xu_renew_mode=reuse_key")
    assert run.rc == 2
    # The table and the totals are printed, one host a line, under the default callback as under the yaml one.
    table = run.stdout.split("TASK [Print the fleet summary]", 1)[1]
    for host, result in (("xu01", "failed"), ("xu02", "not_attempted"), ("xu03", "not_attempted")):
        assert any(line.strip(' ",-').startswith(host) and result in line for line in table.splitlines()), table[:3000]
    assert "TOTAL  3 hosts: 1 failed, 2 not_attempted" in table
    assert set(failed_messages(run)) == {"xu01", "xu02", "xu03"}
    assert "the canary (xu01) failed" in failed_messages(run)["xu02"]
    for host in ("xu02", "xu03"):
        assert untouched(lab, host, bases[host]) == []


@pytest.mark.lab
def test_the_table_reads_one_line_per_host_under_the_default_callback(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "2", "--scenario", "mixed", "--restart-delay", RESTART_DELAY)
    default_callback = {"ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default", "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}
    run = renew(lab, tmp_path, "--check", "-e", "xu_renew_mode=reuse_key", env=default_callback)
    assert run.rc == 0, run.stdout[-4000:]
    table = run.stdout.split("TASK [Print the fleet summary]", 1)[1].split("TASK [", 1)[0]
    assert "\\n" not in table  # no JSON string with escaped line breaks
    rows = [line for line in table.splitlines() if line.strip().startswith('"xu0')]
    # What would change first, then what is left alone.
    assert len(rows) == 2 and "would_renew" in rows[0] and "not_due" in rows[1], table


@pytest.mark.lab
def test_a_dry_run_refuses_a_pfx_for_another_host_before_anything_is_written(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "2", "--scenario", "mixed", "--restart-delay", RESTART_DELAY)  # xu02 expires soon
    bases = {host: baseline(lab, host) for host in lab.hosts}
    certs = tmp_path / "certs"
    certs.mkdir()
    answer = control.request(lab.dir, "issue", host="xu02", password=PASSWORD, san=["xu09.lab.example"])
    (certs / "xu02.pfx").write_bytes(base64.b64decode(answer["pfx_b64"]))
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"xu_renew_pfx_password": PASSWORD}))
    args = ("-e", "xu_renew_mode=replace", "-e", f"xu_renew_pfx_dir={certs}", "-e", f"@{secrets}")
    for check in (("--check",), ()):
        run = renew(lab, tmp_path, *check, *args)
        assert run.rc == 2, run.stdout[-4000:]
        reason = summaries(run)["xu02"]["reason"]
        assert summaries(run)["xu02"]["result"] == "blocked"
        assert "the new certificate cannot be used" in reason and "does not name" in reason and "xu_renew_strict_san" in reason
        assert PASSWORD not in run.stdout + run.stderr
        # Refused in the assessment: not even the journal was written.
        assert untouched(lab, "xu02", bases["xu02"]) == []
        assert not lab.state("xu02")["journals"]


@pytest.mark.lab
def test_an_unreachable_host_is_reported_with_its_error_and_fails_the_run(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "2", "--scenario", "mixed", "--restart-delay", RESTART_DELAY)
    inventory = yaml.safe_load(lab.inventory.read_text())
    # A server whose WinRM does not answer: nothing listens on that loopback address.
    inventory["all"]["children"]["xu_servers"]["hosts"]["xu99"] = {"ansible_host": "127.0.0.9", "ansible_winrm_connection_timeout": 3}
    lab.inventory.write_text(yaml.safe_dump(inventory))
    run = renew(lab, tmp_path, "--check", "-e", "xu_renew_mode=reuse_key")
    assert run.rc == 2, run.stdout[-4000:]
    table = run.stdout.split("TASK [Print the fleet summary]", 1)[1]
    assert "TOTAL  3 hosts: 1 unreachable, 1 would_renew, 1 not_due" in table
    message = failed_messages(run)
    assert list(message) == ["xu99"]
    assert message["xu99"].startswith("Unreachable, so not renewed: could not be reached: ")


def lose(lab: Lab, host: str) -> None:
    """The host is lost once its renewal begins (a site gone): the connection drops after the gate's closing call, and
    again at every read after it (its first discover is the assessment's, which it answers)."""
    lab.fault(host, drop_connection="fw_set")
    lab.fault(host, drop_connection="discover@2")
    for _repeat in range(8):
        lab.fault(host, drop_connection="discover")


def renew_artifact(run: PlaybookRun) -> dict[str, Any]:
    """The xu_renew artifact (set_stats), as AWX keeps it: every host's summary."""
    data: dict[str, Any] = {}
    for entry in run.results:
        data.update(entry["result"].get("ansible_stats", {}).get("data", {}).get("xu_renew", {}))
    return data


@pytest.mark.lab
def test_a_lost_canary_stops_the_rest_and_a_host_lost_later_does_not(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    """A server lost mid-renewal: as the canary, nothing after it is attempted (nothing was proven); in a later batch,
    the others of its batch are renewed. Either way every host is in the summary and the AWX artifact, and the run fails."""
    lab: Lab = lab_factory("--hosts", "3", "--scenario", "healthy", "--expiring-in", "10", "--restart-delay", RESTART_DELAY)
    bases = {host: baseline(lab, host) for host in lab.hosts}
    lose(lab, "xu01")
    first = renew(lab, tmp_path, "-e", "xu_renew_mode=reuse_key")
    assert first.rc == 2, first.stdout[-4000:]
    assert by_result(summaries(first)) == {"unreachable": {"xu01"}, "not_attempted": {"xu02", "xu03"}}, summaries(first)
    assert "TOTAL  3 hosts: 1 unreachable, 2 not_attempted" in first.stdout
    assert set(renew_artifact(first)) == {"xu01", "xu02", "xu03"}
    assert not untouched(lab, "xu02", bases["xu02"]) and not untouched(lab, "xu03", bases["xu03"])

    lab.reset()
    lose(lab, "xu03")
    second = renew(lab, tmp_path, "-e", "xu_renew_mode=reuse_key")
    assert second.rc == 2, second.stdout[-4000:]
    assert by_result(summaries(second)) == {"renewed": {"xu01", "xu02"}, "unreachable": {"xu03"}}, summaries(second)
    assert "TOTAL  3 hosts: 1 unreachable, 2 renewed" in second.stdout
    assert set(renew_artifact(second)) == {"xu01", "xu02", "xu03"}
