"""`python -m xulab` for certificates from AD CS and beside the bound one: up --templates/--pending-templates/--scenario adopt,
plant, autoenroll, the Python client, and cert_enroll over real WinRM."""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
import winrm
from lab.labkit import bootstrap_command, payload
from lab.test_lab_cli import xulab

from xulab.client import Lab
from xulab.enterprise_ca import CA_CONFIG
from xulab.errors import LabError
from xulab.nearmiss import NEAR_MISS_KINDS


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    directory = tmp_path_factory.mktemp("cli-enrol") / "lab"
    xulab("up", "--dir", directory, "--hosts", 8, "--scenario", "adopt", "--restart-delay", 0.1,
          "--templates", "WebServer,XUWeb:90", "--pending-templates", "XUApproval")
    yield directory
    xulab("down", "--dir", directory)


def state(lab_dir: pathlib.Path, host: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(xulab("state", "--dir", lab_dir, "--host", host).stdout)
    return value


def agent_call(lab_dir: pathlib.Path, host: str, ops: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    info = json.loads((lab_dir / "lab.json").read_text())
    address = next(h["address"] for h in info["hosts"] if h["name"] == host)
    session = winrm.Session(f"http://{address}:5985/wsman", auth=(info["user"], info["password"]), transport="ntlm")
    shell = session.protocol.open_shell()
    try:
        command = session.protocol.run_command(shell, bootstrap_command())
        session.protocol.send_command_input(shell, command, payload(ops, stop_on_error=False), end=True)
        stdout, _stderr, rc = session.protocol.get_command_output(shell, command)
    finally:
        session.protocol.close_shell(shell)
    assert rc == 0
    answers: list[dict[str, Any]] = json.loads(stdout)["results"]
    return answers


def test_up_describes_the_ca_and_plants_the_adopt_scenario(lab_dir: pathlib.Path) -> None:
    info = json.loads((lab_dir / "lab.json").read_text())
    assert info["scenario"] == "adopt"
    assert info["ca"]["config"] == CA_CONFIG
    assert info["ca"]["templates"] == {"WebServer": 730, "XUWeb": 90} and info["ca"]["pending_templates"] == {"XUApproval": 365}
    assert [h["profile"] for h in info["hosts"]] == [*(f"adopt_{kind}" for kind in NEAR_MISS_KINDS), "adopt_better"]
    assert [p["kind"] for p in state(lab_dir, "xu03")["planted"]] == ["no_eku"]
    assert len(state(lab_dir, "xu08")["planted"]) == 8


def test_templates_reach_a_real_winrm_call(lab_dir: pathlib.Path) -> None:
    names = ["xu01.xulab.test", "xu01"]
    enrolled, pending, caller = agent_call(lab_dir, "xu01", [
        ("cert_enroll", {"template": "XUWeb", "dns_names": names, "ca_config": CA_CONFIG}),
        ("cert_enroll", {"template": "XUApproval", "dns_names": names, "ca_config": CA_CONFIG}),
        ("cert_enroll", {"template": "WebServer", "dns_names": names, "run_as": "caller"}),
    ])
    assert enrolled["status"] == "ok" and enrolled["result"]["enrolled_as"] == "machine"
    assert pending["error"]["type"] == "EnrollPending" and caller["error"]["type"] == "CertreqFailed"
    found = {c["thumbprint"]: c for c in state(lab_dir, "xu01")["certificates"]}[enrolled["result"]["thumbprint"]]
    assert found["san"] == names and found["key_acl"] == [
        {"identity": "NT AUTHORITY\\SYSTEM", "sid": "S-1-5-18", "rights": "FullControl", "type": "Allow"},
        {"identity": "BUILTIN\\Administrators", "sid": "S-1-5-32-544", "rights": "FullControl", "type": "Allow"},
    ]
    assert len(state(lab_dir, "xu01")["request_certificates"]) == 2  # the pending one and the session's
    disposition = [json.loads(line)["disposition"] for line in xulab("events", "--dir", lab_dir, "--host", "xu01", "--type", "enrol").stdout.splitlines()]
    assert disposition == ["issued", "pending", "failed"]


def test_plant_and_autoenroll_from_the_command_line(lab_dir: pathlib.Path) -> None:
    before = state(lab_dir, "xu02")
    planted = json.loads(xulab("plant", "--dir", lab_dir, "--host", "xu02", "--kind", "better").stdout)
    assert planted["kind"] == "better" and planted["bound_thumbprint"] == before["service"]["listeners"][-1]["thumbprint"]
    assert planted["thumbprint"] in {c["thumbprint"] for c in state(lab_dir, "xu02")["certificates"]}
    bad = xulab("plant", "--dir", lab_dir, "--host", "xu02", "--kind", "worse", check=False)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    renewed = json.loads(xulab("autoenroll", "--dir", lab_dir, "--host", "xu02").stdout)
    assert renewed["old_thumbprint"] == planted["bound_thumbprint"] and renewed["template"] == "WebServer"
    after = {c["thumbprint"]: c for c in state(lab_dir, "xu02")["certificates"]}
    assert after[renewed["old_thumbprint"]]["archived"] is True and after[renewed["new_thumbprint"]]["archived"] is False
    assert state(lab_dir, "xu02")["service"]["listeners"] == before["service"]["listeners"]


def test_the_python_client(lab_dir: pathlib.Path) -> None:
    lab = Lab(lab_dir)
    assert lab.plant("xu04", "expired")["kind"] == "expired"
    assert lab.autoenroll("xu04")["template"] == "WebServer"
    assert [e["type"] for e in lab.events("xu04")][-1] == "autoenrol"


def test_bad_templates_are_refused_before_anything_starts(tmp_path: pathlib.Path) -> None:
    began = time.monotonic()
    done = xulab("up", "--dir", tmp_path / "bad", "--hosts", 1, "--templates", "WebServer,XU\"Web", check=False)
    assert done.returncode == 1 and "a template's name matches" in done.stderr and time.monotonic() - began < 20
    twice = xulab("up", "--dir", tmp_path / "bad", "--hosts", 1, "--templates", "XUWeb", "--pending-templates", "xuweb", check=False)
    assert twice.returncode == 1 and "given twice" in twice.stderr
    with pytest.raises(LabError, match="validity is a number of days"):
        Lab.up(tmp_path / "api", 1, templates=("XUWeb:soon",))
    assert not (tmp_path / "bad" / "lab.pid").exists()
