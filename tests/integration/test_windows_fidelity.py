"""The modules against a lab that fails the way Windows fails (tests/lab/README.md, "Where the lab is strict").

Each test sets up what a real server has and a kinder lab did not: Server 2016, a service
account whose names differ from its ACL entries, a BOM, a dependent service, a hanging stop,
a listener bound to the host's name. Every check is made on the host's state and event log.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from labtools import Lab
from test_xu_cert_swap import TLS_JSON, bound, issue, new_password, served, store, swap_task

NETWORK_SERVICE_SID = "S-1-5-20"
BOM = b"\xef\xbb\xbf"


def start(lab_factory: Any, *extra: str) -> Lab:
    lab: Lab = lab_factory("--hosts", "1", "--scenario", "healthy", "--restart-delay", "0.2", *extra)
    return lab


def tls_file(lab: Lab) -> pathlib.Path:
    return lab.dir / "hosts" / "xu01" / "fs" / TLS_JSON


def test_an_aes_pfx_reaches_a_server_2016_host(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab = start(lab_factory, "--windows-version", "2016")
    assert lab.state("xu01")["os_version"] == "10.0.14393"
    password = new_password()
    minted = issue(lab, tmp_path, "aes.pfx", password, "--aes")
    old = bound(lab)
    task = swap_task(old_thumbprint=old, pfx_path="aes.pfx", pfx_password=password, grant_key_access=True)
    run = lab.playbook([task], tmp_path=tmp_path)
    assert run.rc == 0, run.stdout + run.stderr
    new = minted["thumbprint"]
    assert run.of("xu01", "swap")["imported"] is True
    # The host imported it (2016 refuses the file as it was made) and serves it.
    assert [e["thumbprint"] for e in lab.events("xu01", "cert_add") if e["source"] == "pfx_import"] == [new]
    assert served(lab) == {8064: new, 8165: new} and bound(lab) == new
    assert store(lab)[new]["exportable"] is False
    assert password not in run.stdout + run.stderr


def test_a_3des_pfx_with_a_sha256_mac_reaches_a_server_2016_host(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    # Encrypted as Windows reads it, but its MAC is SHA-256 (OpenSSL 3 with -certpbe/-keypbe 3DES, cryptography's default):
    # 2016 predates that MAC, so the controller re-encodes the file as it does an AES one.
    lab = start(lab_factory, "--windows-version", "2016")
    password = new_password()
    minted = issue(lab, tmp_path, "legacy.pfx", password)
    opened = pkcs12.load_pkcs12((tmp_path / "files" / "legacy.pfx").read_bytes(), password.encode())
    assert opened.cert is not None and opened.key is not None
    sha256_mac = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(hashes.SHA256())
        .build(password.encode())
    )
    data = pkcs12.serialize_key_and_certificates(b"xu01", opened.key, opened.cert.certificate, None, sha256_mac)  # type: ignore[arg-type]
    (tmp_path / "files" / "sha256mac.pfx").write_bytes(data)
    old = bound(lab)
    run = lab.playbook([swap_task(old_thumbprint=old, pfx_path="sha256mac.pfx", pfx_password=password, grant_key_access=True)], tmp_path=tmp_path)
    assert run.rc == 0, run.stdout + run.stderr
    new = minted["thumbprint"]
    assert [e["thumbprint"] for e in lab.events("xu01", "cert_add") if e["source"] == "pfx_import"] == [new]
    assert served(lab) == {8064: new, 8165: new} and bound(lab) == new


def test_a_networkservice_host_with_a_bom_and_a_dependent_renews_as_the_machine(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab = start(lab_factory)
    lab.fault("xu01", service_account="networkservice", dependent_service="XuScheduler")
    original = BOM + tls_file(lab).read_bytes()
    tls_file(lab).write_bytes(original)
    old = bound(lab)
    task = swap_task(old_thumbprint=old, renew_reusing_key=True, grant_key_access=True)
    run = lab.playbook([task], tmp_path=tmp_path)
    assert run.rc == 0, run.stdout + run.stderr
    result = run.of("xu01", "swap")
    new = result["new_thumbprint"]
    assert result["key_access_granted"] is True and not result.get("warnings")
    # Granted to NetworkService's SID: the name services.msc shows (NT AUTHORITY\NetworkService) translates to nothing.
    assert lab.events("xu01", "key_acl")[-1]["sid"] == NETWORK_SERVICE_SID
    acl = store(lab)[new]["key_acl"]
    assert {"identity": "NT AUTHORITY\\NETWORK SERVICE", "sid": NETWORK_SERVICE_SID, "rights": "Read", "type": "Allow"} in acl
    assert served(lab) == {8064: new, 8165: new}
    # The settings file keeps its BOM and every other byte.
    assert tls_file(lab).read_bytes() == original.replace(old.encode(), new.encode())
    # certreq ran as the machine, in a task that is gone again.
    assert [(e["enrolled_as"], e["exit_code"]) for e in lab.events("xu01", "certreq")] == [("machine", 0)]
    assert lab.events("xu01", "certreq")[0]["account"] == "XULAB\\XU01$"
    assert [e["action"] for e in lab.events("xu01", "task")] == ["registered", "ran", "removed"]
    # The dependent service, stopped with XU, runs again.
    state = lab.state("xu01")["service"]
    assert state["dependent_states"] == {"XuScheduler": "Running"}
    assert [e["state"] for e in lab.events("xu01", "service") if e.get("name") == "XuScheduler"] == ["Stopped", "Running"]


def test_a_stop_that_hangs_fails_the_swap_and_leaves_the_settings_as_they_were(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab = start(lab_factory)
    password = new_password()
    issue(lab, tmp_path, "new.pfx", password)
    original = tls_file(lab).read_bytes()
    lab.fault("xu01", stop_hangs=1)
    task = swap_task(old_thumbprint=bound(lab), pfx_path="new.pfx", pfx_password=password, grant_key_access=True, wait_timeout=2)
    run = lab.playbook([task], tmp_path=tmp_path)
    result = run.of("xu01", "swap")
    assert result["_status"] == "failed" and "StopPending" in result["msg"], result
    # Nothing was started over a service that had not stopped; the settings were put back byte for byte.
    assert tls_file(lab).read_bytes() == original
    assert lab.state("xu01")["service"]["state"] == "StopPending"
    assert not [e for e in lab.events("xu01", "service") if e["state"] == "Running" and e["ts"] > lab.events("xu01", "fault")[-1]["ts"]]
    lab.fault("xu01", stop_hangs=0)


def test_a_host_that_answers_only_to_its_name_is_probed_by_its_name(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab = start(lab_factory)
    password = new_password()
    first = issue(lab, tmp_path, "first.pfx", password)
    second = issue(lab, tmp_path, "second.pfx", password)
    lab.fault("xu01", strict_host_name="true")
    pfx: dict[str, Any] = {"pfx_password": password, "grant_key_access": True, "remove_old": True}
    # Without fqdn the probes after the change use the name the host reported (probed as localhost, the
    # handshake is refused and the swap would be rolled back), and so does the removal's check.
    run = lab.playbook([swap_task(old_thumbprint=bound(lab), pfx_path="first.pfx", **pfx)], tmp_path=tmp_path)
    assert run.rc == 0, run.stdout + run.stderr
    assert served(lab) == {8064: first["thumbprint"], 8165: first["thumbprint"]} and run.of("xu01", "swap")["removed_old"] is True
    # With fqdn given, that name.
    named = lab.playbook([swap_task(old_thumbprint=first["thumbprint"], fqdn="{{ xu_fqdn }}", pfx_path="second.pfx", **pfx)], tmp_path=tmp_path)
    assert named.rc == 0, named.stdout + named.stderr
    assert served(lab) == {8064: second["thumbprint"], 8165: second["thumbprint"]}
    assert json.loads(tls_file(lab).read_bytes())["WebServer"]["Certificate"]["Thumbprint"] == second["thumbprint"]
    assert first["thumbprint"] not in store(lab)


def test_a_gate_that_would_have_no_effect_is_refused_before_anything_changes(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab = start(lab_factory)
    close = {"name": "gate", "xtractuniversal.tls.xu_firewall_gate": {"state": "closed", "allow_from": ["10.9.8.7"], "run_id": "it-gate"}}
    for setting, value, words in (
        ("firewall_local_rules", "ignored", "AllowLocalFirewallRules"),
        ("firewall_profile_off", "Public", "Public profile is off"),
        ("firewall_service", "stopped", "The service has not been started"),
    ):
        lab.fault("xu01", **{setting: value})
        before = lab.state("xu01")["firewall"]
        for check in (True, False):
            run = lab.playbook([close], tmp_path=tmp_path, check=check)
            result = run.of("xu01", "gate")
            assert result["_status"] == "failed" and words in result["msg"], (setting, result["msg"])
            # Nothing was written: not a rule, not a task, not an entry in the host's log.
            assert lab.state("xu01")["firewall"] == before and lab.state("xu01")["tasks"] == []
            assert lab.events("xu01", "eventlog") == []
        lab.fault("xu01", **{setting: {"firewall_local_rules": "applied", "firewall_profile_off": "none", "firewall_service": "running"}[setting]})
    # With the firewall in effect the gate closes, the ports are restricted, and the host's log says so.
    run = lab.playbook([close], tmp_path=tmp_path)
    assert run.rc == 0, run.stdout + run.stderr
    assert set(lab.state("xu01")["firewall"]["exposure"].values()) == {"restricted"}
    (entry,) = lab.events("xu01", "eventlog")
    assert entry["event_id"] == 1004 and "run_id: it-gate" in entry["message"] and "10.9.8.7" in entry["message"]
