"""The collection over Ansible's ssh connection to Win32-OpenSSH with PowerShell as the shell (the lab's --connection ssh).

Every call goes through the host's SSH endpoint (the lab logs each remote call with the endpoint it came through),
and what the modules report and change is checked in the lab's state, files and event log.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

from labtools import REPO, Lab
from test_renew_role import PASSWORD, issue_pfx, summaries

INFO = [{"name": "info", "xtractuniversal.tls.xu_tls_info": {}}]


def calls_by_endpoint(lab: Lab, host: str) -> dict[str, int]:
    counted: dict[str, int] = {}
    for event in lab.events(host, "remote_call"):
        counted[event["via"]] = counted.get(event["via"], 0) + 1
    return counted


def test_xu_tls_info_over_ssh(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "2", "--scenario", "mixed", "--connection", "ssh")
    inventory = lab.inventory.read_text()
    assert "ansible_connection: ssh" in inventory and "ansible_shell_type: powershell" in inventory
    before = {host: lab.host_files(host) for host in lab.hosts}
    run = lab.playbook(INFO, tmp_path=tmp_path)
    assert run.rc == 0, run.stdout + run.stderr
    for host in lab.hosts:
        result = run.of(host, "info")
        state = lab.state(host)
        assert result["transport"]["plugin"] == "ssh" and result["transport"]["encrypted_by"] == ["ssh"]
        assert calls_by_endpoint(lab, host) == {"ssh": 1}
        assert lab.host_files(host) == before[host]
        served = {listener["port"]: listener["thumbprint"] for listener in state["service"]["listeners"]}
        assert result["served"]["web_https"]["thumbprint"] == served[8165]
        assert result["fqdn"] == state["fqdn"]
    # xu02 of the mixed scenario expires soon: the same judgement as over WinRM.
    assert any("expires in" in problem for problem in run.of("xu02", "info")["problems"])
    # What the host ran: sshd's powershell.exe -c with Ansible's command, as script block logging records it.
    transcript = (lab.dir / "hosts" / "xu01" / "transcript.log").read_text()
    assert '"C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe" -c PowerShell -NoProfile' in transcript


def test_renew_with_a_pfx_over_ssh(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "2", "--scenario", "healthy", "--expiring-in", "5", "--restart-delay", "0.1", "--connection", "ssh")
    old = {host: lab.state(host)["service"]["listeners"][0]["thumbprint"] for host in lab.hosts}
    run = lab.playbook(
        str(REPO / "playbooks" / "renew.yml"), tmp_path=tmp_path,
        extra_args=("-e", "xu_renew_mode=replace", *issue_pfx(lab, tmp_path, set(lab.hosts))),
    )
    assert run.rc == 0, run.stdout[-4000:] + run.stderr[-4000:]
    found = summaries(run)
    for host in lab.hosts:
        summary = found[host]
        assert summary["result"] == "renewed", summary
        new = summary["new_thumbprint"]
        state = lab.state(host)
        store = {c["thumbprint"]: c for c in state["certificates"] if not c["archived"]}
        # The new certificate with its key is bound and served on every TLS port; the old one is gone.
        assert new != old[host] and new in store and store[new]["has_private_key"]
        assert old[host] not in store
        assert {listener["thumbprint"] for listener in state["service"]["listeners"]} == {new}
        settings = lab.host_files(host)["C/Program Files/XtractUniversal/config/servers/tls.json"]
        assert json.loads(settings)["WebServer"]["Certificate"]["Thumbprint"] == new
        # The gate is open again, no journal is left, and every call went through the SSH endpoint.
        assert state["firewall"]["exposure"] and set(state["firewall"]["exposure"].values()) == {"open"}
        assert state["journals"] in ({}, [])
        assert set(calls_by_endpoint(lab, host)) == {"ssh"}
        assert any("pfx_import" in e["ops"] for e in lab.events(host, "remote_call"))
        host_dir = lab.dir / "hosts" / host
        for path in host_dir.rglob("*"):
            if path.is_file():
                assert PASSWORD.encode() not in path.read_bytes(), path
    assert PASSWORD not in run.stdout + run.stderr
