"""The lab's WS-Management (WinRM) listener.

One asyncio server per simulated host speaks what a Windows WinRM service on port
5985 speaks to pywinrm and Ansible's ``winrm`` connection: HTTP/1.1 keep-alive on
``POST /wsman``, Basic authentication (as with ``AllowUnencrypted=true``) or NTLM
with MS-WSMV message encryption, and the Windows Remote Shell resource (``cmd``):
Create, Command, Send, Receive, Signal and Delete. What a command does is not
decided here: every command is handed to the lab's ``run_command`` coroutine.

Shells belong to the listener, not to a TCP connection, as on Windows: a client
whose connection broke can still signal and delete its command over a new one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import logging
import re
import socket
import struct
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import ClassVar
from xml.sax.saxutils import escape, quoteattr

import spnego
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as parse_untrusted_xml

from . import _ntlm

__all__ = [
    "AcceptFilter",
    "CommandResult",
    "RunCommand",
    "WsmanCredentials",
    "WsmanServer",
    "configure_ntlm_users",
    "start_wsman_listener",
    "start_wsman_server",
]

logger = logging.getLogger(__name__)


@dataclass
class CommandResult:
    rc: int
    stdout: bytes = b""
    stderr: bytes = b""
    # True: close the client's TCP connection instead of answering the Receive that would deliver this.
    drop_connection: bool = False


# (command, arguments, stdin, client (address, port), authenticated user) -> result.
RunCommand = Callable[[str, list[str], bytes, tuple[str, int], str], Awaitable[CommandResult]]
# Decides, per accepted TCP connection, whether to serve it (True) or reset it at once (False).
AcceptFilter = Callable[[tuple[str, int]], bool]


@dataclass
class WsmanCredentials:
    username: str
    password: str = field(repr=False)
    domain: str = ""

    @property
    def account_name(self) -> str:
        """The account as Windows names it: ``DOMAIN\\user``, or ``user`` without a domain."""
        return f"{self.domain}\\{self.username}" if self.domain else self.username

    def names_this_account(self, name: str) -> bool:
        """True for ``user``, ``DOMAIN\\user`` and ``user@DOMAIN`` (case-insensitive), as Windows accepts."""
        given = name.casefold()
        user = self.username.casefold()
        domain = self.domain.casefold()
        if "\\" in given:
            given_domain, given_user = given.split("\\", 1)
            return bool(domain) and given_domain == domain and given_user == user
        if "@" in given and domain:
            given_user, given_domain = given.rsplit("@", 1)
            if given_domain == domain:
                return given_user == user
        return given == user


def configure_ntlm_users(credentials: Iterable[WsmanCredentials]) -> str:
    """Lets NTLM listeners of this process accept these accounts.

    pyspnego's acceptor reads accounts only from the file named by the
    ``NTLM_USER_FILE`` environment variable: this writes one (mode 0600, in a
    private temporary directory removed at exit), points the variable at it and
    returns its path. ``start_wsman_server(auth="ntlm")`` calls it for its own
    credentials, so calling it directly is only needed to check them early.
    One name can have only one password per process: a second, different one
    raises ValueError, as does a ':' or line break in any of the fields.
    """
    path = ""
    for account in credentials:
        path = _ntlm.register_account(account.username, account.password, account.domain)
    return path


async def start_wsman_server(
    address: str,
    port: int,
    *,
    auth: str,
    credentials: WsmanCredentials,
    run_command: RunCommand,
    accept_filter: AcceptFilter | None = None,
    shell_create_delay: float = 0.0,
) -> asyncio.base_events.Server:
    """Starts a WinRM listener on ``address:port`` (port 0: any free port) in the running loop.

    ``auth`` is ``"basic"`` or ``"ntlm"``. ``run_command`` is called once per
    WS-Man Command, when its stdin has ended (a Send with End="true") or at the
    first Receive if no Send came (stdin is then b""). Signal terminate or ctrl_c
    and Delete cancel a run that is still going, as Windows ends the process.
    The user handed to ``run_command`` is ``credentials.account_name``.
    ``shell_create_delay`` is what each shell Create costs, in seconds: Windows starts a
    winrshost process for it. Only that request waits; the loop serves everything else meanwhile.
    """
    started = await start_wsman_listener(
        address, port, auth=auth, credentials=credentials, run_command=run_command, accept_filter=accept_filter,
        shell_create_delay=shell_create_delay,
    )
    return started.server


@dataclass
class WsmanServer:
    """A listening WinRM service with its shells and connections, which `close` ends as a reboot ends them."""

    server: asyncio.base_events.Server
    listener: _Listener

    async def close(self, timeout_s: float = 5.0) -> None:
        """Stop listening, end every connection and every shell (cancelling the commands they run)."""
        self.server.close()
        self.listener.end_everything()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.server.wait_closed(), timeout_s)


async def start_wsman_listener(
    address: str,
    port: int,
    *,
    auth: str,
    credentials: WsmanCredentials,
    run_command: RunCommand,
    accept_filter: AcceptFilter | None = None,
    shell_create_delay: float = 0.0,
) -> WsmanServer:
    """`start_wsman_server`, returning a handle that can also end the connections and shells it has."""
    if auth not in ("basic", "ntlm"):
        raise ValueError(f"auth must be 'basic' or 'ntlm', not {auth!r}")
    if auth == "ntlm":
        configure_ntlm_users([credentials])
    listener = _Listener(address, auth, credentials, run_command, accept_filter, shell_create_delay=shell_create_delay)
    server = await asyncio.start_server(listener.serve_connection, address, port, reuse_address=True)
    listener.port = server.sockets[0].getsockname()[1]
    return WsmanServer(server, listener)


# --- WS-Management vocabulary -------------------------------------------------------------

_NS_SOAP = "http://www.w3.org/2003/05/soap-envelope"
_NS_ADDRESSING = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
_NS_WSMAN = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
_NS_SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
_NS_TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer"
_NS_FAULT_DETAIL = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault"
_ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"

_CMD_RESOURCE_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"
_ACTION_CREATE = f"{_NS_TRANSFER}/Create"
_ACTION_DELETE = f"{_NS_TRANSFER}/Delete"
_ACTION_COMMAND = f"{_NS_SHELL}/Command"
_ACTION_SEND = f"{_NS_SHELL}/Send"
_ACTION_RECEIVE = f"{_NS_SHELL}/Receive"
_ACTION_SIGNAL = f"{_NS_SHELL}/Signal"
_ACTION_FAULT = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"
_SIGNAL_TERMINATE = f"{_NS_SHELL}/signal/terminate"
_SIGNAL_CTRL_C = f"{_NS_SHELL}/signal/ctrl_c"
_STATE_DONE = f"{_NS_SHELL}/CommandState/Done"
_STATE_RUNNING = f"{_NS_SHELL}/CommandState/Running"

_ENVELOPE_OPEN = (
    f'<s:Envelope xml:lang="en-US" xmlns:s="{_NS_SOAP}" xmlns:a="{_NS_ADDRESSING}" '
    f'xmlns:x="{_NS_TRANSFER}" xmlns:w="{_NS_WSMAN}" xmlns:rsp="{_NS_SHELL}" '
    'xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd">'
)

# Windows' defaults: winrm/config MaxTimeoutms, MaxEnvelopeSizekb, winrs IdleTimeout.
_MAX_OPERATION_TIMEOUT_S = 60.0
_DEFAULT_MAX_ENVELOPE_SIZE = 153600
_MAX_REQUEST_BODY = 500 * 1024 + 4096  # MaxEnvelopeSizekb plus the encryption framing
_SHELL_IDLE_TIMEOUT_S = 7200.0
# HTTP.sys closes idle keep-alive connections after two minutes.
_CONNECTION_IDLE_TIMEOUT_S = 120.0
# Room left in a Receive response for everything but the base64 stream data.
_ENVELOPE_OVERHEAD = 4096
# The exit code Windows reports for a process ended by Ctrl+C (STATUS_CONTROL_C_EXIT).
_CTRL_C_EXIT_CODE = 0xC000013A

_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d*)?)S)?)?$")

_ERROR_OPERATION_TIMEDOUT = 0x80338029
_ERROR_UNEXPECTED_SELECTORS = 0x8033805B
_ERROR_ACTION_NOT_SUPPORTED = 0x80338013
_ERROR_INVALID_URI = 0x80338002
_ERROR_INVALID_SOAP_BODY = 0x80338027
_ERROR_HEADER_REQUIRED = 0x80338011
_ERROR_INTERNAL = 0x80004005


class _WsmanFault(Exception):
    """A request the service answers with a SOAP fault (HTTP 500)."""

    def __init__(self, code: int, subcode: str, reason: str, message: str | None = None, *, sender: bool = True) -> None:
        super().__init__(reason)
        self.code = code
        self.subcode = subcode
        self.reason = reason
        self.message = message or reason
        self.sender = sender


def _operation_timeout_fault() -> _WsmanFault:
    text = "The WS-Management service cannot complete the operation within the time specified in OperationTimeout."
    return _WsmanFault(_ERROR_OPERATION_TIMEDOUT, "w:TimedOut", text, sender=False)


def _shell_not_found_fault(shell_id: str) -> _WsmanFault:
    return _WsmanFault(
        _ERROR_UNEXPECTED_SELECTORS,
        "w:InvalidSelectors",
        "The WS-Management service cannot process the request because the request contained invalid selectors for the resource.",
        f"The request for the Windows Remote Shell with ShellId {shell_id} failed because the shell was not found on the "
        "server. Possible causes are: the specified ShellId is incorrect or the shell no longer exists on the server. "
        "Provide the correct ShellId or create a new shell and retry the operation.",
    )


def _command_not_found_fault() -> _WsmanFault:
    return _WsmanFault(
        _ERROR_UNEXPECTED_SELECTORS,
        "w:InvalidSelectors",
        "The WS-Management service cannot process the request because the request contained invalid selectors for the resource.",
        "The Windows Remote Shell received a request to perform an operation on a command identifier that does not "
        "exist. Either the command has completed execution or the client specified an invalid command identifier.",
    )


def _invalid_body_fault() -> _WsmanFault:
    return _WsmanFault(
        _ERROR_INVALID_SOAP_BODY,
        "w:InvalidBody",
        "The WS-Management service cannot process the request because the request packet does not have a valid SOAP body.",
    )


def _parse_duration(text: str | None) -> float | None:
    if not text:
        return None
    match = _DURATION.match(text.strip())
    if match is None:
        return None
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds or 0)


def _q(tag: str, namespace: str) -> str:
    return f"{{{namespace}}}{tag}"


@dataclass(slots=True)
class _WsmanRequest:
    action: str
    message_id: str
    resource_uri: str
    shell_id: str | None
    operation_timeout_s: float
    max_envelope_size: int
    body: ET.Element


def _parse_request(xml_bytes: bytes) -> _WsmanRequest:
    # SOAP forbids a DTD, and Windows' parser refuses one; expat would expand its entities.
    # The parser itself refuses it, in whatever encoding the body comes (a byte search misses UTF-16).
    try:
        envelope = parse_untrusted_xml(xml_bytes, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ET.ParseError, DefusedXmlException) as error:
        raise _invalid_body_fault() from error
    header = envelope.find(_q("Header", _NS_SOAP))
    body = envelope.find(_q("Body", _NS_SOAP))
    if envelope.tag != _q("Envelope", _NS_SOAP) or header is None or body is None:
        raise _invalid_body_fault()

    def header_text(tag: str, namespace: str) -> str | None:
        element = header.find(_q(tag, namespace))
        return None if element is None or element.text is None else element.text.strip()

    shell_id = None
    for selector in header.iterfind(f"{_q('SelectorSet', _NS_WSMAN)}/{_q('Selector', _NS_WSMAN)}"):
        if selector.get("Name") == "ShellId":
            shell_id = (selector.text or "").strip()
    operation_timeout = _parse_duration(header_text("OperationTimeout", _NS_WSMAN))
    max_envelope = header_text("MaxEnvelopeSize", _NS_WSMAN)
    return _WsmanRequest(
        action=header_text("Action", _NS_ADDRESSING) or "",
        message_id=header_text("MessageID", _NS_ADDRESSING) or "",
        resource_uri=header_text("ResourceURI", _NS_WSMAN) or "",
        shell_id=shell_id,
        operation_timeout_s=min(operation_timeout or _MAX_OPERATION_TIMEOUT_S, _MAX_OPERATION_TIMEOUT_S),
        max_envelope_size=int(max_envelope) if max_envelope and max_envelope.isdigit() else _DEFAULT_MAX_ENVELOPE_SIZE,
        body=body,
    )


def _envelope(action: str, relates_to: str, body: str) -> bytes:
    return (
        f"{_ENVELOPE_OPEN}<s:Header><a:Action>{action}</a:Action>"
        f"<a:MessageID>uuid:{str(uuid.uuid4()).upper()}</a:MessageID><a:To>{_ANONYMOUS}</a:To>"
        f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo></s:Header><s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def _fault_envelope(fault: _WsmanFault, relates_to: str, machine: str) -> bytes:
    role = "s:Sender" if fault.sender else "s:Receiver"
    body = (
        f"<s:Fault><s:Code><s:Value>{role}</s:Value><s:Subcode><s:Value>{fault.subcode}</s:Value></s:Subcode></s:Code>"
        f'<s:Reason><s:Text xml:lang="en-US">{escape(fault.reason)}</s:Text></s:Reason>'
        f'<s:Detail><f:WSManFault xmlns:f="{_NS_FAULT_DETAIL}" Code="{fault.code}" Machine={quoteattr(machine)}>'
        f"<f:Message>{escape(fault.message)}</f:Message></f:WSManFault></s:Detail></s:Fault>"
    )
    return _envelope(_ACTION_FAULT, relates_to, body)


# --- Shells and commands --------------------------------------------------------------------


class _Command:
    __slots__ = (
        "arguments",
        "command",
        "command_id",
        "delivered",
        "done",
        "dropped",
        "failed",
        "result",
        "run_task",
        "stderr_sent",
        "stdin_parts",
        "stdin_seen",
        "stdout_sent",
    )

    def __init__(self, command_id: str, command: str, arguments: list[str]) -> None:
        self.command_id = command_id
        self.command = command
        self.arguments = arguments
        self.stdin_parts: list[bytes] = []
        self.stdin_seen = False
        self.run_task: asyncio.Task[None] | None = None
        self.done = asyncio.Event()
        self.result: CommandResult | None = None
        self.failed = False
        self.dropped = False
        self.stdout_sent = 0
        self.stderr_sent = 0
        self.delivered = False

    def cancel(self) -> None:
        if self.run_task is not None and not self.run_task.done():
            self.run_task.cancel()


class _Shell:
    __slots__ = ("commands", "last_used", "owner", "shell_id")

    def __init__(self, shell_id: str, owner: str) -> None:
        self.shell_id = shell_id
        self.owner = owner
        self.commands: dict[str, _Command] = {}
        self.last_used = time.monotonic()

    def close(self) -> None:
        for command in self.commands.values():
            command.cancel()
        self.commands.clear()


# --- HTTP -------------------------------------------------------------------------------


class _DropConnection(Exception):
    """Close the client's TCP connection without answering."""


@dataclass(slots=True)
class _HttpRequest:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


class _HttpError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Request Entity Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
}


async def _read_http_request(reader: asyncio.StreamReader) -> _HttpRequest | None:
    """The next request on the connection, or None when the client closed it between requests."""
    try:
        async with asyncio.timeout(_CONNECTION_IDLE_TIMEOUT_S):
            head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as error:
        if error.partial.strip():
            raise _HttpError(400) from error
        return None
    except asyncio.LimitOverrunError as error:
        raise _HttpError(431) from error
    except TimeoutError:
        return None
    lines = head[:-4].decode("latin-1").split("\r\n")
    request_line = lines[0].split(" ")
    if len(request_line) != 3 or not request_line[2].startswith("HTTP/1."):
        raise _HttpError(400)
    method, target, version = request_line
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, separator, value = line.partition(":")
        if not separator:
            raise _HttpError(400)
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise _HttpError(411)  # no WinRM client sends chunked bodies
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError as error:
        raise _HttpError(400) from error
    if length < 0:
        raise _HttpError(400)
    if length > _MAX_REQUEST_BODY:
        raise _HttpError(413)
    body = await reader.readexactly(length) if length else b""
    connection = headers.get("connection", "").lower()
    keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
    return _HttpRequest(method, target, headers, body, keep_alive)


def _http_response(
    status: int,
    body: bytes = b"",
    *,
    content_type: str | None = None,
    extra: Iterable[tuple[str, str]] = (),
    keep_alive: bool = True,
) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}", "Server: Microsoft-HTTPAPI/2.0"]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    lines.extend(f"{name}: {value}" for name, value in extra)
    lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: Keep-Alive" if keep_alive else "Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


_SOAP_CONTENT_TYPE = "application/soap+xml;charset=UTF-8"
_BASIC_CHALLENGE = ("WWW-Authenticate", 'Basic realm="WSMAN"')
_NEGOTIATE_CHALLENGE = ("WWW-Authenticate", "Negotiate")


class _Connection:
    """What the listener knows about one TCP connection."""

    __slots__ = ("ntlm_pending", "ntlm_session", "peer", "user")

    def __init__(self, peer: tuple[str, int]) -> None:
        self.peer = peer
        self.user: str | None = None
        # NTLM authenticates the connection: the handshake in progress, then the established context.
        self.ntlm_pending: spnego.ContextProxy | None = None
        self.ntlm_session: spnego.ContextProxy | None = None


# --- The listener ------------------------------------------------------------------------


class _Listener:
    def __init__(
        self,
        address: str,
        auth: str,
        credentials: WsmanCredentials,
        run_command: RunCommand,
        accept_filter: AcceptFilter | None,
        *,
        shell_create_delay: float = 0.0,
    ) -> None:
        self.address = address
        self.port = 0
        self._auth = auth
        self._credentials = credentials
        self._run_command = run_command
        self._accept_filter = accept_filter
        self._shell_create_delay = shell_create_delay
        self._shells: dict[str, _Shell] = {}
        self._connections: set[asyncio.StreamWriter] = set()

    def end_everything(self) -> None:
        """Every shell closed (its commands cancelled) and every connection reset."""
        for shell in self._shells.values():
            shell.close()
        self._shells.clear()
        for writer in list(self._connections):
            writer.transport.abort()
        self._connections.clear()

    # Connections

    async def serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer: tuple[str, int] = (str(peername[0]), int(peername[1])) if peername else ("", 0)
        if not self._accepts(peer):
            _reset(writer)
            return
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # Every response goes out in one write; without this, Nagle costs ~40 ms per request.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._connections.add(writer)
        try:
            await self._serve_requests(_Connection(peer), reader, writer)
        except _DropConnection:
            logger.debug("%s: dropping the connection of %s:%d", self.address, *peer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # The loop is shutting down. Ending normally keeps Python 3.12.1's stream callback from
            # reporting every cancelled connection as an error.
            pass
        except Exception:
            logger.exception("%s: connection of %s:%d failed", self.address, *peer)
        finally:
            self._connections.discard(writer)
            writer.close()

    def _accepts(self, peer: tuple[str, int]) -> bool:
        if self._accept_filter is None:
            return True
        try:
            return self._accept_filter(peer)
        except Exception:
            logger.exception("%s: accept filter failed", self.address)
            return False

    async def _serve_requests(self, connection: _Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        keep_alive = True
        while keep_alive:
            try:
                request = await _read_http_request(reader)
            except _HttpError as error:
                writer.write(_http_response(error.status, keep_alive=False))
                await writer.drain()
                return
            if request is None or writer.is_closing():
                return
            response, keep_alive = await self._respond(connection, request)
            if writer.is_closing():
                return  # the client gave up while a Receive was waiting
            writer.write(response)
            await writer.drain()

    async def _respond(self, connection: _Connection, request: _HttpRequest) -> tuple[bytes, bool]:
        keep_alive = request.keep_alive
        if request.target.split("?", 1)[0].lower() != "/wsman":
            return _http_response(404, keep_alive=keep_alive), keep_alive
        if request.method != "POST":
            return _http_response(405, extra=[("Allow", "POST")], keep_alive=keep_alive), keep_alive
        if self._auth == "basic":
            return await self._respond_basic(connection, request)
        return await self._respond_ntlm(connection, request)

    async def _respond_basic(self, connection: _Connection, request: _HttpRequest) -> tuple[bytes, bool]:
        keep_alive = request.keep_alive
        if not self._basic_credentials_valid(request.headers.get("authorization", "")):
            return _http_response(401, extra=[_BASIC_CHALLENGE], keep_alive=keep_alive), keep_alive
        connection.user = self._credentials.account_name
        if not request.body:
            return _http_response(200, keep_alive=keep_alive), keep_alive
        status, xml = await self._handle_message(connection, request.body)
        return _http_response(status, xml, content_type=_SOAP_CONTENT_TYPE, keep_alive=keep_alive), keep_alive

    def _basic_credentials_valid(self, authorization: str) -> bool:
        scheme, _space, encoded = authorization.partition(" ")
        decoded = _decode_base64(encoded)
        if scheme.lower() != "basic" or decoded is None:
            return False
        try:
            text = decoded.decode("utf-8")
        except UnicodeDecodeError:
            text = decoded.decode("latin-1")
        name, separator, password = text.partition(":")
        password_matches = hmac.compare_digest(password.encode("utf-8"), self._credentials.password.encode("utf-8"))
        return bool(separator) and password_matches and self._credentials.names_this_account(name)

    async def _respond_ntlm(self, connection: _Connection, request: _HttpRequest) -> tuple[bytes, bool]:
        refusal = self._authenticate_ntlm(connection, request)
        if refusal is not None:
            return refusal
        session = connection.ntlm_session
        assert session is not None
        keep_alive = request.keep_alive
        if not request.body:
            return _http_response(200, keep_alive=keep_alive), keep_alive
        if not _ntlm.is_encrypted_content_type(request.headers.get("content-type", "")):
            # AllowUnencrypted=false: Windows refuses a plaintext message after NTLM with a 401.
            connection.ntlm_session = None
            connection.user = None
            return _http_response(401, extra=[_NEGOTIATE_CHALLENGE], keep_alive=keep_alive), keep_alive
        try:
            plaintext = _ntlm.unseal_message(session, request.body)
        except _ntlm.EncryptedBodyError:
            logger.debug("%s: rejected a sealed message", self.address, exc_info=True)
            # The sequence numbers are now out of step; the connection cannot carry on.
            return _http_response(400, keep_alive=False), False
        status, xml = await self._handle_message(connection, plaintext)
        sealed = _ntlm.seal_message(session, xml)
        return _http_response(status, sealed, content_type=_ntlm.ENCRYPTED_CONTENT_TYPE, keep_alive=keep_alive), keep_alive

    def _authenticate_ntlm(self, connection: _Connection, request: _HttpRequest) -> tuple[bytes, bool] | None:
        """None when the connection is authenticated for this request, else the response refusing it."""
        keep_alive = request.keep_alive
        challenge = _http_response(401, extra=[_NEGOTIATE_CHALLENGE], keep_alive=keep_alive), keep_alive
        authorization = request.headers.get("authorization")
        if not authorization:
            if connection.ntlm_session is not None:
                return None
            # A sealed body on a connection that never authenticated (a reconnect after a drop): Windows says 400.
            encrypted = _ntlm.is_encrypted_content_type(request.headers.get("content-type", ""))
            return (_http_response(400, keep_alive=False), False) if encrypted else challenge
        scheme, _space, encoded = authorization.partition(" ")
        token = _decode_base64(encoded)
        if scheme.lower() not in ("negotiate", "ntlm") or token is None:
            return challenge
        message_type = _ntlm.ntlm_message_type(token)
        if message_type == _ntlm.NEGOTIATE_MESSAGE:
            answer = self._ntlm_negotiate(connection, token)
            if answer is None:
                return challenge
            header = ("WWW-Authenticate", f"{scheme} {base64.b64encode(answer).decode('ascii')}")
            return _http_response(401, extra=[header], keep_alive=keep_alive), keep_alive
        authenticated = message_type == _ntlm.AUTHENTICATE_MESSAGE and self._ntlm_authenticate(connection, token)
        return None if authenticated else challenge

    def _ntlm_negotiate(self, connection: _Connection, token: bytes) -> bytes | None:
        """The challenge answering a negotiate message; a new handshake replaces any earlier one."""
        connection.ntlm_session = None
        connection.user = None
        connection.ntlm_pending = _ntlm.new_acceptor()
        try:
            return connection.ntlm_pending.step(token) or b""
        except Exception:
            logger.debug("%s: rejected an NTLM negotiate message", self.address, exc_info=True)
            connection.ntlm_pending = None
            return None

    def _ntlm_authenticate(self, connection: _Connection, token: bytes) -> bool:
        context, connection.ntlm_pending = connection.ntlm_pending, None
        if context is None:
            return False
        try:
            context.step(token)
        except Exception:
            # Wrong password, unknown user or a malformed message: Windows answers all with a bare 401.
            logger.debug("%s: NTLM authentication failed", self.address, exc_info=True)
            return False
        # The user file may hold other listeners' accounts too: only this listener's account gets in.
        if not context.complete or not self._credentials.names_this_account(context.client_principal or ""):
            return False
        connection.ntlm_session = context
        connection.user = self._credentials.account_name
        return True

    # WS-Management

    async def _handle_message(self, connection: _Connection, xml: bytes) -> tuple[int, bytes]:
        message_id = ""
        try:
            request = _parse_request(xml)
            message_id = request.message_id
            if not message_id:
                raise _WsmanFault(
                    _ERROR_HEADER_REQUIRED,
                    "a:MessageInformationHeaderRequired",
                    "The WS-Management service cannot process the request. The request does not have all the expected SOAP headers.",
                )
            if request.resource_uri.lower() != _CMD_RESOURCE_URI:
                raise _WsmanFault(
                    _ERROR_INVALID_URI,
                    "w:InvalidResourceURI",
                    "The WS-Management service cannot process the request. The resource URI is missing or it has an incorrect format.",
                )
            handler = self._handlers.get(request.action)
            if handler is None:
                raise _WsmanFault(
                    _ERROR_ACTION_NOT_SUPPORTED,
                    "a:ActionNotSupported",
                    "The WS-Management service does not support the action specified in the request.",
                )
            return 200, await handler(self, connection, request)
        except _WsmanFault as fault:
            return 500, _fault_envelope(fault, message_id, self.address)

    async def _create(self, connection: _Connection, request: _WsmanRequest) -> bytes:
        self._close_idle_shells()
        shell_element = request.body.find(_q("Shell", _NS_SHELL))
        if shell_element is None:
            raise _invalid_body_fault()
        if self._shell_create_delay > 0:
            await asyncio.sleep(self._shell_create_delay)
        input_streams = shell_element.findtext(_q("InputStreams", _NS_SHELL)) or "stdin"
        output_streams = shell_element.findtext(_q("OutputStreams", _NS_SHELL)) or "stdout stderr"
        shell_id = str(uuid.uuid4()).upper()
        owner = connection.user or ""
        self._shells[shell_id] = _Shell(shell_id, owner)
        body = (
            f"<x:ResourceCreated><a:Address>http://{escape(self.address)}:{self.port}/wsman</a:Address>"
            f"<a:ReferenceParameters><w:ResourceURI>{_CMD_RESOURCE_URI}</w:ResourceURI>"
            f'<w:SelectorSet><w:Selector Name="ShellId">{shell_id}</w:Selector></w:SelectorSet>'
            f"</a:ReferenceParameters></x:ResourceCreated>"
            f"<rsp:Shell><rsp:ShellId>{shell_id}</rsp:ShellId><rsp:ResourceUri>{_CMD_RESOURCE_URI}</rsp:ResourceUri>"
            f"<rsp:Owner>{escape(owner)}</rsp:Owner><rsp:ClientIP>{escape(connection.peer[0])}</rsp:ClientIP>"
            f"<rsp:IdleTimeOut>PT{_SHELL_IDLE_TIMEOUT_S:.3f}S</rsp:IdleTimeOut>"
            f"<rsp:InputStreams>{escape(input_streams)}</rsp:InputStreams>"
            f"<rsp:OutputStreams>{escape(output_streams)}</rsp:OutputStreams>"
            f"<rsp:ShellRunTime>P0DT0H0M0S</rsp:ShellRunTime><rsp:ShellInactivity>P0DT0H0M0S</rsp:ShellInactivity>"
            f"</rsp:Shell>"
        )
        logger.debug("%s: shell %s created for %s", self.address, shell_id, owner)
        return _envelope(f"{_NS_TRANSFER}/CreateResponse", request.message_id, body)

    async def _delete(self, connection: _Connection, request: _WsmanRequest) -> bytes:
        shell = self._shell(connection, request)
        shell.close()
        del self._shells[shell.shell_id]
        return _envelope(f"{_NS_TRANSFER}/DeleteResponse", request.message_id, "")

    async def _command(self, connection: _Connection, request: _WsmanRequest) -> bytes:
        shell = self._shell(connection, request)
        command_line = request.body.find(_q("CommandLine", _NS_SHELL))
        if command_line is None:
            raise _invalid_body_fault()
        command_text = (command_line.findtext(_q("Command", _NS_SHELL)) or "").strip()
        arguments = [element.text or "" for element in command_line.iterfind(_q("Arguments", _NS_SHELL))]
        # A client may choose the id itself (MS-WSMV 3.1.4.11); pywinrm leaves it to the server.
        command_id = (command_line.get("CommandId") or str(uuid.uuid4())).upper()
        shell.commands[command_id] = _Command(command_id, command_text, arguments)
        body = f"<rsp:CommandResponse><rsp:CommandId>{escape(command_id)}</rsp:CommandId></rsp:CommandResponse>"
        return _envelope(f"{_NS_SHELL}/CommandResponse", request.message_id, body)

    async def _send(self, connection: _Connection, request: _WsmanRequest) -> bytes:
        shell = self._shell(connection, request)
        send = request.body.find(_q("Send", _NS_SHELL))
        if send is None:
            raise _invalid_body_fault()
        for stream in send.iterfind(_q("Stream", _NS_SHELL)):
            if stream.get("Name") != "stdin":
                continue
            command = self._command_of(shell, stream.get("CommandId"))
            if command.run_task is not None:
                continue  # stdin already ended: the process no longer reads it
            command.stdin_seen = True
            try:
                command.stdin_parts.append(base64.b64decode(stream.text or "", validate=False))
            except (binascii.Error, ValueError) as error:
                raise _invalid_body_fault() from error
            if (stream.get("End") or "").lower() == "true":
                stdin = b"".join(command.stdin_parts)
                command.stdin_parts.clear()
                self._start(command, stdin, connection)
        return _envelope(f"{_NS_SHELL}/SendResponse", request.message_id, "<rsp:SendResponse/>")

    async def _receive(self, connection: _Connection, request: _WsmanRequest) -> bytes:
        shell = self._shell(connection, request)
        desired = request.body.find(f"{_q('Receive', _NS_SHELL)}/{_q('DesiredStream', _NS_SHELL)}")
        if desired is None:
            raise _invalid_body_fault()
        command = self._command_of(shell, desired.get("CommandId"))
        if command.delivered:
            raise _command_not_found_fault()
        if command.run_task is None and not command.stdin_seen:
            self._start(command, b"", connection)
        if not command.done.is_set():
            # Answer just before the client's OperationTimeout runs out, so it polls again instead of timing out.
            wait_s = request.operation_timeout_s - min(0.5, request.operation_timeout_s * 0.1)
            try:
                async with asyncio.timeout(wait_s):
                    await command.done.wait()
            except TimeoutError:
                raise _operation_timeout_fault() from None
        shell.last_used = time.monotonic()
        if command.failed or command.result is None:
            raise _WsmanFault(_ERROR_INTERNAL, "w:InternalError", "The Windows Remote Shell failed to run the command.", sender=False)
        result = command.result
        if result.drop_connection and not command.dropped:
            command.dropped = True
            raise _DropConnection
        return _envelope(f"{_NS_SHELL}/ReceiveResponse", request.message_id, self._output_chunk(command, result, request.max_envelope_size))

    @staticmethod
    def _output_chunk(command: _Command, result: CommandResult, max_envelope_size: int) -> str:
        """The next Receive body: as much output as fits in the client's envelope size, then Done."""
        budget = max(3 * 1024, (max_envelope_size - _ENVELOPE_OVERHEAD) * 3 // 4)
        stdout = result.stdout[command.stdout_sent : command.stdout_sent + budget]
        command.stdout_sent += len(stdout)
        budget -= len(stdout)
        stderr = result.stderr[command.stderr_sent : command.stderr_sent + budget] if budget > 0 else b""
        command.stderr_sent += len(stderr)
        command_id = escape(command.command_id)
        parts = ["<rsp:ReceiveResponse>"]
        for name, data in (("stdout", stdout), ("stderr", stderr)):
            if data:
                encoded = base64.b64encode(data).decode("ascii")
                parts.append(f'<rsp:Stream Name="{name}" CommandId="{command_id}">{encoded}</rsp:Stream>')
        finished = command.stdout_sent >= len(result.stdout) and command.stderr_sent >= len(result.stderr)
        if finished:
            command.delivered = True
            parts.append(f'<rsp:Stream Name="stdout" CommandId="{command_id}" End="true"></rsp:Stream>')
            parts.append(f'<rsp:Stream Name="stderr" CommandId="{command_id}" End="true"></rsp:Stream>')
            parts.append(f'<rsp:CommandState CommandId="{command_id}" State="{_STATE_DONE}"><rsp:ExitCode>{int(result.rc)}</rsp:ExitCode></rsp:CommandState>')
        else:
            parts.append(f'<rsp:CommandState CommandId="{command_id}" State="{_STATE_RUNNING}"/>')
        parts.append("</rsp:ReceiveResponse>")
        return "".join(parts)

    async def _signal(self, connection: _Connection, request: _WsmanRequest) -> bytes:
        shell = self._shell(connection, request)
        signal = request.body.find(_q("Signal", _NS_SHELL))
        if signal is None:
            raise _invalid_body_fault()
        command = self._command_of(shell, signal.get("CommandId"))
        code = (signal.findtext(_q("Code", _NS_SHELL)) or "").strip()
        if code == _SIGNAL_TERMINATE:
            command.cancel()
            del shell.commands[command.command_id]
        elif code == _SIGNAL_CTRL_C and not command.done.is_set():
            command.cancel()
            command.result = CommandResult(rc=_CTRL_C_EXIT_CODE)
            command.done.set()
        return _envelope(f"{_NS_SHELL}/SignalResponse", request.message_id, "<rsp:SignalResponse/>")

    _handlers: ClassVar[dict[str, Callable[[_Listener, _Connection, _WsmanRequest], Awaitable[bytes]]]] = {
        _ACTION_CREATE: _create,
        _ACTION_DELETE: _delete,
        _ACTION_COMMAND: _command,
        _ACTION_SEND: _send,
        _ACTION_RECEIVE: _receive,
        _ACTION_SIGNAL: _signal,
    }

    # State

    def _shell(self, connection: _Connection, request: _WsmanRequest) -> _Shell:
        shell_id = (request.shell_id or "").upper()
        shell = self._shells.get(shell_id)
        if shell is None or shell.owner != (connection.user or ""):
            raise _shell_not_found_fault(request.shell_id or "")
        shell.last_used = time.monotonic()
        return shell

    @staticmethod
    def _command_of(shell: _Shell, command_id: str | None) -> _Command:
        command = shell.commands.get((command_id or "").upper())
        if command is None:
            raise _command_not_found_fault()
        return command

    def _close_idle_shells(self) -> None:
        # Shells a client never deleted (e.g. after a dropped connection) go the way Windows' IdleTimeout sends them.
        deadline = time.monotonic() - _SHELL_IDLE_TIMEOUT_S
        for shell_id in [shell_id for shell_id, shell in self._shells.items() if shell.last_used < deadline]:
            self._shells.pop(shell_id).close()

    def _start(self, command: _Command, stdin: bytes, connection: _Connection) -> None:
        command.run_task = asyncio.create_task(self._execute(command, stdin, connection.peer, connection.user or ""))

    async def _execute(self, command: _Command, stdin: bytes, client: tuple[str, int], user: str) -> None:
        try:
            command.result = await self._run_command(command.command, list(command.arguments), stdin, client, user)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("%s: run_command failed for %.60s", self.address, command.command)
            command.failed = True
        finally:
            command.done.set()


def _decode_base64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def _reset(writer: asyncio.StreamWriter) -> None:
    """Closes the connection with a TCP reset, as a refusing host would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
