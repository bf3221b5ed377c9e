"""`python -m xulab` end to end: up, state, fault, issue, winacme, events, down, and a real WinRM call."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import winrm
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID
from lab.labkit import bootstrap_command, payload

from xulab.ca import key_id, thumbprint
from xulab.client import Lab

MIXED = ["healthy", "expiring_soon", "expired", "tls_off", "missing_cert"]


def xulab(*args: object, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "xulab", *map(str, args)], capture_output=True, text=True, timeout=60, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"xulab {args} failed: {done.stdout}\n{done.stderr}")
    return done


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    directory = tmp_path_factory.mktemp("cli") / "lab"
    xulab("up", "--dir", directory, "--hosts", 5, "--scenario", "mixed", "--restart-delay", 0.1)
    yield directory
    xulab("down", "--dir", directory)


def state(lab_dir: pathlib.Path, host: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(xulab("state", "--dir", lab_dir, "--host", host).stdout)
    return value


def test_up_writes_inventory_lab_json_and_ca(lab_dir: pathlib.Path) -> None:
    info = json.loads((lab_dir / "lab.json").read_text())
    assert [(h["name"], h["profile"]) for h in info["hosts"]] == [(f"xu0{n}", p) for n, p in enumerate(MIXED, start=1)]
    # The default inventory is a protected one: NTLM, whose messages pywinrm encrypts over HTTP.
    assert info["auth"] == "ntlm" and info["scenario"] == "mixed" and info["user"] == "XULAB\\xuadmin"
    group = yaml.safe_load((lab_dir / "inventory.yml").read_text())["all"]["children"]["xu_servers"]
    assert group["hosts"]["xu03"] == {"ansible_host": info["hosts"][2]["address"], "xu_fqdn": "xu03.xulab.test"}
    assert group["vars"] | {"ansible_password": "*"} == {
        "ansible_connection": "winrm", "ansible_port": 5985, "ansible_winrm_scheme": "http", "ansible_winrm_transport": "ntlm",
        "ansible_winrm_message_encryption": "auto", "ansible_user": "XULAB\\xuadmin", "ansible_password": "*",
        "ansible_winrm_server_cert_validation": "ignore", "xulab_dir": str(lab_dir),
    }
    assert group["vars"]["ansible_password"] == info["password"]
    ca = x509.load_pem_x509_certificate((lab_dir / "ca.pem").read_bytes())
    assert ca.subject.rfc4514_string() == "CN=xulab Root CA,O=xulab"
    assert (lab_dir / "lab.json").stat().st_mode & 0o077 == 0
    running_again = xulab("up", "--dir", lab_dir, "--hosts", 1, check=False)
    assert running_again.returncode == 1 and "already running" in running_again.stderr


def test_state_shows_the_mixed_fleet(lab_dir: pathlib.Path) -> None:
    tls_off, missing = state(lab_dir, "xu04"), state(lab_dir, "xu05")
    assert [(x["port"], x["scheme"]) for x in tls_off["service"]["listeners"]] == [(8064, "tcp"), (8065, "http")]
    served = missing["service"]["listeners"][-1]["thumbprint"]
    assert served not in {c["thumbprint"] for c in missing["certificates"]}
    assert missing["firewall"]["exposure"] == {"8064": "open", "8065": "open", "8165": "open"}
    assert "C:\\Program Files\\XtractUniversal\\config\\version.txt" in missing["files"]
    unknown = xulab("state", "--dir", lab_dir, "--host", "xu99", check=False)
    assert unknown.returncode == 1 and "no host 'xu99'" in unknown.stderr


def test_a_fault_reaches_a_real_winrm_call(lab_dir: pathlib.Path) -> None:
    info = json.loads((lab_dir / "lab.json").read_text())
    host = info["hosts"][0]
    faults = json.loads(xulab("fault", "--dir", lab_dir, "--host", "xu01", "--set", "fail_primitive=cert_list", "--set", "restart_delay=0.2").stdout)
    assert faults["faults"]["fail_primitive"] == ["cert_list"] and faults["restart_delay"] == 0.2
    session = winrm.Session(f"http://{host['address']}:5985/wsman", auth=(info["user"], info["password"]), transport="ntlm")
    shell = session.protocol.open_shell()
    command = session.protocol.run_command(shell, bootstrap_command())
    session.protocol.send_command_input(shell, command, payload([("cert_list", {"store": "My"}), ("fw_get", {"group": "Xtract Universal"})]), end=True)
    stdout, _stderr, rc = session.protocol.get_command_output(shell, command)
    session.protocol.close_shell(shell)
    statuses = [(r["status"], r.get("error", {}).get("type")) for r in json.loads(stdout)["results"]]
    assert rc == 0 and statuses == [("error", "UnauthorizedAccessException"), ("skipped", None)]
    call = json.loads(xulab("events", "--dir", lab_dir, "--host", "xu01", "--type", "remote_call").stdout.splitlines()[-1])
    assert call["ops"] == ["cert_list", "fw_get"] and call["auth"] == "XULAB\\xuadmin"
    bad = xulab("fault", "--dir", lab_dir, "--host", "xu01", "--set", "fail_primitive=no_such_op", check=False)
    assert bad.returncode == 1 and "unknown primitive" in bad.stderr
    for path in [lab_dir / "lab.log", *(lab_dir / "hosts").rglob("*")]:
        if path.is_file():
            assert info["password"].encode() not in path.read_bytes(), path


def test_issue_mints_pfx_files_for_good_and_bad_inputs(lab_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    password_file = tmp_path / "pw"
    password_file.write_text("pfx-Pa55\n")
    out = tmp_path / "odd.pfx"
    minted = json.loads(xulab("issue", "--dir", lab_dir, "--host", "xu01", "--out", out, "--password-file", password_file,
                              "--san", "other.example", "alias.example", "--no-server-auth", "--expired").stdout)
    loaded = pkcs12.load_pkcs12(out.read_bytes(), b"pfx-Pa55")
    assert loaded.cert is not None and loaded.key is not None
    certificate = loaded.cert.certificate
    assert thumbprint(certificate.public_bytes(Encoding.DER)) == minted["thumbprint"]
    assert minted["san"] == ["other.example", "alias.example"] and minted["subject"] == "CN=other.example"
    assert list(certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert certificate.not_valid_after_utc < datetime.now(UTC)
    bound = state(lab_dir, "xu01")["certificates"][0]
    same_key = json.loads(xulab("issue", "--dir", lab_dir, "--host", "xu01", "--out", tmp_path / "same.pfx", "--password-file", password_file,
                                "--same-key-as", bound["thumbprint"]).stdout)
    assert same_key["key_id"] == bound["key_id"] and same_key["san"] == ["xu01.xulab.test", "xu01"]
    fresh = json.loads(xulab("issue", "--dir", lab_dir, "--host", "xu01", "--out", tmp_path / "new.pfx", "--password-file", password_file,
                             "--not-yet-valid").stdout)
    assert fresh["key_id"] not in {c["key_id"] for c in state(lab_dir, "xu01")["certificates"]}
    loaded_fresh = pkcs12.load_pkcs12((tmp_path / "new.pfx").read_bytes(), b"pfx-Pa55")
    assert isinstance(loaded_fresh.key, rsa.RSAPrivateKey) and key_id(loaded_fresh.key.public_key()) == fresh["key_id"]


def test_winacme_and_down(lab_dir: pathlib.Path) -> None:
    before = state(lab_dir, "xu02")
    renewed = json.loads(xulab("winacme", "--dir", lab_dir, "--host", "xu02").stdout)
    after = state(lab_dir, "xu02")
    assert renewed["old_thumbprint"] == before["certificates"][0]["thumbprint"]
    assert [c["thumbprint"] for c in after["certificates"]] == [renewed["new_thumbprint"]]
    assert after["service"]["listeners"] == before["service"]["listeners"]  # XU is not touched
    removed = xulab("events", "--dir", lab_dir, "--host", "xu02", "--type", "cert_remove").stdout
    assert renewed["old_thumbprint"] in removed


def test_down_is_idempotent(tmp_path: pathlib.Path) -> None:
    directory = tmp_path / "short"
    xulab("up", "--dir", directory, "--hosts", 1)
    pid = int((directory / "lab.pid").read_text())
    assert "stopped" in xulab("down", "--dir", directory).stdout
    assert not pathlib.Path(f"/proc/{pid}").exists() or "Z" in pathlib.Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]
    assert "no lab running" in xulab("down", "--dir", directory).stdout
    assert not (directory / "control.sock").exists()


def test_the_python_client(tmp_path: pathlib.Path) -> None:
    lab = Lab.up(tmp_path / "api", 2, scenario="mixed", restart_delay=0.1)
    try:
        assert lab.hosts() == ["xu01", "xu02"] and lab.address("xu02") == lab.info["hosts"][1]["address"]
        assert lab.state("xu02")["certificates"][0]["not_after"] < lab.state("xu01")["certificates"][0]["not_after"]
        assert lab.fault("xu01", restart_fails=2)["faults"]["restart_fails"] == 2
        assert lab.events("xu01", "fault")[-1]["value"] == "2"
        minted = lab.issue("xu01", "pw", tmp_path / "a.pfx")
        assert (tmp_path / "a.pfx").read_bytes() == minted["pfx"]
        assert lab.winacme("xu02")["new_thumbprint"] in {c["thumbprint"] for c in lab.state("xu02")["certificates"]}
        assert lab.inventory.exists() and lab.ca_pem.exists()
    finally:
        assert lab.down()
    assert not lab.down()
