"""xu_tls_info against the lab, over Basic and over NTLM with message encryption."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest
from labtools import REPO, Lab

INFO = [{"name": "info", "xtractuniversal.tls.xu_tls_info": {}, "register": "info"}]


def test_mixed_fleet_over_basic(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "5", "--scenario", "mixed", "--auth", "basic")
    before = {host: lab.host_files(host) for host in lab.hosts}
    calls_before = {host: lab.remote_calls(host) for host in lab.hosts}

    run = lab.playbook(INFO, tmp_path=tmp_path)
    assert run.rc == 0, run.stdout + run.stderr

    for host in lab.hosts:
        result = run.of(host, "info")
        state = lab.state(host)
        # One remote call per host, as the lab counted it.
        assert lab.remote_calls(host) - calls_before[host] == 1
        # Read-only: not a byte changed on the host.
        assert lab.host_files(host) == before[host]
        assert result["changed"] is False
        assert result["installed"] is True
        assert result["fqdn"] == state["fqdn"]
        assert result["product"]["version"] == "6.8.1.2"
        assert result["service"]["state"] == state["service"]["state"] == "Running"
        served = {listener["port"]: listener for listener in state["service"]["listeners"]}
        store = {c["thumbprint"]: c for c in state["certificates"]}
        web = result["web_server"]
        if web["tls"]:
            assert served[8165]["thumbprint"] == result["served"]["web_https"]["thumbprint"]
            assert web["certificate"]["in_store"] == (web["certificate_thumbprint"] in store)
        else:
            assert 8065 in served and served[8065]["scheme"] == "http"
            assert result["served"]["web_http"]["answering"] is True
            assert result["served"]["web_http"]["http_status"] == 200

    problems = {host: run.of(host, "info")["problems"] for host in lab.hosts}
    # The mixed scenario: healthy, expiring soon, expired, TLS off, bound certificate missing.
    assert problems["xu01"] == []
    assert any("expires in" in p for p in problems["xu02"])
    assert any("expired on" in p for p in problems["xu03"])
    assert "the web server serves plain HTTP (TLS is off)" in problems["xu04"]
    assert any("not in LocalMachine\\My" in p for p in problems["xu05"])
    xu05 = run.of("xu05", "info")["web_server"]["certificate"]
    # Gone from the store, but still served until the next restart: details come from the port.
    assert xu05["in_store"] is False and xu05["subject"].startswith("CN=xu05")
    # Every problem is also a warning that names the host.
    assert "xu02: " + problems["xu02"][0] in run.stderr + run.stdout


def test_check_mode_reports_the_same(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "2", "--scenario", "healthy")
    normal = lab.playbook(INFO, tmp_path=tmp_path)
    checked = lab.playbook(INFO, tmp_path=tmp_path, check=True)
    assert normal.rc == checked.rc == 0
    for host in lab.hosts:
        a, b = normal.of(host, "info"), checked.of(host, "info")
        assert a["web_server"] == b["web_server"]
        assert b["changed"] is False


def test_ntlm_with_message_encryption(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "2", "--scenario", "healthy", "--auth", "ntlm")
    inventory = lab.inventory.read_text()
    assert "ntlm" in inventory
    run = lab.playbook(INFO, tmp_path=tmp_path)
    assert run.rc == 0, run.stdout + run.stderr
    for host in lab.hosts:
        result = run.of(host, "info")
        assert result["problems"] == []
        assert result["web_server"]["certificate"]["key_readable_by_service"] is True
        calls = lab.events(host, "remote_call")
        assert len(calls) == 1
        assert calls[0]["ops"] == [
            "discover", "cert_list", "fw_get", "task_get", "fw_get", "task_get", "port_probe", "port_probe", "port_probe", "journal_read",
        ]


def test_probes_with_the_host_name(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "1", "--scenario", "healthy")
    fqdn = lab.info["hosts"][0]["fqdn"]
    run = lab.playbook([{"name": "info", "xtractuniversal.tls.xu_tls_info": {"fqdn": fqdn}}], tmp_path=tmp_path)
    result = run.of("xu01", "info")
    assert result["problems"] == [] and result["fqdn"] == fqdn
    assert result["served"]["web_https"]["http_status"] == 200
    assert result["served"]["web_https"]["thumbprint"] == result["web_server"]["certificate_thumbprint"]


def test_bad_arguments_touch_nothing(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "1", "--scenario", "healthy")
    run = lab.playbook([{"name": "info", "xtractuniversal.tls.xu_tls_info": {"product": "sap_gui"}}], tmp_path=tmp_path)
    assert run.rc != 0
    result = run.of("xu01", "info")
    assert result["_status"] == "failed"
    assert "product" in result["msg"] and "sap_gui" in result["msg"]
    assert lab.remote_calls("xu01") == 0


def test_winrm_password_never_leaks(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "1", "--scenario", "healthy")
    password = lab.info["password"]
    run = lab.playbook(INFO, tmp_path=tmp_path, verbosity=5)
    assert run.rc == 0, run.stdout + run.stderr
    assert password not in run.stdout + run.stderr
    assert password not in json.dumps(run.results)
    host_dir = lab.dir / "hosts" / "xu01"
    for path in host_dir.rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path
    assert password not in (lab.dir / "lab.log").read_text()


def test_demo_playbook_prints_the_fleet_summary(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "5", "--scenario", "mixed")
    run = lab.playbook(str(REPO / "playbooks" / "tls_report.yml"), tmp_path=tmp_path)
    # The mixed fleet has an expired certificate and a server with TLS off: by default the report fails for them.
    assert run.rc == 2, run.stdout + run.stderr
    # One line per list item, run once by the group's first host (no localhost play, so --limit cannot drop it): the
    # counts first, the hosts that fail the run, then the table.
    summary = run.of("xu01", "Print the fleet summary")["msg"]
    assert summary[0].startswith("TOTAL  5 hosts: ") and summary[1].startswith("FAILS  "), summary
    header = summary.index(next(line for line in summary if line.startswith("HOST")))
    assert summary[header].split() == ["HOST", "STATUS", "PROTOCOL", "THUMBPRINT", "NOT", "AFTER", "DAYS", "LEFT", "PROBLEMS"]
    rows = {line.split()[0]: line for line in summary[header + 1 :] if line and not line.startswith((" ", "NOTE"))}
    assert set(rows) == set(lab.hosts)
    assert "http_unrestricted" in rows["xu04"]
    problem_lines = [line.strip() for line in summary if line.startswith(" ")]
    assert "- the web server serves plain HTTP (TLS is off)" in problem_lines
    xu01 = run.of("xu01", "Read the TLS state")
    assert xu01["web_server"]["certificate_thumbprint"] in rows["xu01"]


@pytest.mark.parametrize("product", ["board_connector", "yunio"])
def test_other_product_not_installed(lab_factory: Any, tmp_path: pathlib.Path, product: str) -> None:
    lab: Lab = lab_factory("--hosts", "1", "--scenario", "healthy")
    run = lab.playbook([{"name": "info", "xtractuniversal.tls.xu_tls_info": {"product": product}}], tmp_path=tmp_path)
    assert run.rc == 0, run.stdout + run.stderr
    result = run.of("xu01", "info")
    assert result["installed"] is False
    assert any("not installed" in p for p in result["problems"])


def test_a_partial_read_is_a_problem_not_a_failure(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "1", "--scenario", "healthy")
    lab.fault("xu01", fail_primitive="cert_list")
    run = lab.playbook(INFO, tmp_path=tmp_path)
    assert run.rc == 0, run.stdout + run.stderr
    result = run.of("xu01", "info")
    assert result["problems"][0].startswith("cert_list: UnauthorizedAccessException")
    assert result["web_server"]["certificate"]["in_store"] is False
