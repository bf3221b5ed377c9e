"""Primitives against an in-process host: files, certificates, renewals, firewall, tasks, probes."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from lab.labkit import AgentCall, HostFactory, brief, events, only_result, results, run

from xulab.host import Host
from xulab.renewals import issue_pfx, winacme_renew
from xulab.timefmt import FleetClock, HostClock
from xulab.xusettings import TLS_SETTINGS

TLS_JSON = "C:\\Program Files\\XtractUniversal\\config\\servers\\tls.json"
BACKUP = TLS_JSON + ".bak"
RESTART = ("service_restart", {"name": "XtractUniversal Service", "wait_ports": [8165], "timeout_s": 5})


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def bound(host: Host) -> str:
    value: str = json.loads(host.fs.resolve(TLS_SETTINGS).read_text())["WebServer"]["Certificate"]["Thumbprint"]
    return value


def test_file_write_checks_hashes_and_backs_up_only_what_existed(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            original = host.fs.resolve(TLS_JSON).read_bytes().decode()
            write: dict[str, Any] = {"path": TLS_JSON, "content": "{}", "backup_path": BACKUP, "expected_sha256": "absent"}
            _result, answer = await agent_call(host, [("file_write", write)])
            assert brief(results(answer)[0]["error"]) == {"type": "HashMismatch", "message": f"{TLS_JSON} exists"}
            write["expected_sha256"] = sha256(original).upper()
            _result, answer = await agent_call(host, [("file_write", write)])
            assert only_result(answer) == {"sha256": sha256("{}"), "previous_sha256": sha256(original), "backup_path": BACKUP}
            assert host.fs.resolve(BACKUP).read_bytes().decode() == original
            assert events(host, "settings_write")[-1] == events(host)[-2] | {"file": TLS_JSON, "backup": BACKUP, "sha256": sha256("{}")}
            new_file = "c:\\program files\\xtractuniversal\\CONFIG\\servers\\new\\x.json"
            _result, answer = await agent_call(host, [("file_write", {"path": new_file, "content": "ü", "backup_path": BACKUP})])
            assert only_result(answer)["backup_path"] is None and only_result(answer)["previous_sha256"] is None
            assert host.fs.resolve(new_file).read_bytes() == "ü".encode()
            _result, answer = await agent_call(host, [("file_restore", {"backup_path": BACKUP, "path": TLS_JSON})])
            assert only_result(answer) == {"sha256": sha256(original), "kept_current_path": None}
            assert events(host)[-2]["type"] == "settings_restore"
            _result, answer = await agent_call(host, [("file_write", {"path": "relative\\x", "content": ""})])
            assert brief(results(answer)[0]["error"]) == {"type": "InvalidArgument", "message": "path must be an absolute path"}
            assert not any(p.name.endswith(".xutls.tmp") for p in host.fs.all_files())

    run(scenario())


def test_an_imported_pfx_needs_a_read_grant_before_xu_can_use_it(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            minted = issue_pfx(host, "pfx-pass")
            imported = {"pfx_b64": minted["pfx_b64"], "password": "pfx-pass", "exportable": False}
            _result, answer = await agent_call(host, [("pfx_import", imported), ("pfx_import", imported)])
            first, again = (r["result"] for r in results(answer))
            # The PFX carries the lab's root as well: a root is never added to any store.
            assert first == {"thumbprint": minted["thumbprint"], "already_present": False, "repaired": False, "chain_added": []}
            assert again == {"thumbprint": minted["thumbprint"], "already_present": True, "repaired": False, "chain_added": []}
            assert host.state()["intermediate_certificates"] == []
            text = host.fs.resolve(TLS_SETTINGS).read_text().replace(bound(host), str(minted["thumbprint"]))
            _result, answer = await agent_call(host, [("file_write", {"path": TLS_JSON, "content": text}), RESTART])
            assert results(answer)[1]["result"]["state"] == "Stopped"
            assert "cannot read the private key" in events(host, "service")[-1]["reason"]
            grant = ("key_grant_read", {"thumbprint": minted["thumbprint"], "account": "NT Service\\XtractUniversal Service"})
            _result, answer = await agent_call(host, [grant, grant, RESTART])
            assert [r["result"].get("changed") for r in results(answer)[:2]] == [True, False]
            assert results(answer)[2]["result"]["started"] is True
            assert host.service.listeners[-1].thumbprint == minted["thumbprint"]
            _result, answer = await agent_call(host, [("key_grant_read", {"thumbprint": minted["thumbprint"], "account": "NOBODY\\x"})])
            assert results(answer)[0]["error"]["type"] == "IdentityNotMappedException"

    run(scenario())


def test_certreq_renewal_keeps_key_and_acl_and_archives_the_old_certificate(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            old = bound(host)
            host.faults.set("certreq_fails", "1")
            _result, answer = await agent_call(host, [("cert_renew_reuse_key", {"thumbprint": old})])
            error = results(answer)[0]["error"]
            assert error["type"] == "CertreqFailed" and error["message"].startswith("certreq exited with -2147023174: ")
            _result, answer = await agent_call(host, [("cert_renew_reuse_key", {"thumbprint": old.lower()}), ("cert_list", {"store": "My"})])
            renewed = results(answer)[0]["result"]
            assert renewed["output"].startswith("Active Directory Enrollment Policy")
            listed = results(answer)[1]["result"]["certificates"]
            assert [c["thumbprint"] for c in listed] == [renewed["thumbprint"]]  # the old one is archived
            state = {c["thumbprint"]: c for c in host.state()["certificates"]}
            assert state[old]["archived"] is True and state[old]["key_id"] == state[renewed["thumbprint"]]["key_id"]
            assert state[old]["key_acl"] == state[renewed["thumbprint"]]["key_acl"]
            new = x509.load_der_x509_certificate(base64.b64decode(listed[0]["der_b64"]))
            assert new.not_valid_after_utc - datetime.now(UTC) > timedelta(days=364)

    run(scenario())


def test_an_expired_certificate_cannot_be_renewed_with_its_key(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("expired") as host:
            _result, answer = await agent_call(host, [("cert_renew_reuse_key", {"thumbprint": bound(host)})])
            assert "CERT_E_EXPIRED" in results(answer)[0]["error"]["message"]

    run(scenario())


def test_winacme_replaces_key_and_certificate_without_touching_xu(host_factory: HostFactory) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            old = bound(host)
            outcome = winacme_renew(host)
            assert outcome["old_thumbprint"] == old
            new = host.stores.my.get(str(outcome["new_thumbprint"]))
            assert new is not None and host.stores.my.get(old) is None
            assert new.key is not None and not new.key.readable_by_xu_service()
            assert host.service.listeners[-1].thumbprint == old
            assert [e["type"] for e in events(host)[-2:]] == ["cert_add", "cert_remove"]
            keys = [c.public_key_id for c in host.stores.my.all_entries()]
            assert len(keys) == len(set(keys))

    run(scenario())


def test_fw_set_replaces_only_its_group_and_a_task_reopens_it(host_factory: HostFactory, agent_call: AgentCall) -> None:
    stopped = datetime(2026, 11, 26, 20, 11, 57, 250000, tzinfo=UTC).timestamp()

    async def scenario() -> None:
        # Real time stands still for this host: only the test moves its clock.
        async with host_factory("healthy", clock=HostClock(FleetClock(lambda: stopped))) as host:
            block = [{"name": "xu-tls-block", "display_name": "XU TLS renewal block", "action": "Block", "local_ports": ["8064", "8065", "8165"]}]
            task = {"name": "xu-tls-reopen", "delay_s": 60, "fw_group_to_remove": "XU TLS Block", "description": "dead man"}
            _result, answer = await agent_call(host, [("fw_set", {"group": "XU TLS Block", "rules": block}), ("task_register", task),
                                                      ("task_get", {"name": "xu-tls-reopen"}), ("fw_get", {"group": "Windows Remote Management"})])
            assert [r["status"] for r in results(answer)] == ["ok"] * 4
            assert results(answer)[2]["result"]["task"]["description"] == "dead man"
            # The built-in group has an indirect name: none has this one, and Windows says so with the query's error record.
            windows_rules = results(answer)[3]["result"]
            assert windows_rules["rules"] is None and windows_rules["rules_error"]["fqid"].startswith("CmdletizationQuery_NotFound")
            assert host.exposure() == {"8064": "closed", "8065": "closed", "8165": "closed"}
            assert len(host.firewall.rules) == 3
            # The trigger is the host's now plus the delay, in whole seconds; it runs when the host's clock gets there.
            run_at = results(answer)[1]["result"]["run_at_utc"]
            assert results(answer)[2]["result"]["task"]["next_run_utc"] == run_at
            assert run_at == "2026-11-26T20:12:58Z"
            host.clock.fleet.advance(60.749)
            assert host.exposure() == {"8064": "closed", "8065": "closed", "8165": "closed"} and len(host.tasks) == 1
            host.clock.fleet.advance(0.001)
            assert host.exposure() == {"8064": "open", "8065": "open", "8165": "open"}
            assert len(host.tasks) == 0
            assert events(host, "task")[-1] == events(host)[-1] | {"action": "ran", "name": "xu-tls-reopen", "removed_rules": 1}
            assert events(host, "task")[-1]["ts"] == datetime.fromisoformat(run_at.replace("Z", "+00:00")).timestamp()
            assert events(host, "firewall")[-1]["exposure"]["8165"] == "open"
            previous = [{"name": "prev", "display_name": "prev", "action": "Block", "local_ports": ["8165"], "remote_addresses": ["10.9.9.9"]}]
            _result, answer = await agent_call(host, [("fw_set", {"group": "Partial", "rules": previous})])
            assert results(answer)[0]["status"] == "ok"
            for address in ("10.0.0.999", "::/0"):
                bad = [{"name": "ok-rule", "display_name": "ok"}, {"name": "bad", "display_name": "bad", "remote_addresses": [address]}]
                _result, answer = await agent_call(host, [("fw_set", {"group": "Partial", "rules": bad})])
                assert results(answer)[0]["error"]["type"] == "CimException"
                # New-NetFirewallRule stopped midway: what was added goes, the previous rule is back.
                restored = host.firewall.group_rules("Partial")
                assert [(r.name, r.action, r.remote_addresses) for r in restored] == [("prev", "Block", ["10.9.9.9"])]

    run(scenario())


def test_journals(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            _result, answer = await agent_call(host, [("journal_write", {"name": "renew.xu01", "content": '{"step": 1}'}),
                                                      ("journal_read", {"name": "renew.xu01"}),
                                                      ("journal_write", {"name": "renew.xu01", "content": None}),
                                                      ("journal_read", {"name": "renew.xu01"}), ("journal_read", {"name": "../x"})])
            statuses = [r["status"] for r in results(answer)]
            assert statuses == ["ok", "ok", "ok", "ok", "error"]
            assert results(answer)[0]["result"] == {"path": "C:\\ProgramData\\xtractuniversal.tls\\renew.xu01.json"}
            assert results(answer)[1]["result"] == {"exists": True, "content": '{"step": 1}', "sha256": sha256('{"step": 1}')}
            assert results(answer)[3]["result"] == {"exists": False, "content": None, "sha256": None}
            assert [e["action"] for e in events(host, "journal")] == ["write", "remove"]
            # A guarded write goes only over the journal that was read: a run's lease cannot be taken by two runs.
            guarded = ("journal_write", {"name": "renew.xu01", "content": '{"step": 2}', "expected_sha256": "absent"})
            _result, answer = await agent_call(host, [guarded, guarded], stop_on_error=False)
            assert results(answer)[0]["status"] == "ok" and results(answer)[1]["error"]["type"] == "HashMismatch"
            stale = ("journal_write", {"name": "renew.xu01", "content": None, "expected_sha256": sha256('{"step": 1}')})
            _result, answer = await agent_call(host, [stale])
            assert results(answer)[0]["error"]["type"] == "HashMismatch"
            assert host.journals() == {"renew.xu01": '{"step": 2}'}

    run(scenario())


def test_port_probe_sees_what_is_served_and_another_hosts_firewall(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        hosts: dict[str, Host] = {}
        async with host_factory("tls_off", lookup=hosts.get) as plain, host_factory("healthy", lookup=hosts.get) as secure:
            hosts.update({secure.fqdn: secure, plain.fqdn: plain})
            probes = [
                ("port_probe", {"host": "localhost", "port": 8065, "tls": False, "http_path": "/version", "timeout_ms": 2000}),
                ("port_probe", {"host": "localhost", "port": 8065, "tls": True, "http_path": None, "timeout_ms": 2000}),
                ("port_probe", {"host": "localhost", "port": 8064, "tls": True, "http_path": None, "timeout_ms": 2000}),
                ("port_probe", {"host": "localhost", "port": 8165, "tls": True, "http_path": None, "timeout_ms": 2000}),
                ("port_probe", {"host": secure.fqdn, "port": 8165, "tls": True, "http_path": "/version", "timeout_ms": 2000}),
                ("port_probe", {"host": "nohost.example", "port": 8165, "timeout_ms": 2000}),
            ]
            _result, answer = await agent_call(plain, probes)
            http, https_on_http, tls_on_tcp, closed, remote, unknown = (r["result"] for r in results(answer))
            assert (http["http_status"], http["http_body"]) == (200, '{"version":"6.8.1.2"}')
            assert https_on_http["tls_error"] == "The handshake failed due to an unexpected packet format."
            assert tls_on_tcp["tls_error"] == "Authentication failed because the remote party has closed the transport stream."
            assert not closed["connected"] and "actively refused it 127.0.0.1:8165" in closed["error"]
            assert remote["http_status"] == 200 and remote["der_b64"] is not None, remote["error"]
            assert unknown["error"] == "No such host is known"
            rules = [{"name": "XtractUniversal-In", "display_name": "XU", "local_ports": ["8165"], "remote_addresses": ["192.0.2.0/24"]}]
            await agent_call(secure, [("fw_set", {"group": "Xtract Universal", "rules": rules})])
            _result, answer = await agent_call(plain, [("port_probe", {"host": secure.fqdn, "port": 8165, "tls": True, "timeout_ms": 300})])
            assert only_result(answer)["error"] == f"connecting to {secure.fqdn}:8165 timed out"

    run(scenario())
