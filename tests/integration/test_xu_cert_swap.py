"""xu_cert_swap against the lab: every step checked from outside, in the lab's state, event log and files."""

from __future__ import annotations

import json
import pathlib
import secrets
from typing import Any

import pytest
from labtools import Lab

TLS_JSON = pathlib.Path("C/Program Files/XtractUniversal/config/servers/tls.json")
# Events that show the host changed.
# NT SERVICE\XtractUniversal Service: the SID Windows derives from the service name.
VIRTUAL_ACCOUNT_SID = "S-1-5-80-2835434641-1716488285-1104975628-79970361-2622572616"
WRONG_PASSWORD = "not-the-password"  # noqa: S105 - a test value
CHANGE_EVENTS = ("cert_add", "cert_remove", "cert_archive", "key_acl", "settings_write", "settings_restore", "service", "journal")


def swap_task(name: str = "swap", **options: Any) -> dict[str, Any]:
    return {"name": name, "xtractuniversal.tls.xu_cert_swap": {"wait_timeout": 30, **options}}


def start(lab_factory: Any, hosts: int = 1) -> Lab:
    lab: Lab = lab_factory("--hosts", str(hosts), "--scenario", "healthy", "--restart-delay", "0.2")
    return lab


def bound(lab: Lab, host: str = "xu01") -> str:
    thumbprint: str = json.loads((lab.dir / "hosts" / host / "fs" / TLS_JSON).read_bytes())["WebServer"]["Certificate"]["Thumbprint"]
    return thumbprint


def served(lab: Lab, host: str = "xu01") -> dict[int, str | None]:
    return {listener["port"]: listener["thumbprint"] for listener in lab.state(host)["service"]["listeners"]}


def store(lab: Lab, host: str = "xu01") -> dict[str, dict[str, Any]]:
    return {c["thumbprint"]: c for c in lab.state(host)["certificates"] if not c["archived"]}


def changes(lab: Lab, host: str = "xu01") -> list[dict[str, Any]]:
    return [e for e in lab.events(host) if e["type"] in CHANGE_EVENTS]


def issue(lab: Lab, tmp_path: pathlib.Path, name: str, password: str, *flags: str, host: str = "xu01") -> dict[str, Any]:
    """A PFX from the lab CA in tmp_path/files (where a play in tmp_path finds a relative pfx_path)."""
    password_file = tmp_path / f"{name}.password"
    password_file.write_text(password, encoding="utf-8")
    (tmp_path / "files").mkdir(exist_ok=True)
    out = tmp_path / "files" / name
    answer = lab.xulab("issue", "--dir", str(lab.dir), "--host", host, "--out", str(out), "--password-file", str(password_file), *flags)
    minted: dict[str, Any] = json.loads(answer)
    password_file.unlink()
    return minted


def new_password() -> str:
    return "Pfx-" + secrets.token_urlsafe(16)


def test_pfx_swap_check_apply_idempotent(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab = start(lab_factory)
    password = new_password()
    minted = issue(lab, tmp_path, "new.pfx", password)
    new = minted["thumbprint"]
    old = bound(lab)
    tls_file = lab.dir / "hosts" / "xu01" / "fs" / TLS_JSON
    original = tls_file.read_bytes()
    before = lab.host_files("xu01")
    events_before = changes(lab)
    # Pasted from the certificate dialog: lower case, spaces, the invisible mark.
    pasted_old = "\u200e" + " ".join(old[i:i + 2].lower() for i in range(0, 40, 2))
    task = swap_task(old_thumbprint=pasted_old, pfx_path="new.pfx", pfx_password=password, grant_key_access=True, remove_old=True)

    checked = lab.playbook([task], tmp_path=tmp_path, check=True, diff=True)
    assert checked.rc == 0, checked.stdout + checked.stderr
    result = checked.of("xu01", "swap")
    assert result["changed"] is True and result["imported"] is True and result["removed_old"] is True
    assert [r["path"] for r in result["references"]] == ["WebServer.Certificate.Thumbprint", "ConfigServer.Certificate.Thumbprint"]
    assert lab.host_files("xu01") == before
    assert changes(lab) == events_before
    assert [call["ops"][0] for call in lab.events("xu01", "remote_call")] == ["discover"]
    # The diff shows exactly the two thumbprint lines changing.
    diff_lines = [line[:1] + line[1:].strip() for line in checked.stdout.splitlines() if line[:1] in "+-" and "Thumbprint" in line]
    assert diff_lines.count(f'-"Thumbprint": "{old}"') == 2 and diff_lines.count(f'+"Thumbprint": "{new}"') == 2

    applied = lab.playbook([task], tmp_path=tmp_path)
    assert applied.rc == 0, applied.stdout + applied.stderr
    result = applied.of("xu01", "swap")
    assert result["changed"] and result["imported"] and result["key_access_granted"] and result["removed_old"] and result["restarted"]
    assert result["old_thumbprint"] == old and result["new_thumbprint"] == new
    assert result["served"]["web_https"]["thumbprint"] == new and result["served"]["config_server"]["thumbprint"] == new
    # The host, independently: both TLS ports serve the new certificate, the settings name it, the old one is gone.
    assert served(lab) == {8064: new, 8165: new}
    assert tls_file.read_bytes() == original.replace(old.encode(), new.encode())
    certificates = store(lab)
    assert old not in certificates and new in certificates
    assert {"identity": "NT SERVICE\\XtractUniversal Service", "sid": VIRTUAL_ACCOUNT_SID, "rights": "Read", "type": "Allow"} in certificates[new]["key_acl"]
    assert certificates[new]["exportable"] is False
    (backup,) = result["backup_files"].values()
    backup_file = lab.dir / "hosts" / "xu01" / "fs" / backup.replace("C:\\", "C/").replace("\\", "/")
    assert backup_file.read_bytes() == original
    # The old certificate was removed only after the service was seen serving the new one.
    events = lab.events("xu01")
    serving_new = next(i for i, e in enumerate(events) if e["type"] == "service" and {x["thumbprint"] for x in e["listeners"]} == {new})
    removal = next(i for i, e in enumerate(events) if e["type"] == "cert_remove")
    assert events[removal]["thumbprint"] == old and removal > serving_new
    calls = lab.events("xu01", "remote_call")
    # One apply call: the removal rides in it, after the host itself saw the new certificate served and /version answer.
    assert len(calls) == 3
    assert calls[1]["ops"] == ["discover", "cert_list", "fw_get", "task_get", "fw_get", "task_get"]
    assert calls[2]["ops"] == [
        "pfx_import", "key_grant_read", "file_write", "service_restart", "port_probe", "port_probe", "event_write", "cert_remove", "event_write",
    ]

    after = lab.host_files("xu01")
    again = lab.playbook([task], tmp_path=tmp_path)
    assert again.rc == 0, again.stdout + again.stderr
    assert again.of("xu01", "swap")["changed"] is False
    assert lab.host_files("xu01") == after
    assert len(lab.events("xu01", "remote_call")) == 4 and lab.events("xu01", "remote_call")[-1]["ops"][0] == "discover"


def test_new_thumbprint_after_win_acme(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    """The xu-le.ps1 case: win-acme put a new certificate into the store and deleted the old one; XU still serves the old."""
    lab = start(lab_factory, hosts=2)
    renewals = {host: json.loads(lab.xulab("winacme", "--dir", str(lab.dir), "--host", host)) for host in lab.hosts}
    for host, renewal in renewals.items():
        assert renewal["old_thumbprint"] == bound(lab, host) and renewal["old_thumbprint"] not in store(lab, host)
    task = swap_task(old_thumbprint="{{ old }}", new_thumbprint="{{ new }}", grant_key_access=True)
    inventory_vars = {host: {"old": r["old_thumbprint"], "new": r["new_thumbprint"]} for host, r in renewals.items()}
    (tmp_path / "host_vars").mkdir()
    for host, values in inventory_vars.items():
        (tmp_path / "host_vars" / f"{host}.yml").write_text(json.dumps(values))

    run = lab.playbook([task], tmp_path=tmp_path)
    assert run.rc == 0, run.stdout + run.stderr
    for host, renewal in renewals.items():
        result = run.of(host, "swap")
        assert result["changed"] is True and result["key_access_granted"] is True and result["imported"] is False
        assert served(lab, host) == {8064: renewal["new_thumbprint"], 8165: renewal["new_thumbprint"]}
        assert bound(lab, host) == renewal["new_thumbprint"]
        calls = lab.events(host, "remote_call")
        assert len(calls) == 2
        # The old certificate is gone, so the restart runs without a rollback to it; the new one is checked present in
        # the same call, before anything names it.
        assert calls[1]["ops"] == ["cert_check", "key_grant_read", "file_write", "service_restart", "port_probe", "port_probe", "event_write"]

    again = lab.playbook([task], tmp_path=tmp_path)
    assert all(again.of(host, "swap")["changed"] is False for host in lab.hosts)


def test_renewal_with_the_same_key(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab = start(lab_factory)
    old = bound(lab)
    key_id = store(lab)[old]["key_id"]
    task = swap_task(old_thumbprint=old, renew_reusing_key=True)
    before = lab.host_files("xu01")

    checked = lab.playbook([task], tmp_path=tmp_path, check=True)
    result = checked.of("xu01", "swap")
    assert result["changed"] is True and result["renewed"] is True and result["new_thumbprint"] is None
    assert lab.host_files("xu01") == before and lab.events("xu01", "cert_add")[-1]["source"] == "provision"

    lab.fault("xu01", certreq_fails=1)
    failed = lab.playbook([task], tmp_path=tmp_path)
    result = failed.of("xu01", "swap")
    assert result["_status"] == "failed" and "nothing was changed" in result["msg"] and "RPC server is unavailable" in result["msg"]
    assert lab.host_files("xu01") == before and old in store(lab) and served(lab) == {8064: old, 8165: old}
    assert [e["type"] for e in changes(lab)].count("cert_add") == 1
    assert [call["ops"] for call in lab.events("xu01", "remote_call")][-1] == ["cert_renew_reuse_key", "journal_write"]

    calls_before = len(lab.events("xu01", "remote_call"))
    renewed = lab.playbook([task], tmp_path=tmp_path)
    assert renewed.rc == 0, renewed.stdout + renewed.stderr
    result = renewed.of("xu01", "swap")
    new = result["new_thumbprint"]
    assert result["changed"] and result["renewed"] and new != old
    certificates = store(lab)
    assert old not in certificates and certificates[new]["key_id"] == key_id
    assert lab.events("xu01", "cert_archive")[-1]["thumbprint"] == old
    assert bound(lab) == new and served(lab) == {8064: new, 8165: new}
    calls = lab.events("xu01", "remote_call")[calls_before:]
    assert [call["ops"][0] for call in calls] == ["discover", "cert_renew_reuse_key", "file_write"]

    again = lab.playbook([task], tmp_path=tmp_path)
    result = again.of("xu01", "swap")
    assert result["changed"] is False and result["new_thumbprint"] == new and result["renewed"] is False


def test_bad_inputs_leave_the_host_untouched(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab = start(lab_factory)
    old = bound(lab)
    password = new_password()
    issue(lab, tmp_path, "good.pfx", password)
    issue(lab, tmp_path, "expired.pfx", password, "--expired")
    issue(lab, tmp_path, "early.pfx", password, "--not-yet-valid")
    issue(lab, tmp_path, "other-name.pfx", password, "--san", "intranet.example.com")
    issue(lab, tmp_path, "client-only.pfx", password, "--no-server-auth")
    unreferenced = "1" * 40
    pfx = {"pfx_password": password, "grant_key_access": True}
    # (task, expected message, remote calls it may make: only the read)
    cases = [
        (swap_task("wrong password", old_thumbprint=old, pfx_path="good.pfx", pfx_password=WRONG_PASSWORD, grant_key_access=True),
         "the password (pfx_password) is wrong", 0),
        (swap_task("expired", old_thumbprint=old, pfx_path="expired.pfx", **pfx), "expired on", 0),
        (swap_task("not yet valid", old_thumbprint=old, pfx_path="early.pfx", **pfx), "is not valid before", 0),
        (swap_task("wrong SAN", old_thumbprint=old, pfx_path="other-name.pfx", strict_san=True, **pfx), "does not name xu01.xulab.test", 1),
        (swap_task("no server auth", old_thumbprint=old, pfx_path="client-only.pfx", strict_san=True, **pfx), "Server Authentication", 0),
        (swap_task("unreferenced", old_thumbprint=unreferenced, pfx_path="good.pfx", **pfx), f"No settings reference the old certificate {unreferenced}", 1),
        (swap_task("malformed", old_thumbprint=old[:-2] + "XY", pfx_path="good.pfx", **pfx), "is not a certificate thumbprint", 0),
        (swap_task("two sources", old_thumbprint=old, pfx_path="good.pfx", new_thumbprint=old, **pfx), "mutually exclusive", 0),
        (swap_task("missing file", old_thumbprint=old, pfx_path="absent.pfx", **pfx), "cannot be read on the controller", 0),
        (swap_task("key not readable", old_thumbprint=old, pfx_path="good.pfx", pfx_password=password), "grant_key_access: true", 1),
    ]
    before = lab.host_files("xu01")
    events_before = changes(lab)
    for task, message, reads in cases:
        calls_before = len(lab.events("xu01", "remote_call"))
        run = lab.playbook([task], tmp_path=tmp_path)
        result = run.of("xu01", task["name"])
        assert result["_status"] == "failed" and message in result["msg"], (task["name"], result["msg"])
        calls = lab.events("xu01", "remote_call")[calls_before:]
        assert len(calls) == reads and all(call["ops"][0] == "discover" for call in calls), task["name"]
        assert lab.host_files("xu01") == before, task["name"]
    assert changes(lab) == events_before
    assert served(lab) == {8064: old, 8165: old} and set(store(lab)) == {old}


def test_no_reference_allowed_imports_without_touching_the_settings(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab = start(lab_factory)
    password = new_password()
    minted = issue(lab, tmp_path, "spare.pfx", password)
    before = lab.host_files("xu01")
    task = swap_task(old_thumbprint="2" * 40, pfx_path="spare.pfx", pfx_password=password, grant_key_access=True, allow_no_reference=True)
    run = lab.playbook([task], tmp_path=tmp_path)
    assert run.rc == 0, run.stdout + run.stderr
    result = run.of("xu01", "swap")
    assert result["changed"] is True and result["imported"] is True and result["references"] == [] and result["restarted"] is False
    assert minted["thumbprint"] in store(lab) and lab.host_files("xu01") == before
    assert lab.events("xu01", "service")[-1]["listeners"][0]["thumbprint"] != minted["thumbprint"]


def test_restart_failure_rolls_back(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab = start(lab_factory)
    old = bound(lab)
    password = new_password()
    minted = issue(lab, tmp_path, "new.pfx", password)
    tls_file = lab.dir / "hosts" / "xu01" / "fs" / TLS_JSON
    original = tls_file.read_bytes()
    lab.fault("xu01", restart_fails=1)
    task = swap_task(old_thumbprint=old, pfx_path="new.pfx", pfx_password=password, grant_key_access=True, remove_old=True)
    run = lab.playbook([task], tmp_path=tmp_path)
    result = run.of("xu01", "swap")
    assert result["_status"] == "failed" and result["rolled_back"] is True, result
    assert "rolled back" in result["msg"] and result["imported_thumbprint"] == minted["thumbprint"]
    assert tls_file.read_bytes() == original
    certificates = store(lab)
    assert old in certificates and minted["thumbprint"] in certificates
    assert served(lab) == {8064: old, 8165: old} and lab.state("xu01")["service"]["state"] == "Running"
    assert lab.events("xu01", "cert_remove") == []
    assert len(lab.events("xu01", "settings_restore")) == 1
    assert len(lab.events("xu01", "remote_call")) == 3  # read, apply, rollback
    assert password not in json.dumps(run.results) + run.stdout + run.stderr


def test_a_lost_answer_leaves_only_what_the_host_itself_confirmed(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    """The apply call's answer is lost: the controller never saw the restart's verdict. The host removed the old
    certificate only because it saw, in the same call, the new one served and the web server answering."""
    lab = start(lab_factory)
    old = bound(lab)
    password = new_password()
    minted = issue(lab, tmp_path, "new.pfx", password)
    lab.fault("xu01", drop_connection="port_probe")
    task = swap_task(old_thumbprint=old, pfx_path="new.pfx", pfx_password=password, grant_key_access=True, remove_old=True)
    run = lab.playbook([task], tmp_path=tmp_path)
    result = run.of("xu01", "swap")
    assert result["_status"] in ("failed", "unreachable"), result
    events = lab.events("xu01")
    serving_new = next(i for i, e in enumerate(events) if e["type"] == "service" and {x["thumbprint"] for x in e["listeners"]} == {minted["thumbprint"]})
    (removal,) = [i for i, e in enumerate(events) if e["type"] == "cert_remove"]
    assert events[removal]["thumbprint"] == old and removal > serving_new
    (call,) = [c for c in lab.events("xu01", "remote_call") if "cert_remove" in c["ops"]]
    assert call["dropped"] is True and call["statuses"][call["ops"].index("cert_remove")] == "ok"
    assert minted["thumbprint"] in store(lab) and old not in store(lab)


def test_changes_are_refused_on_a_partial_read_or_unknown_settings(lab_factory: Any, tmp_path: pathlib.Path) -> None:
    lab = start(lab_factory)
    old = bound(lab)
    password = new_password()
    minted = issue(lab, tmp_path, "new.pfx", password)
    task = swap_task(old_thumbprint=old, pfx_path="new.pfx", pfx_password=password, grant_key_access=True)
    before = lab.host_files("xu01")
    events_before = changes(lab)

    # The store cannot be listed: every certificate would look absent (the old one too, so no rollback).
    lab.fault("xu01", fail_primitive="cert_list")
    run = lab.playbook([task], tmp_path=tmp_path)
    result = run.of("xu01", "swap")
    assert result["_status"] == "failed" and "could not be read (cert_list: UnauthorizedAccessException" in result["msg"], result
    assert lab.host_files("xu01") == before and changes(lab) == events_before
    assert [call["ops"][0] for call in lab.events("xu01", "remote_call")] == ["discover"]

    # A protocol value this collection does not know: what the web server serves could not be checked.
    tls_file = lab.dir / "hosts" / "xu01" / "fs" / TLS_JSON
    tls_file.write_bytes(tls_file.read_bytes().replace(b'"HttpsUnrestricted"', b'"HttpsWithClientCertificates"'))
    edited = lab.host_files("xu01")
    run = lab.playbook([task], tmp_path=tmp_path)
    result = run.of("xu01", "swap")
    assert result["_status"] == "failed" and '"HttpsWithClientCertificates", not one of' in result["msg"], result
    assert "settings_map.web_protocol" in result["msg"]
    assert lab.host_files("xu01") == edited and changes(lab) == events_before
    assert [call["ops"][0] for call in lab.events("xu01", "remote_call")] == ["discover", "discover"]
    assert minted["thumbprint"] not in store(lab) and served(lab) == {8064: old, 8165: old}


@pytest.mark.parametrize("verbosity", [5])
def test_pfx_password_never_leaks(lab_factory: Any, tmp_path: pathlib.Path, verbosity: int) -> None:
    lab = start(lab_factory)
    password = new_password()
    issue(lab, tmp_path, "new.pfx", password)
    task = swap_task(old_thumbprint=bound(lab), pfx_path="new.pfx", pfx_password=password, grant_key_access=True, remove_old=True)
    run = lab.playbook([task], tmp_path=tmp_path, verbosity=verbosity, diff=True)
    assert run.rc == 0, run.stdout + run.stderr
    assert run.of("xu01", "swap")["imported"] is True
    # The run is really verbose: the agent's command line and answers are in the output.
    assert "EncodedCommand" in run.stdout + run.stderr
    assert password not in run.stdout + run.stderr
    assert password not in json.dumps(run.results)
    host_dir = lab.dir / "hosts" / "xu01"
    assert (host_dir / "transcript.log").stat().st_size > 0
    for path in host_dir.rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path
            assert password.encode("utf-16-le") not in path.read_bytes(), path
    assert password not in (lab.dir / "lab.log").read_text()
