"""file_remove, cert_remove's require_served and where an imported PFX key lands, against an in-process host."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from lab.labkit import AgentCall, HostFactory, brief, events, only_result, results, run

from xulab.ca import pfx_key_provider
from xulab.host import Host
from xulab.renewals import issue_pfx
from xulab.xusettings import TLS_SETTINGS

TLS_JSON = "C:\\Program Files\\XtractUniversal\\config\\servers\\tls.json"
BACKUP = TLS_JSON + ".removed"
JOURNAL = "C:\\ProgramData\\xtractuniversal.tls\\renew.xu01.json"
FREE_PORT = 8166


def bound(host: Host) -> str:
    value: str = json.loads(host.fs.resolve(TLS_SETTINGS).read_text())["WebServer"]["Certificate"]["Thumbprint"]
    return value


def served(port: int, thumbprint: str) -> dict[str, Any]:
    return {"port": port, "thumbprint": thumbprint}


async def import_second_certificate(host: Host, agent_call: AgentCall) -> str:
    minted = issue_pfx(host, "pfx-pass")
    _call, answer = await agent_call(host, [("pfx_import", {"pfx_b64": minted["pfx_b64"], "password": "pfx-pass", "exportable": False})])
    thumbprint: str = only_result(answer)["thumbprint"]
    return thumbprint


def test_file_remove_deletes_or_moves_the_file(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            original = host.fs.resolve(TLS_JSON).read_bytes()
            _call, answer = await agent_call(host, [("file_remove", {"path": TLS_JSON.upper(), "backup_path": BACKUP})])
            assert only_result(answer) == {"removed": True, "backup_path": BACKUP}
            assert not host.fs.resolve(TLS_JSON).exists()
            assert host.fs.resolve(BACKUP).read_bytes() == original
            # As settings_write does, the event names the file as the request spelled it.
            assert events(host, "settings_remove")[-1] == events(host)[-2] | {"file": TLS_JSON.upper(), "backup": BACKUP}
            # Nothing there any more: no error, nothing removed, no event.
            count = len(events(host))
            _call, answer = await agent_call(host, [("file_remove", {"path": TLS_JSON, "backup_path": None})])
            assert only_result(answer) == {"removed": False, "backup_path": None}
            assert [e["type"] for e in events(host)[count:]] == ["remote_call"]
            # Deleted outright.
            _call, answer = await agent_call(host, [("file_remove", {"path": BACKUP, "backup_path": None})])
            assert only_result(answer) == {"removed": True, "backup_path": None}
            assert not host.fs.resolve(BACKUP).exists()
            assert events(host, "settings_remove")[-1] | {"ts": 0} == events(host)[-2] | {"ts": 0, "file": BACKUP, "backup": None}
            _call, answer = await agent_call(host, [("file_remove", {"path": "relative\\x", "backup_path": None})])
            assert brief(results(answer)[0]["error"]) == {"type": "InvalidArgument", "message": "path must be an absolute path"}

    run(scenario())


def test_file_remove_does_not_overwrite_an_existing_backup(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            original = host.fs.resolve(TLS_JSON).read_bytes()
            _call, answer = await agent_call(host, [("file_write", {"path": BACKUP, "content": "older"}),
                                                    ("file_remove", {"path": TLS_JSON, "backup_path": BACKUP})])
            assert brief(results(answer)[1]["error"]) == {"type": "IOException", "message": "Cannot create a file when that file already exists."}
            assert host.fs.resolve(TLS_JSON).read_bytes() == original
            assert host.fs.resolve(BACKUP).read_bytes() == b"older"
            assert events(host, "settings_remove") == []
            missing_folder = "C:\\Program Files\\XtractUniversal\\config\\nowhere\\tls.json"
            _call, answer = await agent_call(host, [("file_remove", {"path": TLS_JSON, "backup_path": missing_folder})])
            assert brief(results(answer)[0]["error"]) == {"type": "DirectoryNotFoundException", "message": "Could not find a part of the path."}
            assert host.fs.resolve(TLS_JSON).read_bytes() == original

    run(scenario())


def test_file_remove_of_a_journal_is_a_journal_event(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            _call, answer = await agent_call(host, [("journal_write", {"name": "renew.xu01", "content": "{}"}),
                                                    ("file_remove", {"path": JOURNAL, "backup_path": None}),
                                                    ("journal_read", {"name": "renew.xu01"})])
            assert results(answer)[1]["result"] == {"removed": True, "backup_path": None}
            assert results(answer)[2]["result"] == {"exists": False, "content": None, "sha256": None}
            assert events(host, "journal")[-1] | {"ts": 0} == events(host)[-2] | {"ts": 0, "name": JOURNAL, "action": "remove"}
            assert events(host, "settings_remove") == []

    run(scenario())


def test_cert_remove_when_the_required_certificates_are_served(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            current = bound(host)
            spare = await import_second_certificate(host, agent_call)
            remove = {"store": "My", "thumbprint": spare, "require_served": [served(8165, current), served(8064, current.lower())]}
            _call, answer = await agent_call(host, [("cert_remove", remove)])
            assert only_result(answer) == {"removed": True}
            assert host.stores.my.get(spare) is None and host.stores.my.get(current) is not None
            assert events(host, "cert_remove")[-1]["thumbprint"] == spare
            # An empty list or null requires nothing.
            _call, answer = await agent_call(host, [("cert_remove", {"store": "My", "thumbprint": spare, "require_served": []})])
            assert only_result(answer) == {"removed": False}

    run(scenario())


def test_cert_remove_fails_when_another_certificate_is_served(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            current = bound(host)
            spare = await import_second_certificate(host, agent_call)
            count = len(events(host, "cert_remove"))
            remove = {"store": "My", "thumbprint": current, "require_served": [served(8165, spare)]}
            _call, answer = await agent_call(host, [("cert_remove", remove), ("cert_list", {"store": "My", "thumbprints": None})])
            first, second = results(answer)
            assert brief(first["error"]) == {"type": "PreconditionFailed", "message": f"port 8165 presents {current}, not {spare}"}
            assert second["status"] == "skipped"
            assert host.stores.my.get(current) is not None and host.stores.my.get(spare) is not None
            assert len(events(host, "cert_remove")) == count

    run(scenario())


def test_cert_remove_fails_when_a_required_port_serves_nothing(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            current = bound(host)
            remove = {"store": "My", "thumbprint": current, "require_served": [served(8165, current), served(FREE_PORT, current)]}
            _call, answer = await agent_call(host, [("cert_remove", remove)])
            error = results(answer)[0]["error"]
            assert error["type"] == "PreconditionFailed"
            assert error["message"] == (
                f"port {FREE_PORT} presents no certificate (No connection could be made because the target machine actively "
                f"refused it 127.0.0.1:{FREE_PORT}), not {current}"
            )
            assert host.stores.my.get(current) is not None
            assert events(host, "cert_remove") == []

    run(scenario())


def test_cert_remove_fails_when_a_required_port_speaks_no_tls(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("tls_off") as host:
            (thumbprint,) = [entry.thumbprint for entry in host.stores.my.entries()]
            remove = {"store": "My", "thumbprint": thumbprint, "require_served": [served(8065, thumbprint)]}
            _call, answer = await agent_call(host, [("cert_remove", remove)])
            assert brief(results(answer)[0]["error"]) == {
                "type": "PreconditionFailed",
                "message": f"port 8065 presents no certificate (The handshake failed due to an unexpected packet format.), not {thumbprint}",
            }
            assert host.stores.my.get(thumbprint) is not None

    run(scenario())


def test_an_imported_pfx_key_lands_in_a_legacy_csp(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            spare = await import_second_certificate(host, agent_call)
            _call, answer = await agent_call(host, [("cert_list", {"store": "My", "thumbprints": [spare]})])
            (listed,) = only_result(answer)["certificates"]
            assert listed["key"]["provider"] == "CSP"
            assert next(c for c in host.state()["certificates"] if c["thumbprint"] == spare)["provider"] == "CSP"

    run(scenario())


def test_a_pfx_that_names_a_key_storage_provider_keeps_its_key_in_cng(tmp_path: Path) -> None:
    key, certificate = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(certificate),
         "-subj", "/CN=xulab-test", "-days", "1"],
        check=True, capture_output=True,
    )

    def export(*extra: str) -> bytes:
        out = tmp_path / "out.pfx"
        subprocess.run(
            ["openssl", "pkcs12", "-export", "-inkey", str(key), "-in", str(certificate), "-out", str(out), "-passout", "pass:x", *extra],
            check=True, capture_output=True,
        )
        return out.read_bytes()

    assert pfx_key_provider(export()) == "CSP"
    assert pfx_key_provider(export("-CSP", "Microsoft Enhanced RSA and AES Cryptographic Provider")) == "CSP"
    assert pfx_key_provider(export("-CSP", "Microsoft Software Key Storage Provider")) == "CNG"
