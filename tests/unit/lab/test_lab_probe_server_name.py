"""port_probe's server_name: the connection goes to host, the TLS server name (SNI) and the Host header are server_name."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from lab.labkit import AgentCall, HostFactory, brief, only_result, results, run

from xulab.host import Host
from xulab.listeners import server_tls_context
from xulab.renewals import issue_pfx
from xulab.xusettings import TLS_SETTINGS

ALIAS = "xu-alias.xulab.test"


def bound(host: Host) -> str:
    value: str = json.loads(host.fs.resolve(TLS_SETTINGS).read_text())["WebServer"]["Certificate"]["Thumbprint"]
    return value


@dataclass
class Seen:
    port: int = 0
    server_names: list[str | None] = field(default_factory=list)
    host_headers: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def recording_server(host: Host) -> AsyncIterator[Seen]:
    """An HTTPS server on the host's address serving its bound certificate, recording SNI and Host headers."""
    entry = host.stores.my.get(bound(host))
    assert entry is not None and entry.key is not None
    context = server_tls_context(entry.certificate.public_bytes(serialization.Encoding.PEM), entry.key.private_pem())
    seen = Seen()
    context.sni_callback = lambda _ssl, name, _context: seen.server_names.append(name)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            seen.host_headers += [line.split(":", 1)[1].strip() for line in head.decode().split("\r\n") if line.lower().startswith("host:")]
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host.address, 0, ssl=context)
    seen.port = server.sockets[0].getsockname()[1]
    try:
        yield seen
    finally:
        server.close()
        await server.wait_closed()


def probe(port: int, **extra: object) -> tuple[str, dict[str, object]]:
    return ("port_probe", {"host": "localhost", "port": port, "tls": True, "http_path": "/", "timeout_ms": 2000, **extra})


def test_server_name_is_the_sni_and_the_host_header(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host, recording_server(host) as seen:
            _result, answer = await agent_call(host, [probe(seen.port, server_name=ALIAS), probe(seen.port, server_name=None), probe(seen.port)])
            assert [r["result"]["http_status"] for r in results(answer)] == [200, 200, 200]
            assert [r["result"]["http_body"] for r in results(answer)] == ["ok", "ok", "ok"]
            # Null or absent: the host's name, as before.
            assert seen.server_names == [ALIAS, "localhost", "localhost"]
            assert seen.host_headers == [f"{ALIAS}:{seen.port}", f"localhost:{seen.port}", f"localhost:{seen.port}"]

    run(scenario())


def test_server_name_must_be_a_dns_name(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            for bad in ("xu01\r\nX-Injected: 1", "a..b", ".xu01", "xu01.", "x" * 64 + ".test", "[::1]", "xu 01"):
                _result, answer = await agent_call(host, [probe(8165, server_name=bad)])
                error = brief(results(answer)[0]["error"])
                assert error == {"type": "InvalidArgument", "message": "server_name must be a DNS name or an IPv4 address"}, bad
            _result, answer = await agent_call(host, [probe(8165, server_name="127.0.0.1", http_path=None), probe(8165, server_name="xu_01-a.Example")])
            assert [r["status"] for r in results(answer)] == ["ok", "ok"]
            assert results(answer)[0]["result"]["der_b64"] is not None

    run(scenario())


def test_cert_remove_probes_with_each_entrys_server_name(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host, recording_server(host) as seen:
            minted = issue_pfx(host, "pfx-pass")
            imported = {"pfx_b64": minted["pfx_b64"], "password": "pfx-pass", "exportable": False}
            require = [
                {"port": seen.port, "thumbprint": bound(host), "server_name": ALIAS},
                {"port": seen.port, "thumbprint": bound(host)},
            ]
            remove = {"store": "My", "thumbprint": minted["thumbprint"], "require_served": require}
            _result, answer = await agent_call(host, [("pfx_import", imported), ("cert_remove", remove)])
            assert only_result({"results": results(answer)[1:]}) == {"removed": True}
            assert seen.server_names == [ALIAS, "localhost"]
            assert seen.host_headers == []  # a handshake only
            bad = {"store": "My", "thumbprint": bound(host), "require_served": [{"port": seen.port, "thumbprint": bound(host), "server_name": "a b"}]}
            _result, answer = await agent_call(host, [("cert_remove", bad)])
            assert results(answer)[0]["error"]["type"] == "InvalidArgument"
            assert host.stores.my.get(bound(host)) is not None

    run(scenario())
