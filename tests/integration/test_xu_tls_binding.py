"""xu_tls_binding against the lab: every step checked on the lab host itself (its files, state and event log)."""

from __future__ import annotations

import json
import pathlib
from typing import Any

from labtools import Lab

TLS_FILE = "C/Program Files/XtractUniversal/config/servers/tls.json"
TLS_PATH = "C:\\Program Files\\XtractUniversal\\config\\servers\\tls.json"
SERVICE_ACCOUNT = "NT SERVICE\\XtractUniversal Service"
READ_OPS = ["discover", "cert_list", "fw_get", "task_get", "fw_get", "task_get", "port_probe", "port_probe", "port_probe"]
CHANGING_OPS = {"file_write", "file_restore", "file_remove", "service_restart", "key_grant_read"}
HOST_CHANGES = {"settings_write", "settings_restore", "settings_remove", "service", "key_acl"}
FAST = ("--restart-delay", "0.2")


def binding(name: str, **options: Any) -> dict[str, Any]:
    return {"name": name, "xtractuniversal.tls.xu_tls_binding": options}


def listeners(lab: Lab, host: str) -> dict[int, tuple[str, str | None]]:
    return {entry["port"]: (entry["scheme"], entry["thumbprint"]) for entry in lab.state(host)["service"]["listeners"]}


def events_since(lab: Lab, host: str, mark: int) -> list[dict[str, Any]]:
    return lab.events(host)[mark:]


def remote_ops(events: list[dict[str, Any]]) -> list[list[str]]:
    return [event["ops"] for event in events if event["type"] == "remote_call"]


def as_pasted(thumbprint: str) -> str:
    """As copied from the Windows certificate dialog: an invisible mark, pairs of lower-case digits."""
    return "\u200e" + " ".join(thumbprint[i:i + 2] for i in range(0, 40, 2)).lower()


def test_check_mode_apply_and_rerun(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "4", "--scenario", "mixed", *FAST)
    # xu04: TLS off (no tls.json), one valid certificate in the store whose key the service may not read.
    store = lab.state("xu04")["certificates"]
    assert len(store) == 1
    thumbprint = store[0]["thumbprint"]
    task = binding("bind", web_protocol="https_unrestricted", web_certificate=as_pasted(thumbprint), grant_key_access=True)
    files = lab.host_files("xu04")
    assert TLS_FILE not in files

    mark = len(lab.events("xu04"))
    checked = lab.playbook([task], hosts="xu04", check=True, diff=True, tmp_path=tmp_path)
    assert checked.rc == 0, checked.stdout + checked.stderr
    result = checked.of("xu04", "bind")
    assert result["changed"] is True and result["restarted"] is True and result["key_access_granted"] == [thumbprint]
    assert lab.host_files("xu04") == files
    events = events_since(lab, "xu04", mark)
    assert remote_ops(events) == [READ_OPS]
    assert not [e for e in events if e["type"] in HOST_CHANGES]
    # --diff shows the new settings, in check mode too.
    assert f'+      "Thumbprint": "{thumbprint}"' in checked.stdout
    assert '+    "Protocol": "HttpsUnrestricted",' in checked.stdout
    assert listeners(lab, "xu04") == {8064: ("tcp", None), 8065: ("http", None)}

    mark = len(lab.events("xu04"))
    applied = lab.playbook([task], hosts="xu04", diff=True, tmp_path=tmp_path)
    assert applied.rc == 0, applied.stdout + applied.stderr
    result = applied.of("xu04", "bind")
    assert result["changed"] is True and result["rolled_back"] is False and result["restarted"] is True
    assert result["web_protocol"] == "https_unrestricted" and result["web_certificate"] == thumbprint
    assert result["served"] == {"web_https": thumbprint, "config_server": None}
    assert result["backup_file"] is None  # there was no tls.json to keep
    assert result["diff"]["before"] == "" and thumbprint in result["diff"]["after"]
    # The host, independently: what listens, what the file says, what the event log recorded.
    assert listeners(lab, "xu04") == {8064: ("tcp", None), 8165: ("https", thumbprint)}
    written = json.loads(lab.host_files("xu04")[TLS_FILE])
    assert written["WebServer"] == {
        "Protocol": "HttpsUnrestricted",
        "Certificate": {"StoreLocation": "LocalMachine", "StoreName": "My", "Thumbprint": thumbprint},
    }
    events = events_since(lab, "xu04", mark)
    assert remote_ops(events) == [READ_OPS, ["key_grant_read", "file_write", "service_restart", "port_probe", "port_probe", "event_write"]]
    assert [(e["thumbprint"], e["account"]) for e in events if e["type"] == "key_acl"] == [(thumbprint, SERVICE_ACCOUNT)]
    assert [(e["file"], e["backup"]) for e in events if e["type"] == "settings_write"] == [(TLS_PATH, None)]
    assert [e["state"] for e in events if e["type"] == "service"] == ["Stopped", "Running"]
    assert lab.state("xu04")["certificates"][0]["key_acl"][-1]["identity"] == SERVICE_ACCOUNT

    files = lab.host_files("xu04")
    mark = len(lab.events("xu04"))
    again = lab.playbook([task], hosts="xu04", tmp_path=tmp_path)
    assert again.rc == 0, again.stdout + again.stderr
    result = again.of("xu04", "bind")
    assert result["changed"] is False and result["restarted"] is False and result["key_access_granted"] == []
    assert lab.host_files("xu04") == files
    events = events_since(lab, "xu04", mark)
    assert remote_ops(events) == [READ_OPS]
    assert not [e for e in events if e["type"] in HOST_CHANGES]


def test_bad_input_leaves_the_host_untouched(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "4", "--scenario", "mixed", *FAST)
    unreadable = lab.state("xu04")["certificates"][0]["thumbprint"]
    # xu03: TLS on with a certificate that expired three days ago.
    expired = json.loads(lab.host_files("xu03")[TLS_FILE])["WebServer"]["Certificate"]["Thumbprint"]
    cases = {
        "not in the store": ("xu04", {"web_certificate": "1" * 40}, "is not in LocalMachine\\My on the host"),
        "not a thumbprint": ("xu04", {"web_certificate": "AD3B9B0C9F6E3F1A2B3C4D5E6F708192A3B4ECE"},
                             "web_certificate 'AD3B9B0C9F6E3F1A2B3C4D5E6F708192A3B4ECE' is not a certificate thumbprint:"
                             " expected 40 hexadecimal digits"),
        "https without a certificate": ("xu04", {"web_protocol": "https_unrestricted"},
                                        "the web server would use HttpsUnrestricted without a certificate; set web_certificate"),
        "unreadable key": ("xu04", {"web_protocol": "https_unrestricted", "web_certificate": unreadable},
                           "cannot read the private key of the web server certificate"),
        "name not covered": ("xu04", {"web_certificate": unreadable, "grant_key_access": True, "strict_san": True, "fqdn": "xu.example.com"},
                             "does not name xu.example.com in its Subject Alternative Name (xu04.xulab.test, xu04)"),
        "expired": ("xu03", {"web_certificate": expired, "config_server_certificate": expired},
                    f"the web server and configuration server certificate {expired} expired on"),
    }
    tasks = [
        binding(name, **options) | {"when": f"inventory_hostname == '{host}'", "ignore_errors": True}
        for name, (host, options, _message) in cases.items()
    ]
    before = {host: lab.host_files(host) for host in ("xu03", "xu04")}
    marks = {host: len(lab.events(host)) for host in ("xu03", "xu04")}
    listening = {host: listeners(lab, host) for host in ("xu03", "xu04")}

    run = lab.playbook(tasks, hosts="xu03:xu04", tmp_path=tmp_path)
    assert run.rc == 0, run.stdout + run.stderr
    for name, (host, _options, message) in cases.items():
        result = run.of(host, name)
        assert result["_status"] == "failed", (name, result)
        assert message in result["msg"], (name, result["msg"])
        assert result["changed"] is False
    for host in ("xu03", "xu04"):
        assert lab.host_files(host) == before[host]
        assert listeners(lab, host) == listening[host]
        events = events_since(lab, host, marks[host])
        assert not [e for e in events if e["type"] in HOST_CHANGES]
        assert all(ops == READ_OPS for ops in remote_ops(events))
    # The malformed thumbprint failed on the controller, before the read: four reads for five tasks on xu04.
    assert len(remote_ops(events_since(lab, "xu04", marks["xu04"]))) == 4
    assert len(remote_ops(events_since(lab, "xu03", marks["xu03"]))) == 1


def test_restart_never_then_the_pending_restart(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "5", "--scenario", "mixed", *FAST)
    # xu05: win-acme replaced the bound certificate; XU still serves the deleted one until it restarts.
    old = json.loads(lab.host_files("xu05")[TLS_FILE])["WebServer"]["Certificate"]["Thumbprint"]
    [new] = [c["thumbprint"] for c in lab.state("xu05")["certificates"]]
    assert listeners(lab, "xu05") == {8064: ("tls", old), 8165: ("https", old)}
    old_bytes = lab.host_files("xu05")[TLS_FILE]
    options = {"web_certificate": new, "config_server_certificate": new, "grant_key_access": True}

    mark = len(lab.events("xu05"))
    run = lab.playbook([binding("write only", restart="never", **options)], hosts="xu05", tmp_path=tmp_path)
    assert run.rc == 0, run.stdout + run.stderr
    result = run.of("xu05", "write only")
    assert result["changed"] is True and result["restarted"] is False and result["restart_required"] is True
    assert listeners(lab, "xu05") == {8064: ("tls", old), 8165: ("https", old)}
    files = lab.host_files("xu05")
    assert files[TLS_FILE] == old_bytes.replace(old.encode(), new.encode())  # layout, indentation and CRLF kept
    backup = result["backup_file"]
    assert backup.startswith(TLS_PATH + ".") and backup.endswith(".bak")
    assert files[backup.replace("C:\\", "C/").replace("\\", "/")] == old_bytes
    events = events_since(lab, "xu05", mark)
    assert remote_ops(events) == [READ_OPS, ["key_grant_read", "file_write", "event_write"]]
    assert [(e["file"], e["backup"]) for e in events if e["type"] == "settings_write"] == [(TLS_PATH, backup)]
    assert not [e for e in events if e["type"] == "service"]

    mark = len(lab.events("xu05"))
    run = lab.playbook([binding("apply", **options)], hosts="xu05", tmp_path=tmp_path)
    assert run.rc == 0, run.stdout + run.stderr
    result = run.of("xu05", "apply")
    assert result["changed"] is True and result["restarted"] is True and result["restart_required"] is False
    assert result["served"] == {"web_https": new, "config_server": new}
    assert listeners(lab, "xu05") == {8064: ("tls", new), 8165: ("https", new)}
    assert remote_ops(events_since(lab, "xu05", mark)) == [READ_OPS, ["service_restart", "port_probe", "port_probe", "event_write"]]

    run = lab.playbook([binding("again", **options)], hosts="xu05", tmp_path=tmp_path)
    assert run.rc == 0 and run.of("xu05", "again")["changed"] is False


def test_a_failed_restart_is_rolled_back(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "1", "--scenario", "healthy", *FAST)
    thumbprint = lab.state("xu01")["certificates"][0]["thumbprint"]
    assert listeners(lab, "xu01") == {8064: ("tls", thumbprint), 8165: ("https", thumbprint)}
    before = lab.host_files("xu01")[TLS_FILE]
    lab.fault("xu01", restart_fails=1)

    mark = len(lab.events("xu01"))
    run = lab.playbook([binding("restrict", web_protocol="https_ad_users")], hosts="xu01", tmp_path=tmp_path)
    assert run.rc != 0
    result = run.of("xu01", "restrict")
    assert result["_status"] == "failed" and result["rolled_back"] is True and result["changed"] is False
    assert "the service did not come back" in result["msg"]
    assert "rolled back" in result["msg"] and "serves its previous certificates again" in result["msg"]
    assert result["restored_files"] == [TLS_PATH]

    assert lab.host_files("xu01")[TLS_FILE] == before
    state = lab.state("xu01")
    assert state["service"]["state"] == "Running"
    assert listeners(lab, "xu01") == {8064: ("tls", thumbprint), 8165: ("https", thumbprint)}
    events = events_since(lab, "xu01", mark)
    # Read, apply, roll back: three remote calls.
    assert remote_ops(events) == [
        READ_OPS,
        ["file_write", "service_restart", "port_probe", "port_probe", "event_write"],
        ["file_restore", "service_restart", "port_probe", "port_probe", "event_write"],
    ]
    backup = result["backup_file"]
    assert [(e["type"], e["backup"]) for e in events if e["type"].startswith("settings_")] == [
        ("settings_write", backup), ("settings_restore", backup),
    ]
    assert [e["state"] for e in events if e["type"] == "service"] == ["Stopped", "Stopped", "Running"]


def test_a_created_settings_file_is_removed_by_the_rollback(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "4", "--scenario", "mixed", *FAST)
    thumbprint = lab.state("xu04")["certificates"][0]["thumbprint"]
    assert TLS_FILE not in lab.host_files("xu04")
    lab.fault("xu04", restart_fails=1)

    mark = len(lab.events("xu04"))
    task = binding("bind", web_protocol="https_unrestricted", web_certificate=thumbprint, grant_key_access=True)
    run = lab.playbook([task], hosts="xu04", tmp_path=tmp_path)
    assert run.rc != 0
    result = run.of("xu04", "bind")
    assert result["_status"] == "failed" and result["rolled_back"] is True
    # The key access granted before the failure stays: the module reports that as its change.
    assert result["changed"] is True
    assert TLS_FILE not in lab.host_files("xu04")
    assert listeners(lab, "xu04") == {8064: ("tcp", None), 8065: ("http", None)}
    events = events_since(lab, "xu04", mark)
    assert remote_ops(events) == [
        READ_OPS,
        ["key_grant_read", "file_write", "service_restart", "port_probe", "port_probe", "event_write"],
        ["file_remove", "service_restart", "port_probe", "port_probe", "event_write"],
    ]
    assert [e["type"] for e in events if e["type"].startswith("settings_")] == ["settings_write", "settings_remove"]


def test_a_partial_read_is_refused_before_anything_changes(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab: Lab = lab_factory("--hosts", "1", "--scenario", "healthy", *FAST)
    bound = lab.state("xu01")["certificates"][0]["thumbprint"]
    files = lab.host_files("xu01")
    lab.fault("xu01", fail_primitive="cert_list")
    mark = len(lab.events("xu01"))
    run = lab.playbook([binding("bind", web_protocol="https_ad_users", web_certificate=bound)], tmp_path=tmp_path)
    result = run.of("xu01", "bind")
    assert result["_status"] == "failed" and "could not be read (cert_list: UnauthorizedAccessException" in result["msg"], result
    assert result["changed"] is False
    events = events_since(lab, "xu01", mark)
    assert remote_ops(events) == [READ_OPS]
    assert not [e for e in events if e["type"] in HOST_CHANGES]
    assert lab.host_files("xu01") == files
