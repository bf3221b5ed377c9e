"""The XU service of a lab host, over real sockets: what it serves, when it fails to start, the firewall."""

from __future__ import annotations

import asyncio
import json
import ssl
from datetime import UTC, datetime

import pytest
from cryptography import x509
from lab.labkit import AgentCall, HostFactory, events, only_result, run

from xulab.ca import thumbprint
from xulab.certstore import AclEntry
from xulab.host import Host
from xulab.xusettings import TLS_SETTINGS

RESTART = ("service_restart", {"name": "XtractUniversal Service", "wait_ports": [8165], "timeout_s": 5})


def _no_verify() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def served_certificate(address: str, port: int) -> bytes:
    _reader, writer = await asyncio.open_connection(address, port, ssl=_no_verify(), server_hostname="xu")
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    assert isinstance(der, bytes)
    return der


async def http_get(address: str, port: int, path: str, *, tls: bool = False, source: str | None = None) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection(
        address, port, ssl=_no_verify() if tls else None, server_hostname="xu" if tls else None,
        local_addr=(source, 0) if source else None,
    )
    writer.write(f"GET {path} HTTP/1.1\r\nHost: xu\r\nConnection: close\r\n\r\n".encode())
    response = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _separator, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def bound_thumbprint(host: Host) -> str:
    settings = json.loads(host.fs.resolve(TLS_SETTINGS).read_text())
    value: str = settings["WebServer"]["Certificate"]["Thumbprint"]
    return value


def test_https_and_config_listeners_serve_the_bound_certificate(host_factory: HostFactory) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            bound = bound_thumbprint(host)
            assert thumbprint(await served_certificate(host.address, 8165)) == bound
            assert thumbprint(await served_certificate(host.address, 8064)) == bound
            assert await http_get(host.address, 8165, "/version", tls=True) == (200, b'{"version":"6.8.1.2"}')
            assert (await http_get(host.address, 8165, "/nothing", tls=True))[0] == 404
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection(host.address, 8065)
            assert host.service.state_json()["listeners"] == [
                {"port": 8064, "scheme": "tls", "thumbprint": bound},
                {"port": 8165, "scheme": "https", "thumbprint": bound},
            ]

    run(scenario())


def test_a_restart_rereads_the_settings(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            host.fs.resolve(TLS_SETTINGS).unlink()  # TLS reset, the documented way
            _result, answer = await agent_call(host, [("service_restart", {"name": "xtractuniversal service", "wait_ports": [8065, 8064]})])
            result = only_result(answer)
            assert result["started"] is True and result["state"] == "Running"
            assert result["ports"] == [{"port": 8065, "open": True}, {"port": 8064, "open": True}]
            assert await http_get(host.address, 8065, "/version") == (200, b'{"version":"6.8.1.2"}')
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection(host.address, 8165)
            states = [(e["state"], [listener["scheme"] for listener in e["listeners"]]) for e in events(host, "service")]
            assert states[-2:] == [("Stopped", []), ("Running", ["tcp", "http"])]

    run(scenario())


def _remove_bound(host: Host) -> None:
    host.stores.my.remove(bound_thumbprint(host))


def _drop_key(host: Host) -> None:
    entry = host.stores.my.get(bound_thumbprint(host))
    assert entry is not None
    entry.key = None


def _default_acl(host: Host) -> None:
    entry = host.stores.my.get(bound_thumbprint(host))
    assert entry is not None and entry.key is not None
    entry.key.acl = entry.key.acl[:2]


def _deny_users(host: Host) -> None:
    entry = host.stores.my.get(bound_thumbprint(host))
    assert entry is not None and entry.key is not None
    entry.key.acl.append(AclEntry("S-1-5-32-545", "Read", "Deny"))


def _bad_json(host: Host) -> None:
    host.fs.resolve(TLS_SETTINGS).write_text('{"WebServer": {"Protocol": "HttpsUnrestricted",')


@pytest.mark.parametrize(
    ("breakage", "reason"),
    [
        (_remove_bound, "was not found in LocalMachine\\My"),
        (_drop_key, "has no private key"),
        (_default_acl, "cannot read the private key"),
        (_deny_users, "cannot read the private key"),
        (_bad_json, "Error reading C:\\Program Files\\XtractUniversal\\config\\servers\\tls.json"),
    ],
)
def test_xu_fails_to_start_where_it_would(host_factory: HostFactory, agent_call: AgentCall, breakage: object, reason: str) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            assert callable(breakage)
            breakage(host)
            _result, answer = await agent_call(host, [RESTART])
            result = only_result(answer)
            assert result["started"] is False and result["state"] == "Stopped"
            assert result["start_error"] == "the service stopped while starting"
            assert result["ports"] == [{"port": 8165, "open": False}]
            last = events(host, "service")[-1]
            assert last["state"] == "Stopped" and reason in last["reason"]
            assert reason in str(host.state()["service"]["last_start_error"])
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection(host.address, 8064)

    run(scenario())


def test_an_expired_certificate_does_not_stop_xu(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("expired") as host:
            _result, answer = await agent_call(host, [RESTART])
            assert only_result(answer)["started"] is True
            served = x509.load_der_x509_certificate(await served_certificate(host.address, 8165))
            assert served.not_valid_after_utc < datetime.now(UTC)

    run(scenario())


def test_a_certificate_deleted_while_running_is_served_until_the_next_start(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("missing_cert") as host:
            bound = bound_thumbprint(host)
            assert host.stores.my.get(bound) is None
            assert thumbprint(await served_certificate(host.address, 8165)) == bound
            _result, answer = await agent_call(host, [RESTART])
            assert only_result(answer)["state"] == "Stopped"
            assert "was not found" in events(host, "service")[-1]["reason"]

    run(scenario())


def test_a_blocked_source_is_refused_while_the_host_itself_passes(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            rules = [{"name": "XtractUniversal-In", "display_name": "Xtract Universal", "local_ports": ["8064", "8065", "8165"],
                      "remote_addresses": ["10.0.0.0/8"]}]
            _result, answer = await agent_call(host, [("fw_set", {"group": "Xtract Universal", "rules": rules})])
            assert only_result(answer) == {"removed": 1, "added": 1}
            assert events(host, "firewall")[-1]["exposure"] == {"8064": "restricted", "8065": "restricted", "8165": "restricted"}
            with pytest.raises((ConnectionResetError, ssl.SSLError, asyncio.IncompleteReadError)):
                await http_get(host.address, 8165, "/version", tls=True, source="127.0.3.9")
            assert await http_get(host.address, 8165, "/version", tls=True, source=host.address) == (200, b'{"version":"6.8.1.2"}')
            assert host.admits("127.0.3.9", 5985)  # WinRM's own rule is untouched

    run(scenario())


def test_a_slow_start_outlasts_the_timeout_and_completes_later(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            host.faults.set("restart_delay", "0.6")
            _result, answer = await agent_call(host, [("service_restart", {"name": "XtractUniversal Service", "wait_ports": [8165], "timeout_s": 0.2})])
            result = only_result(answer)
            assert (result["started"], result["state"], result["start_error"]) == (False, "StartPending", None)
            await asyncio.sleep(0.8)
            assert host.service.state == "Running"

    run(scenario())


def test_restart_fails_fault_makes_the_next_start_fail(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            host.faults.set("restart_fails", "1")
            _result, answer = await agent_call(host, [RESTART])
            result = only_result(answer)
            assert result["state"] == "Stopped" and result["started"] is False
            assert result["start_error"] == (
                "Cannot start service XtractUniversal Service on computer '.'. "
                "The service did not respond to the start or control request in a timely fashion."
            )
            assert [e["action"] for e in events(host, "fault")] == ["set", "consumed"]
            _result, answer = await agent_call(host, [RESTART])
            assert only_result(answer)["started"] is True

    run(scenario())


def test_restart_fails_at_a_later_start_lets_the_starts_before_it_pass(host_factory: HostFactory, agent_call: AgentCall) -> None:
    """`restart_fails=1@2`: the second start from now fails (a later step's restart, set before the run begins)."""

    async def scenario() -> None:
        async with host_factory("healthy") as host:
            host.faults.set("restart_fails", "1@2")
            starts = []
            for _attempt in range(3):
                _result, answer = await agent_call(host, [RESTART])
                starts.append(only_result(answer)["started"])
            assert starts == [True, False, True]
            assert [e["action"] for e in events(host, "fault")] == ["set", "consumed"]

    run(scenario())
