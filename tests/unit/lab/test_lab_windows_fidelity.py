"""The lab fails where Windows fails: each test is a place where a kinder lab let a wrong agent or controller pass.

What Windows does in each case is in tests/lab/README.md ("Where the lab is strict"), with
what is still unverified on a real server.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from lab.labkit import AgentCall, HostFactory, brief, events, only_result, results, run

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._windows_errors import NOT_FOUND, classify
from xulab import xuservice
from xulab.accounts import service_sid
from xulab.certstore import AclEntry
from xulab.errors import LabError
from xulab.host import Host
from xulab.renewals import issue_pfx
from xulab.xuservice import ServiceStartError, ServiceStopError
from xulab.xusettings import TLS_SETTINGS

TLS_JSON = "C:\\Program Files\\XtractUniversal\\config\\servers\\tls.json"
RESTART = ("service_restart", {"name": "XtractUniversal Service", "wait_ports": [8165], "timeout_s": 3})
NETWORK_SERVICE_SID = "S-1-5-20"
KEY_READERS_SID = "S-1-5-21-3623811015-3361044348-30300820-1109"
EVERYONE = ["0.0.0.0/1", "128.0.0.0/1", "::/1", "8000::/1"]
BLOCK = [{"name": "gate", "display_name": "gate", "action": "Block", "local_ports": ["8064", "8065", "8165"], "remote_addresses": EVERYONE}]


def bound(host: Host) -> str:
    value: str = json.loads(host.fs.resolve(TLS_SETTINGS).read_text())["WebServer"]["Certificate"]["Thumbprint"]
    return value


# -- PFX encryption per Windows version ----------------------------------------------------


@pytest.mark.parametrize(("version", "aes_accepted"), [("2016", False), ("2019", True), ("2022", True)])
def test_server_2016_cannot_read_an_aes_pfx_and_says_the_password_is_wrong(
    host_factory: HostFactory, agent_call: AgentCall, version: str, aes_accepted: bool
) -> None:
    async def scenario() -> None:
        async with host_factory("healthy", windows_version=version) as host:
            aes = issue_pfx(host, "pfx-pass", aes=True)
            _result, answer = await agent_call(host, [("pfx_import", {"pfx_b64": aes["pfx_b64"], "password": "pfx-pass"})])
            entry = results(answer)[0]
            if aes_accepted:
                assert entry["status"] == "ok"
            else:
                assert brief(entry["error"]) == {"type": "CryptographicException", "message": "The specified network password is not correct."}
                assert host.stores.my.get(str(aes["thumbprint"])) is None
            legacy = issue_pfx(host, "pfx-pass")
            _result, answer = await agent_call(host, [("pfx_import", {"pfx_b64": legacy["pfx_b64"], "password": "pfx-pass"})])
            assert only_result(answer)["already_present"] is False
            _result, answer = await agent_call(host, [("discover", {"service_name": "XtractUniversal Service", "files": []})])
            assert only_result(answer)["computer"]["os_version"] == {"2016": "10.0.14393", "2019": "10.0.17763", "2022": "10.0.20348"}[version]

    run(scenario())


# -- firewall: profiles, policy, the service -------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "value", "profile_field"),
    [("firewall_profile_off", "Domain", "enabled"), ("firewall_local_rules", "ignored", "local_rules_applied")],
)
def test_a_block_rule_without_effect_is_reported_and_leaves_the_ports_open(
    host_factory: HostFactory, agent_call: AgentCall, setting: str, value: str, profile_field: str
) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            host.faults.set(setting, value)
            _result, answer = await agent_call(host, [("fw_set", {"group": "Gate", "rules": BLOCK}), ("fw_get", {"group": "Gate"})])
            read = results(answer)[1]["result"]
            assert [rule["name"] for rule in read["rules"]] == ["gate"]  # stored ...
            domain = next(profile for profile in read["profiles"] if profile["name"] == "Domain")
            assert domain[profile_field] is False  # ... and the answer says why it does nothing
            if setting == "firewall_local_rules":
                # None of the group's rules is in the active store: Windows answers that query with its not-found record.
                assert read["active_rules"] is None and read["active_rules_error"]["category"] == "ObjectNotFound"
            # A controller that believed the rule would be wrong: every outside address still gets in.
            assert host.exposure() == {"8064": "open", "8065": "open", "8165": "open"}
            host.faults.set(setting, "none" if setting == "firewall_profile_off" else "applied")
            assert host.exposure() == {"8064": "closed", "8065": "closed", "8165": "closed"}

    run(scenario())


def test_a_stopped_firewall_service_is_an_error_never_an_empty_group(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            host.faults.set("firewall_service", "stopped")
            _result, answer = await agent_call(host, [("fw_get", {"group": "Gate"})])
            assert brief(results(answer)[0]["error"]) == {"type": "CimException", "message": "The service has not been started."}
            _result, answer = await agent_call(host, [("fw_set", {"group": "Gate", "rules": BLOCK})])
            assert results(answer)[0]["status"] == "error"
            assert host.firewall.group_rules("Gate") == []

    run(scenario())


# -- certreq: who enrols ---------------------------------------------------------------------


def test_certreq_in_the_winrm_logon_cannot_reach_the_ca_and_as_the_machine_it_can(
    host_factory: HostFactory, agent_call: AgentCall
) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            old = bound(host)
            _result, answer = await agent_call(host, [("cert_renew_reuse_key", {"thumbprint": old, "run_as": "caller"})])
            error = results(answer)[0]["error"]
            assert error["type"] == "CertreqFailed" and "0x80094015" in error["message"]
            assert host.stores.my.get(old) is not None  # nothing was enrolled, nothing archived
            _result, answer = await agent_call(host, [("cert_renew_reuse_key", {"thumbprint": old})])
            renewed = only_result(answer)
            assert renewed["enrolled_as"] == "machine" and renewed["exit_code"] == 0
            assert [(e["enrolled_as"], e["account"]) for e in events(host, "certreq")] == [
                ("caller", "XULAB\\xuadmin"),
                ("machine", f"XULAB\\{host.name.upper()}$"),
            ]
            # The one-shot SYSTEM task is registered, runs and is gone again.
            assert [e["action"] for e in events(host, "task")] == ["registered", "ran", "removed"]
            _result, answer = await agent_call(host, [("cert_renew_reuse_key", {"thumbprint": renewed["thumbprint"], "run_as": "user"})])
            assert results(answer)[0]["error"]["type"] == "InvalidArgument"

    run(scenario())


# -- strict host-name binding ----------------------------------------------------------------


def test_a_strict_listener_answers_only_to_the_hosts_dns_name(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            host.faults.set("strict_host_name", "true")
            probe = {"host": "localhost", "port": 8165, "tls": True, "http_path": "/version", "timeout_ms": 2000}
            _result, answer = await agent_call(
                host, [("port_probe", probe), ("port_probe", {**probe, "server_name": host.fqdn.upper()})], stop_on_error=False
            )
            by_localhost, by_name = (entry["result"] for entry in results(answer))
            assert by_localhost["tls_error"] is not None and by_localhost["der_b64"] is None
            assert by_name["tls_error"] is None and by_name["http_status"] == 200
            host.faults.set("strict_host_name", "false")
            _result, answer = await agent_call(host, [("port_probe", probe)])
            assert only_result(answer)["http_status"] == 200

    run(scenario())


# -- accounts: SIDs and groups ---------------------------------------------------------------


def test_networkservice_is_granted_by_sid_and_its_name_as_scm_spells_it_does_not_translate(
    host_factory: HostFactory, agent_call: AgentCall
) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            host.faults.set("service_account", "networkservice")
            _result, answer = await agent_call(host, [("discover", {"service_name": "XtractUniversal Service", "files": []}), RESTART])
            service = results(answer)[0]["result"]["service"]
            assert (service["account"], service["account_sid"]) == ("NT AUTHORITY\\NetworkService", NETWORK_SERVICE_SID)
            assert results(answer)[1]["result"]["started"] is False  # the key grants the virtual account, not NetworkService
            thumbprint = bound(host)
            grant_by_name = ("key_grant_read", {"thumbprint": thumbprint, "account": service["account"]})
            _result, answer = await agent_call(host, [grant_by_name])
            assert results(answer)[0]["error"]["type"] == "IdentityNotMappedException"
            _result, answer = await agent_call(host, [("key_grant_read", {"thumbprint": thumbprint, "account": NETWORK_SERVICE_SID}), RESTART])
            assert results(answer)[0]["result"] == {"changed": True, "sid": NETWORK_SERVICE_SID}
            assert results(answer)[1]["result"]["started"] is True
            _result, answer = await agent_call(host, [("cert_list", {"thumbprints": [thumbprint]})])
            acl = only_result(answer)["certificates"][0]["key"]["acl"]
            assert {"identity": "NT AUTHORITY\\NETWORK SERVICE", "sid": NETWORK_SERVICE_SID, "rights": "Read", "type": "Allow"} in acl

    run(scenario())


def test_a_domain_account_reads_a_key_through_its_group(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            host.faults.set("service_account", "domain")
            _result, answer = await agent_call(host, [("discover", {"service_name": "XtractUniversal Service", "files": []})])
            service = only_result(answer)["service"]
            assert service["account"] == "svc-xu@xulab.test" and KEY_READERS_SID in service["account_groups"]
            entry = host.stores.my.get(bound(host))
            assert entry is not None and entry.key is not None
            entry.key.acl = [rule for rule in entry.key.acl if rule.sid != service_sid("XtractUniversal Service")]
            _result, answer = await agent_call(host, [RESTART])
            assert only_result(answer)["started"] is False
            entry.key.acl.append(AclEntry(KEY_READERS_SID, "Read", "Allow"))
            _result, answer = await agent_call(host, [RESTART])
            assert only_result(answer)["started"] is True
            # A Deny for one of the account's groups wins over the Allow.
            entry.key.acl.append(AclEntry("S-1-5-11", "Read", "Deny"))
            _result, answer = await agent_call(host, [RESTART])
            assert only_result(answer)["started"] is False

    run(scenario())


# -- the service: StopPending, StartPending, dependents --------------------------------------


def test_a_stop_that_never_ends_is_not_followed_by_a_start(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            host.faults.set("stop_hangs", "1")
            restart = ("service_restart", {"name": "XtractUniversal Service", "wait_ports": [8165], "timeout_s": 0.5})
            _result, answer = await agent_call(host, [restart])
            outcome = only_result(answer)
            assert outcome["started"] is False and outcome["state"] == "StopPending"
            assert outcome["start_error"] == "the service did not stop within 0.5 s (StopPending)"
            host.faults.set("stop_hangs", "0")
            _result, answer = await agent_call(host, [RESTART])
            assert only_result(answer)["started"] is True

    run(scenario())


def test_a_starting_service_refuses_stop_and_start(host_factory: HostFactory) -> None:
    async def scenario() -> None:
        async with host_factory("healthy", restart_delay=0.5) as host:
            await host.service.stop()
            await host.service.start()
            assert host.service.state == "StartPending"
            with pytest.raises(ServiceStopError, match="cannot accept control messages"):
                await host.service.stop()
            with pytest.raises(ServiceStartError, match="An instance of the service is already running"):
                await host.service.start()
            await host.service.wait_started()
            assert host.service.state == "Running"

    run(scenario())


def test_dependent_services_stop_with_xu_and_are_started_again(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            host.faults.set("dependent_service", "XuScheduler")
            _result, answer = await agent_call(host, [("discover", {"service_name": "XtractUniversal Service", "files": []}), RESTART])
            assert results(answer)[0]["result"]["service"]["dependents"] == ["XuScheduler"]
            assert results(answer)[1]["result"]["dependents"] == [{"name": "XuScheduler", "state": "Running"}]
            states = [(e.get("name"), e["state"]) for e in events(host, "service")[-4:]]
            assert states == [("XuScheduler", "Stopped"), (None, "Stopped"), (None, "Running"), ("XuScheduler", "Running")]
            assert host.service.dependents[0].state == "Running"
            # A controller that only stopped and started XU would leave it stopped:
            await host.service.stop()
            await host.service.start(delay=0)
            await host.service.wait_started()
            assert host.service.dependents[0].state == "Stopped"

    run(scenario())


def test_a_hanging_dependent_does_not_hold_the_call_and_the_stopped_ones_start_again(
    host_factory: HostFactory, agent_call: AgentCall
) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            for name in ("XuScheduler", "XuExporter"):
                host.faults.set("dependent_service", name)
            host.faults.set("dependent_stop_hangs", "XuExporter")
            began = asyncio.get_running_loop().time()
            restart = ("service_restart", {"name": "XtractUniversal Service", "wait_ports": [8165], "timeout_s": 1})
            _result, answer = await agent_call(host, [restart])
            outcome = only_result(answer)
            # Within our own limit, not .NET's 30 s per dependent; XU was not stopped, so it was not restarted either.
            assert asyncio.get_running_loop().time() - began < 5
            assert outcome["started"] is False and outcome["restarted"] is False and outcome["state"] == "Running"
            assert outcome["start_error"] == (
                "the dependent service XuExporter did not stop within 1 s (StopPending), so XtractUniversal Service was not stopped"
            )
            # The dependent this call stopped runs again; the one that hangs is reported as it is.
            assert outcome["dependents"] == [{"name": "XuScheduler", "state": "Running"}, {"name": "XuExporter", "state": "StopPending"}]
            assert [d.state for d in host.service.dependents] == ["Running", "StopPending"]
            assert [(e.get("name"), e["state"]) for e in events(host, "service")[-3:]] == [
                ("XuScheduler", "Stopped"), ("XuExporter", "StopPending"), ("XuScheduler", "Running")]
            assert host.service.listeners
            # Once the hanging stop ends, the next restart goes through. The dependent that finished stopping after the first call
            # is not this call's to start (the first call reported it, and the controller asks the operator to start it).
            host.faults.set("dependent_stop_hangs", "none")
            _result, answer = await agent_call(host, [RESTART])
            outcome = only_result(answer)
            assert outcome["started"] is True and outcome["restarted"] is True
            assert outcome["dependents"] == [{"name": "XuScheduler", "state": "Running"}]
            assert [d.state for d in host.service.dependents] == ["Running", "Stopped"]

    run(scenario())


def test_servicecontroller_stop_waits_30_s_per_dependent_and_throws_before_the_service_stops(
    host_factory: HostFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the agent avoids: .NET Framework's Stop() stops each running dependent and waits 30 s for it; a hanging one makes
    # it throw before the service gets the stop control, and the dependents it stopped stay stopped.
    monkeypatch.setattr(xuservice, "DOTNET_DEPENDENT_WAIT_S", 0.2)

    async def scenario() -> None:
        async with host_factory("healthy") as host:
            for name in ("XuScheduler", "XuExporter"):
                host.faults.set("dependent_service", name)
            host.faults.set("dependent_stop_hangs", "XuExporter")
            with pytest.raises(ServiceStopError, match=re.escape(xuservice.WAIT_TIMED_OUT)):
                await host.service.stop()
            assert host.service.state == "Running"
            assert [d.state for d in host.service.dependents] == ["Stopped", "StopPending"]

    run(scenario())


def test_a_missing_service_is_windows_error_and_the_controller_reads_not_found(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            _result, answer = await agent_call(host, [("service_restart", {"name": "NoSuchService", "wait_ports": []})])
            error = results(answer)[0]["error"]
            assert error["exception"] == "System.InvalidOperationException"
            assert error["inner"] == [{"exception": "System.ComponentModel.Win32Exception", "hresult": -2147467259, "native_code": 1060}]
            assert classify(error) == NOT_FOUND

    run(scenario())


# -- files: the BOM and bytes that are not UTF-8 ---------------------------------------------


def test_the_bom_is_reported_and_written_and_invalid_utf8_is_not_text(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            original = host.fs.resolve(TLS_JSON).read_bytes()
            host.fs.resolve(TLS_JSON).write_bytes(b"\xef\xbb\xbf" + original)
            read = ("discover", {"service_name": "XtractUniversal Service", "files": ["config\\servers\\tls.json"]})
            _result, answer = await agent_call(host, [read])
            entry = only_result(answer)["files"][0]
            assert (entry["bom"], entry["utf8_valid"], entry["content"]) == (True, True, original.decode())
            _result, answer = await agent_call(host, [("file_write", {"path": TLS_JSON, "content": original.decode(), "bom": True})])
            assert host.fs.resolve(TLS_JSON).read_bytes() == b"\xef\xbb\xbf" + original
            assert only_result(answer)["sha256"] == hashlib.sha256(b"\xef\xbb\xbf" + original).hexdigest()
            host.fs.resolve(TLS_JSON).write_bytes(original.replace(b"LocalMachine", b"Local\xe9Machine", 1))
            _result, answer = await agent_call(host, [read])
            entry = only_result(answer)["files"][0]
            assert (entry["bom"], entry["utf8_valid"], entry["content"]) == (False, False, None)
            assert entry["sha256"] is not None

    run(scenario())


# -- certificates: archived copies and missing keys ------------------------------------------


@pytest.mark.parametrize("damage", ["archived", "keyless"])
def test_a_pfx_repairs_an_archived_or_keyless_copy(host_factory: HostFactory, agent_call: AgentCall, damage: str) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            minted = issue_pfx(host, "pfx-pass")
            imported = {"pfx_b64": minted["pfx_b64"], "password": "pfx-pass"}
            _result, answer = await agent_call(host, [("pfx_import", imported)])
            thumbprint = str(minted["thumbprint"])
            entry = host.stores.my.get(thumbprint)
            assert entry is not None
            if damage == "archived":
                entry.archived = True
            else:
                entry.key = None
            _result, answer = await agent_call(
                host, [("cert_list", {"thumbprints": [thumbprint]}), ("cert_list", {"thumbprints": [thumbprint], "include_archived": True})]
            )
            plain, everything = (r["result"]["certificates"] for r in results(answer))
            assert len(everything) == 1 and everything[0]["archived"] is (damage == "archived")
            assert len(plain) == (0 if damage == "archived" else 1)
            _result, answer = await agent_call(host, [("pfx_import", imported)])
            assert only_result(answer) | {"chain_added": []} == {
                "thumbprint": thumbprint, "already_present": False, "repaired": True, "chain_added": []
            }
            repaired = host.stores.my.get(thumbprint)
            assert repaired is not None and repaired.key is not None and not repaired.archived

    run(scenario())


def test_every_host_setting_is_refused_with_a_clear_message_when_unknown(host_factory: HostFactory) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            for key, value in [
                ("service_account", "guest"),
                ("firewall_profile_off", "Work"),
                ("firewall_local_rules", "maybe"),
                ("firewall_service", "paused"),
                ("strict_host_name", "yes"),
                ("stop_hangs", "-1"),
            ]:
                with pytest.raises(LabError, match=key):
                    host.faults.set(key, value)
            await asyncio.sleep(0)

    run(scenario())


# -- the Application event log ---------------------------------------------------------------


def test_event_entries_register_the_source_once_and_refuse_what_windows_refuses(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            entry = {"event_id": 1001, "entry_type": "Information", "message": "Certificate A replaced by B\r\nrun_id: r1"}
            _result, answer = await agent_call(host, [("event_write", entry), ("event_write", entry)])
            assert [r["result"]["registered"] for r in results(answer)] == [True, False]
            assert [e["message"] for e in events(host, "eventlog")] == [entry["message"]] * 2
            for bad in ({"event_id": 0}, {"event_id": 70000}, {"entry_type": "information"}, {"message": ""}, {"message": "x" * 31001}):
                _result, answer = await agent_call(host, [("event_write", {**entry, **bad})])
                assert results(answer)[0]["error"]["type"] == "InvalidArgument", bad
            assert len(events(host, "eventlog")) == 2

    run(scenario())


@pytest.mark.parametrize(("version", "accepted"), [("2016", False), ("2019", True)])
def test_server_2016_refuses_a_3des_pfx_with_a_sha256_mac(host_factory: HostFactory, agent_call: AgentCall, version: str, accepted: bool) -> None:
    # Server 2016 predates the SHA-256 MAC of Windows' own AES export; whether it checks one is unverified, and the lab,
    # stricter, refuses it as it refuses AES: the controller must re-encode such a file too (_pfx.pfx_for_windows).
    async def scenario() -> None:
        async with host_factory("healthy", windows_version=version) as host:
            certificate, key = host.mint(host.default_request(90))
            sha256_mac = (
                serialization.PrivateFormat.PKCS12.encryption_builder()
                .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
                .hmac_hash(hashes.SHA256())
                .build(b"pfx-pass")
            )
            data = pkcs12.serialize_key_and_certificates(b"xu01", key, certificate, None, sha256_mac)
            _result, answer = await agent_call(host, [("pfx_import", {"pfx_b64": base64.b64encode(data).decode(), "password": "pfx-pass"})])
            entry = results(answer)[0]
            if accepted:
                assert entry["status"] == "ok"
            else:
                assert brief(entry["error"]) == {"type": "CryptographicException", "message": "The specified network password is not correct."}
                assert entry["error"]["hresult"] == -2147024810

    run(scenario())
