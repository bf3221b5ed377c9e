"""`port_probe`: a TCP (and TLS, and HTTP) client run on the host, as the agent's TcpClient/SslStream does.

It really connects, from the host's own address, so it sees what XU really serves. The
texts of its errors are those .NET Framework gives for the same situations.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import re
import ssl
from typing import TYPE_CHECKING

from .errors import PrimitiveError
from .psvalues import as_int, as_text
from .tlsstream import upgrade

if TYPE_CHECKING:
    from .host import Host

READ_LIMIT = 65536
BODY_LIMIT = 4096
HTTP_PATH = re.compile(r"^/[\x21-\x7E]*\Z")
# The agent's $ServerNamePattern (PowerShell's -notmatch ignores case; the class has both cases anyway).
SERVER_NAME = re.compile(r"^(?=.{1,253}\Z)[A-Za-z0-9_-]{1,63}(\.[A-Za-z0-9_-]{1,63})*\Z")

CLOSED_TRANSPORT = "Authentication failed because the remote party has closed the transport stream."
UNEXPECTED_PACKET = "The handshake failed due to an unexpected packet format."
FORCIBLY_CLOSED = (
    "Unable to read data from the transport connection: An existing connection was forcibly closed by the remote host. "
    "An existing connection was forcibly closed by the remote host"
)
READ_TIMED_OUT = (
    "Unable to read data from the transport connection: A connection attempt failed because the connected party did not "
    "properly respond after a period of time, or established connection failed because connected host has failed to "
    "respond. A connection attempt failed because the connected party did not properly respond after a period of time, "
    "or established connection failed because connected host has failed to respond"
)


def _client_context() -> ssl.SSLContext:
    """Accept any certificate (it is only captured, the controller judges it); TLS 1.0 to 1.2 as the agent offers."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


def _tls_error_text(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return READ_TIMED_OUT
    if isinstance(error, ConnectionResetError):
        # asyncio reports a plain EOF during the handshake as an errno-less ConnectionResetError.
        return FORCIBLY_CLOSED if error.errno is not None else CLOSED_TRANSPORT
    reason = getattr(error, "reason", "") or str(error)
    if "WRONG_VERSION_NUMBER" in reason or "record layer" in reason or "PACKET_LENGTH" in reason.upper():
        return UNEXPECTED_PACKET
    return CLOSED_TRANSPORT


def _connect_error_text(error: BaseException, host_name: str, shown: str, port: int) -> str:
    """What TcpClient.EndConnect (or the agent's own timeout) says."""
    if isinstance(error, TimeoutError):
        return f"connecting to {host_name}:{port} timed out"
    if isinstance(error, ConnectionRefusedError):
        return f"No connection could be made because the target machine actively refused it {shown}:{port}"
    return getattr(error, "strerror", None) or str(error)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _decode_chunked(body: bytes) -> bytes:
    out = bytearray()
    position = 0
    while True:
        end = body.find(b"\r\n", position)
        if end < 0:
            break
        try:
            size = int(body[position:end].split(b";")[0].strip(), 16)
        except ValueError:
            break
        if size <= 0:
            break
        out += body[end + 2 : end + 2 + size]
        position = end + 2 + size + 2
    return bytes(out)


async def port_probe(host: Host, a: dict[str, object]) -> dict[str, object]:
    host_name = as_text(a.get("host")) or "localhost"
    # The connection goes to host; server_name is what the server is called in the handshake (SNI) and the Host header.
    server_name = host_name
    if a.get("server_name"):
        server_name = as_text(a.get("server_name"))
        if SERVER_NAME.match(server_name) is None:
            raise PrimitiveError("InvalidArgument", "server_name must be a DNS name or an IPv4 address")
    port = as_int(a.get("port"))
    timeout_s = (as_int(a.get("timeout_ms")) or 5000) / 1000
    path = a.get("http_path")
    if path is not None and (not isinstance(path, str) or HTTP_PATH.match(path) is None):
        raise PrimitiveError("InvalidArgument", "http_path must start with / and hold no spaces or control characters")
    result: dict[str, object] = {
        "connected": False,
        "tls_error": None,
        "der_b64": None,
        "http_status": None,
        "http_body": None,
        "error": None,
    }
    target = host.resolve(host_name)
    address = target.address if target is not None else (host_name if _is_ip(host_name) else None)
    if address is None:
        result["error"] = "No such host is known"
        return result
    shown = "127.0.0.1" if target is host else address
    # Another host's firewall drops the SYN of a blocked source: the connect just times out.
    if target is not None and target is not host and not target.admits(host.address, port):
        await asyncio.sleep(timeout_s)
        result["error"] = f"connecting to {host_name}:{port} timed out"
        return result
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(address, port, local_addr=(host.address, 0)), timeout_s
        )
    except (OSError, TimeoutError) as exc:
        result["error"] = _connect_error_text(exc, host_name, shown, port)
        return result
    result["connected"] = True
    streams = (reader, writer)
    try:
        if a.get("tls"):
            try:
                secured = await upgrade(
                    writer, _client_context(), server_side=False,
                    server_hostname=None if _is_ip(server_name) else server_name, timeout_s=timeout_s,
                )
            except (ssl.SSLError, OSError, TimeoutError) as exc:
                result["tls_error"] = _tls_error_text(exc)
                return result
            if secured is None:
                result["tls_error"] = CLOSED_TRANSPORT
                return result
            streams = secured
            ssl_object = secured[1].get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            result["der_b64"] = base64.b64encode(der).decode("ascii") if der else None
        if path is not None:
            await _http_get(
                streams[0], writer=streams[1], host_header=f"{server_name}:{port}", path=path, timeout_s=timeout_s, result=result
            )
    finally:
        streams[1].transport.abort()
        writer.transport.abort()
    return result


async def _http_get(
    reader: asyncio.StreamReader,
    *,
    writer: asyncio.StreamWriter,
    host_header: str,
    path: str,
    timeout_s: float,
    result: dict[str, object],
) -> None:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n".encode("ascii"))
    received = bytearray()
    try:
        await writer.drain()
        while len(received) < READ_LIMIT:
            chunk = await asyncio.wait_for(reader.read(8192), timeout_s)
            if not chunk:
                break
            received += chunk
    except (OSError, TimeoutError) as exc:
        if not received:
            result["error"] = READ_TIMED_OUT if isinstance(exc, TimeoutError) else FORCIBLY_CLOSED
            return
    status = re.match(rb"^HTTP/\d(\.\d)?\s+(\d{3})", bytes(received))
    end = received.find(b"\r\n\r\n")
    if status is not None:
        result["http_status"] = int(status.group(2))
    if status is None or end < 0:
        result["error"] = "no HTTP response"
        return
    head, body = bytes(received[:end]), bytes(received[end + 4 :])
    if re.search(rb"(?im)^Transfer-Encoding:\s*chunked", head):
        body = _decode_chunked(body)
    result["http_body"] = body[:BODY_LIMIT].decode("utf-8", errors="replace")
