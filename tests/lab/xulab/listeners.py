"""XU's network endpoints: the web server (HTTP or HTTPS) and the configuration server.

Every accepted connection passes the host firewall first; a refused one is reset at once
(the closest a user-space listener gets to a dropped SYN). TLS starts only after that
check, so a blocked client never sees a certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import ssl
import struct
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .tlsstream import upgrade

XU_VERSION = "6.8.1.2"
IDLE_TIMEOUT_S = 60.0
HANDSHAKE_TIMEOUT_S = 10.0
MAX_HEADER_BYTES = 16 * 1024

PeerFilter = Callable[[str], bool]
# Whether a server name (SNI, or the Host header without its port; None when the client gave none) is answered.
NameFilter = Callable[[str | None], bool]
StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def server_tls_context(cert_pem: bytes, key_pem: bytes, accepts_name: NameFilter | None = None) -> ssl.SSLContext:
    """A server context for one certificate; OpenSSL loads keys only from files, so one lives briefly in a 0600 file.

    With `accepts_name`, a handshake whose SNI is refused ends with an unrecognized_name alert,
    as a server bound to its host name only (no default binding) does.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if accepts_name is not None:
        check = accepts_name

        def on_server_name(_connection: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> int | None:
            return None if check(name) else ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME

        context.sni_callback = on_server_name
    descriptor, path = tempfile.mkstemp(prefix="xulab-", suffix=".pem")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(cert_pem + key_pem)
        context.load_cert_chain(path)
    finally:
        os.unlink(path)
    return context


def reset_connection(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), the way a refused connection ends."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@dataclass
class Listener:
    """One listening port of the XU service and the connections it has accepted."""

    port: int
    scheme: str
    thumbprint: str | None
    server: asyncio.Server | None = None
    connections: set[asyncio.StreamWriter] = field(default_factory=set)

    def describe(self) -> dict[str, object]:
        return {"port": self.port, "scheme": self.scheme, "thumbprint": self.thumbprint}

    def close(self) -> None:
        """Stop listening and drop every open connection, as a stopping process does."""
        if self.server is not None:
            self.server.close()
        for writer in list(self.connections):
            writer.transport.abort()
        self.connections.clear()


async def open_listener(
    address: str,
    listener: Listener,
    admits: PeerFilter,
    handler: StreamHandler,
    tls: ssl.SSLContext | None,
) -> Listener:
    """Bind `listener.port` on `address`; raises OSError when the port cannot be bound."""

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        if not peer or not admits(peer[0]):
            reset_connection(writer)
            return
        listener.connections.add(writer)
        try:
            streams = (reader, writer) if tls is None else await upgrade(writer, tls, server_side=True, timeout_s=HANDSHAKE_TIMEOUT_S)
            if streams is not None:
                await handler(*streams)
                streams[1].close()
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            writer.transport.abort()
        except asyncio.CancelledError:
            # The lab is shutting down; ending quietly keeps asyncio from reporting every open connection.
            writer.transport.abort()
        finally:
            listener.connections.discard(writer)

    listener.server = await asyncio.start_server(on_connection, address, listener.port, limit=MAX_HEADER_BYTES)
    return listener


def _http_response(status: int, reason: str, body: bytes, content_type: str, keep_alive: bool) -> bytes:
    headers = [
        f"HTTP/1.1 {status} {reason}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: keep-alive" if keep_alive else "Connection: close",
    ]
    return ("\r\n".join(headers) + "\r\n\r\n").encode("ascii") + body


async def _read_request_head(reader: asyncio.StreamReader, buffer: bytearray) -> bytes | None:
    """The next request head from `buffer` plus the socket; None at EOF."""
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > MAX_HEADER_BYTES:
            raise asyncio.LimitOverrunError("request head too long", len(buffer))
        chunk = await asyncio.wait_for(reader.read(4096), IDLE_TIMEOUT_S)
        if not chunk:
            return None
        buffer += chunk
        if buffer.startswith(b"\x16"):
            # A TLS ClientHello on the plain HTTP port: HTTP.sys answers 400 and closes.
            return bytes(buffer)
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end])
    del buffer[:end]
    return head


async def serve_web(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, accepts_name: NameFilter | None = None) -> None:
    """XU's web server as far as the lab needs it: `GET /version`, 404 for everything else.

    With `accepts_name`, a request for another host name gets HTTP.sys' 400 Invalid Hostname.
    """
    buffer = bytearray()
    while (head := await _read_request_head(reader, buffer)) is not None:
        if head.startswith(b"\x16"):
            writer.write(_http_response(400, "Bad Request", b"", "text/html", keep_alive=False))
            await writer.drain()
            return
        lines = head.decode("latin-1").split("\r\n")
        method, _space, rest = lines[0].partition(" ")
        target = rest.partition(" ")[0]
        headers = {}
        for line in lines[1:]:
            name, _colon, value = line.partition(":")
            headers[name.strip().casefold()] = value.strip()
        length = int(headers.get("content-length", "0") or "0")
        while len(buffer) < length:
            chunk = await asyncio.wait_for(reader.read(65536), IDLE_TIMEOUT_S)
            if not chunk:
                return
            buffer += chunk
        del buffer[:length]
        keep_alive = headers.get("connection", "").casefold() != "close"
        path = target.split("?", 1)[0]
        host_name = headers.get("host", "").rsplit(":", 1)[0] if "]" not in headers.get("host", "") else headers["host"]
        if accepts_name is not None and not accepts_name(host_name or None):
            body = b"<h2>Bad Request - Invalid Hostname</h2><hr><p>HTTP Error 400. The request hostname is invalid.</p>"
            response = _http_response(400, "Bad Request", body, "text/html; charset=us-ascii", keep_alive=False)
            writer.write(response)
            await writer.drain()
            return
        if path == "/version" and method in ("GET", "HEAD"):
            body = json.dumps({"version": XU_VERSION}, separators=(",", ":")).encode("utf-8")
            response = _http_response(200, "OK", body, "application/json; charset=utf-8", keep_alive)
            if method == "HEAD":
                response = response[: len(response) - len(body)]
        else:
            response = _http_response(404, "Not Found", b"", "text/plain", keep_alive)
        writer.write(response)
        await writer.drain()
        if not keep_alive:
            return


async def serve_config_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The configuration server without TLS: a proprietary protocol; a TLS ClientHello is not it."""
    first = await asyncio.wait_for(reader.read(4096), IDLE_TIMEOUT_S)
    if not first or first.startswith(b"\x16"):
        return
    await _discard_until_eof(reader)


async def serve_config_tls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The configuration server after the TLS handshake: reads and ignores the Designer's RPC."""
    await _discard_until_eof(reader)


async def _discard_until_eof(reader: asyncio.StreamReader) -> None:
    while await asyncio.wait_for(reader.read(4096), IDLE_TIMEOUT_S):
        pass
