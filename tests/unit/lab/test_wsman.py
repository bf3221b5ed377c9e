"""The lab's WS-Management listener, driven by pywinrm and by ansible-core itself."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
import winrm
from spnego._ntlm_raw.crypto import ntowfv1
from winrm.exceptions import InvalidCredentialsError, WinRMOperationTimeoutError, WinRMTransportError, WSManFaultError
from winrm.protocol import Protocol

from xulab import _ntlm
from xulab.wsman import AcceptFilter, CommandResult, RunCommand, WsmanCredentials, configure_ntlm_users, start_wsman_server

ADDRESS = "127.0.9.1"
CREDENTIALS = WsmanCredentials(username="labadmin", password="Lab-Pa55word!", domain="XULAB")  # noqa: S106 - a lab account
VENV_BIN = Path(sys.executable).parent


class ListenerLoop:
    """An asyncio loop in a background thread that hosts the listeners under test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="wsman-test-loop", daemon=True)
        self._thread.start()
        self._servers: list[asyncio.base_events.Server] = []

    def call(self, coroutine: Awaitable[Any], timeout: float = 10.0) -> Any:
        async def wrapper() -> Any:
            return await coroutine

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(timeout)

    def start(
        self,
        run_command: RunCommand,
        *,
        auth: str,
        accept_filter: AcceptFilter | None = None,
        credentials: WsmanCredentials = CREDENTIALS,
        shell_create_delay: float = 0.0,
    ) -> int:
        server = self.call(
            start_wsman_server(
                ADDRESS, 0, auth=auth, credentials=credentials, run_command=run_command, accept_filter=accept_filter,
                shell_create_delay=shell_create_delay,
            )
        )
        self._servers.append(server)
        port: int = server.sockets[0].getsockname()[1]
        return port

    def close(self) -> None:
        async def shut_down() -> None:
            for server in self._servers:
                server.close()
            current = asyncio.current_task()
            pending = [task for task in asyncio.all_tasks() if task is not current]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        self.call(shut_down())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


class Recorder:
    """A run_command that answers with what it was given, as JSON on stdout."""

    def __init__(self, *, delay: float = 0.0, rc: int = 0, stderr: bytes = b"", drop: bool = False) -> None:
        self.calls: list[dict[str, Any]] = []
        self._delay = delay
        self._rc = rc
        self._stderr = stderr
        self._drop = drop

    async def __call__(self, command: str, arguments: list[str], stdin: bytes, client: tuple[str, int], user: str) -> CommandResult:
        call = {"command": command, "arguments": arguments, "stdin": stdin.decode(), "client": list(client), "user": user}
        self.calls.append(call)
        if self._delay:
            await asyncio.sleep(self._delay)
        return CommandResult(rc=self._rc, stdout=json.dumps(call).encode(), stderr=self._stderr, drop_connection=self._drop)


@pytest.fixture(scope="module")
def listeners() -> Iterator[ListenerLoop]:
    loop = ListenerLoop()
    yield loop
    loop.close()


def endpoint(port: int) -> str:
    return f"http://{ADDRESS}:{port}/wsman"


def protocol(port: int, transport: str, username: str = "labadmin", password: str = CREDENTIALS.password, **options: Any) -> Protocol:
    options.setdefault("ca_trust_path", None)  # not REQUESTS_CA_BUNDLE: pywinrm warns about that one
    return Protocol(endpoint(port), transport=transport, username=username, password=password, proxy=None, **options)  # type: ignore[arg-type]


def run_with_stdin(client: Protocol, command: str, arguments: list[str], stdin: bytes) -> tuple[bytes, bytes, int]:
    shell_id = client.open_shell(codepage=65001)
    command_id = client.run_command(shell_id, command, arguments)
    client.send_command_input(shell_id, command_id, stdin, end=True)
    stdout, stderr, rc = client.get_command_output(shell_id, command_id)
    client.cleanup_command(shell_id, command_id)
    client.close_shell(shell_id)
    return stdout, stderr, rc


# --- pywinrm ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("transport", "username"),
    [
        ("basic", "labadmin"),
        ("basic", "XULAB\\labadmin"),
        ("ntlm", "labadmin"),
        ("ntlm", "XULAB\\labadmin"),
        ("ntlm", "labadmin@xulab"),
    ],
)
def test_command_with_stdin_round_trip(listeners: ListenerLoop, transport: str, username: str) -> None:
    recorder = Recorder(rc=3, stderr=b"warning: something")
    port = listeners.start(recorder, auth=transport)
    options: dict[str, Any] = {"message_encryption": "always"} if transport == "ntlm" else {}
    stdin = b'{"payload": "' + b"x" * 300_000 + b'"}'

    stdout, stderr, rc = run_with_stdin(protocol(port, transport, username, **options), "PowerShell", ["-NoProfile", "-EncodedCommand", "ZQBjAGgAbwA="], stdin)

    assert rc == 3
    assert stderr == b"warning: something"
    seen = json.loads(stdout)
    assert seen["command"] == "PowerShell"
    assert seen["arguments"] == ["-NoProfile -EncodedCommand ZQBjAGgAbwA="]  # pywinrm joins the arguments into one element
    assert seen["stdin"].encode() == stdin
    assert seen["client"][0].startswith("127.")  # Linux picks 127.0.0.1 as the source towards 127.0.9.1
    assert seen["user"] == "XULAB\\labadmin"
    assert len(recorder.calls) == 1


def test_command_without_send_runs_at_first_receive(listeners: ListenerLoop) -> None:
    recorder = Recorder()
    port = listeners.start(recorder, auth="ntlm")

    session = winrm.Session(endpoint(port), auth=("labadmin", CREDENTIALS.password), transport="ntlm", proxy=None, ca_trust_path=None)
    response = session.run_cmd("hostname")

    assert response.status_code == 0
    assert json.loads(response.std_out)["stdin"] == ""
    assert recorder.calls[0]["arguments"] == []


def test_several_shells_on_one_connection_and_large_output(listeners: ListenerLoop) -> None:
    big = bytes(range(256)) * 2000  # 512,000 bytes: more than one Receive envelope holds

    async def answer(command: str, arguments: list[str], stdin: bytes, client: tuple[str, int], user: str) -> CommandResult:
        return CommandResult(rc=0, stdout=big if command == "big" else command.encode())

    port = listeners.start(answer, auth="ntlm")
    client = protocol(port, "ntlm", message_encryption="always")
    first, second = client.open_shell(), client.open_shell()
    one = client.run_command(first, "one")
    two = client.run_command(second, "two")
    large = client.run_command(first, "big")

    assert client.get_command_output(second, two) == (b"two", b"", 0)
    assert client.get_command_output(first, one) == (b"one", b"", 0)
    receives = 0
    stdout = b""
    done = False
    while not done:
        chunk, _stderr, rc, done = client.get_command_output_raw(first, large)
        stdout += chunk
        receives += 1
    assert stdout == big
    assert rc == 0
    assert receives > 1
    for shell_id, command_id in ((first, one), (second, two), (first, large)):
        client.cleanup_command(shell_id, command_id)
    client.close_shell(second, close_session=False)
    client.close_shell(first)


def test_concurrent_clients(listeners: ListenerLoop) -> None:
    recorder = Recorder(delay=0.2)
    port = listeners.start(recorder, auth="ntlm")

    def one_client(index: int) -> bytes:
        session = winrm.Session(endpoint(port), auth=("labadmin", CREDENTIALS.password), transport="ntlm", proxy=None, ca_trust_path=None)
        return session.run_cmd(f"client{index}").std_out

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        outputs = list(pool.map(one_client, range(8)))

    assert [json.loads(output)["command"] for output in outputs] == [f"client{index}" for index in range(8)]
    assert time.monotonic() - started < 1.5  # the runs overlap instead of queueing


def test_shell_create_costs_its_delay_without_holding_up_other_listeners(listeners: ListenerLoop) -> None:
    free_port = listeners.start(Recorder(), auth="basic")
    slow_ports = [listeners.start(Recorder(), auth="basic", shell_create_delay=0.3) for _port in range(2)]

    def one_call(port: int) -> float:
        client = protocol(port, "basic")
        began = time.monotonic()
        shell_id = client.open_shell()
        elapsed = time.monotonic() - began
        client.close_shell(shell_id)
        return elapsed

    one_call(free_port)  # the first connection's set-up is not what is measured
    free = one_call(free_port)
    with ThreadPoolExecutor(2) as pool:
        began = time.monotonic()
        slow = list(pool.map(one_call, slow_ports))
        both = time.monotonic() - began

    assert free < 0.1
    assert all(elapsed >= 0.3 for elapsed in slow)
    assert both < 0.55  # two hosts' Creates overlap


@pytest.mark.parametrize(
    ("transport", "username", "password"),
    [
        ("basic", "labadmin", "wrong"),
        ("basic", "someone", CREDENTIALS.password),
        ("basic", "OTHER\\labadmin", CREDENTIALS.password),
        ("ntlm", "labadmin", "wrong"),
        ("ntlm", "XULAB\\someone", CREDENTIALS.password),
    ],
)
def test_wrong_credentials_are_rejected(listeners: ListenerLoop, transport: str, username: str, password: str) -> None:
    recorder = Recorder()
    port = listeners.start(recorder, auth=transport)

    with pytest.raises(InvalidCredentialsError):
        protocol(port, transport, username, password).open_shell()
    assert recorder.calls == []


def test_listeners_refuse_the_other_scheme(listeners: ListenerLoop) -> None:
    basic_port = listeners.start(Recorder(), auth="basic")
    ntlm_port = listeners.start(Recorder(), auth="ntlm")

    with pytest.raises(InvalidCredentialsError):
        protocol(basic_port, "ntlm").open_shell()
    with pytest.raises(InvalidCredentialsError):
        protocol(ntlm_port, "basic").open_shell()

    basic_header = "Basic " + base64.b64encode(b"labadmin:" + CREDENTIALS.password.encode()).decode()
    assert raw_post(basic_port, {"Authorization": "Negotiate TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAKAGFKAAAADw=="}) == (
        401,
        'Basic realm="WSMAN"',
        0,
    )
    assert raw_post(ntlm_port, {"Authorization": basic_header}) == (401, "Negotiate", 0)


def raw_post(port: int, headers: dict[str, str], body: bytes = b"") -> tuple[int, str | None, int]:
    connection = http.client.HTTPConnection(ADDRESS, port, timeout=5)
    try:
        connection.request("POST", "/wsman", body=body, headers={"Content-Type": "application/soap+xml;charset=UTF-8", **headers})
        response = connection.getresponse()
        content = response.read()
        assert response.getheader("Content-Length") == str(len(content))
        return response.status, response.getheader("WWW-Authenticate"), len(content)
    finally:
        connection.close()


def test_ntlm_refuses_plaintext_messages(listeners: ListenerLoop) -> None:
    port = listeners.start(Recorder(), auth="ntlm")

    with pytest.raises(InvalidCredentialsError):
        protocol(port, "ntlm", message_encryption="never").open_shell()


def test_sealed_message_on_a_new_connection_is_a_bad_request(listeners: ListenerLoop) -> None:
    port = listeners.start(Recorder(), auth="ntlm")
    client = protocol(port, "ntlm", message_encryption="always")
    client.open_shell()
    session = client.transport.session
    assert session is not None
    session.get_adapter(endpoint(port)).close()  # what a read timeout does to the pooled connection

    with pytest.raises(WinRMTransportError) as raised:
        client.open_shell()
    assert raised.value.code == 400


@pytest.mark.parametrize("transport", ["basic", "ntlm"])
def test_slow_command_is_polled_through_operation_timeouts(listeners: ListenerLoop, transport: str) -> None:
    port = listeners.start(Recorder(delay=2.2), auth=transport)
    client = protocol(port, transport, operation_timeout_sec=1, read_timeout_sec=2)
    shell_id = client.open_shell()
    command_id = client.run_command(shell_id, "Restart-Service")
    client.send_command_input(shell_id, command_id, b"{}", end=True)

    timeouts = 0
    while True:
        try:
            stdout, _stderr, rc, done = client.get_command_output_raw(shell_id, command_id)
        except WinRMOperationTimeoutError:
            timeouts += 1
            continue
        if done:
            break
    client.cleanup_command(shell_id, command_id)
    client.close_shell(shell_id)

    assert timeouts >= 2
    assert rc == 0
    assert json.loads(stdout)["stdin"] == "{}"


def test_drop_connection_closes_instead_of_answering(listeners: ListenerLoop) -> None:
    recorder = Recorder(drop=True)
    port = listeners.start(recorder, auth="basic")
    client = protocol(port, "basic")
    shell_id = client.open_shell()
    command_id = client.run_command(shell_id, "file_write")
    client.send_command_input(shell_id, command_id, b"data", end=True)

    with pytest.raises(requests.exceptions.ConnectionError):
        client.get_command_output(shell_id, command_id)
    assert len(recorder.calls) == 1  # the command did run

    # The shell outlives the connection: a new one can still read the output and clean up.
    stdout, _stderr, rc = client.get_command_output(shell_id, command_id)
    assert rc == 0
    assert json.loads(stdout)["stdin"] == "data"
    client.cleanup_command(shell_id, command_id)
    client.close_shell(shell_id)


def test_accept_filter_refuses_connections(listeners: ListenerLoop) -> None:
    peers: list[tuple[str, int]] = []

    def refuse(peer: tuple[str, int]) -> bool:
        peers.append(peer)
        return False

    recorder = Recorder()
    port = listeners.start(recorder, auth="basic", accept_filter=refuse)

    with pytest.raises(requests.exceptions.ConnectionError):
        protocol(port, "basic", read_timeout_sec=3, operation_timeout_sec=2).open_shell()
    assert peers
    assert peers[0][0].startswith("127.")
    assert recorder.calls == []


def test_signal_and_delete_cancel_a_running_command(listeners: ListenerLoop) -> None:
    cancelled = threading.Event()

    async def hang(command: str, arguments: list[str], stdin: bytes, client: tuple[str, int], user: str) -> CommandResult:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return CommandResult(rc=0)

    port = listeners.start(hang, auth="basic")
    client = protocol(port, "basic", operation_timeout_sec=1, read_timeout_sec=2)
    shell_id = client.open_shell()
    command_id = client.run_command(shell_id, "sleep")
    with pytest.raises(WinRMOperationTimeoutError):
        client.get_command_output_raw(shell_id, command_id)
    client.cleanup_command(shell_id, command_id)  # asserts RelatesTo itself
    assert cancelled.wait(2)
    client.close_shell(shell_id)  # asserts RelatesTo itself

    with pytest.raises(WSManFaultError) as raised:
        client.run_command(shell_id, "again")
    assert raised.value.wsman_fault_code == 0x8033805B


def test_account_names_and_user_file() -> None:
    assert CREDENTIALS.names_this_account("LABADMIN")
    assert CREDENTIALS.names_this_account("xulab\\labadmin")
    assert CREDENTIALS.names_this_account("labadmin@XULAB")
    assert not CREDENTIALS.names_this_account("OTHER\\labadmin")
    assert not CREDENTIALS.names_this_account("labadmin@OTHER")
    assert "Lab-Pa55word!" not in repr(CREDENTIALS)

    path = configure_ntlm_users([CREDENTIALS])
    assert os.environ["NTLM_USER_FILE"] == path
    assert os.stat(path).st_mode & 0o777 == 0o600
    with pytest.raises(ValueError, match="another password"):
        configure_ntlm_users([WsmanCredentials("labadmin", "different", "XULAB")])
    with pytest.raises(ValueError, match="must not contain"):
        configure_ntlm_users([WsmanCredentials("other", "pass:word")])
    with pytest.raises(ValueError, match="must not contain"):
        configure_ntlm_users([WsmanCredentials("OTHER\\other", "password")])
    # The account's hashes, as pyspnego reads them without deriving them again for every connection; not the password.
    lines = Path(path).read_text().splitlines()
    assert "Lab-Pa55word!" not in "".join(lines)
    nt = ntowfv1("Lab-Pa55word!").hex().upper()
    assert {line.split(":")[0] for line in lines if line.split(":")[3] == nt} >= {"labadmin", "XULAB\\labadmin", "labadmin@XULAB"}


def test_user_files_of_killed_processes_are_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    orphan = tmp_path / f"xulab-ntlm-{finished.stdout.strip()}-abc"
    orphan.mkdir()
    (orphan / "users").write_text("XULAB:labadmin:secret\n")
    alive = tmp_path / f"xulab-ntlm-{os.getpid()}-def"
    alive.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    _ntlm._remove_orphaned_directories()

    assert not orphan.exists()
    assert alive.exists()


# --- ansible-core ------------------------------------------------------------------------------


def ansible_raw(port: int, transport: str, password: str, workdir: Path) -> subprocess.Popen[str]:
    config = workdir / "ansible.cfg"
    config.touch()
    environment = {key: value for key, value in os.environ.items() if "proxy" not in key.lower()}
    environment.update(
        {
            "NO_PROXY": "*",
            "LC_ALL": "C.UTF-8",
            "ANSIBLE_LOCAL_TEMP": str(workdir / "tmp"),
            "ANSIBLE_HOME": str(workdir / "home"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_CONFIG": str(config),
        }
    )
    command = [
        str(VENV_BIN / "ansible"),
        "all",
        "-i",
        f"{ADDRESS},",
        "-m",
        "raw",
        "-a",
        "Get-Date",
        "-e",
        "ansible_connection=winrm",
        "-e",
        f"ansible_winrm_transport={transport}",
        "-e",
        "ansible_user=labadmin",
        "-e",
        f"ansible_password={password}",
        "-e",
        f"ansible_port={port}",
        "-e",
        "ansible_winrm_scheme=http",
    ]
    return subprocess.Popen(command, cwd=workdir, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_ansible_raw_over_basic_and_ntlm(listeners: ListenerLoop, tmp_path: Path) -> None:
    recorders = {"basic": Recorder(), "ntlm": Recorder()}
    ports = {transport: listeners.start(recorder, auth=transport) for transport, recorder in recorders.items()}
    runs = {transport: ansible_raw(port, transport, CREDENTIALS.password, tmp_path) for transport, port in ports.items()}
    wrong = ansible_raw(ports["ntlm"], "ntlm", "wrong-password", tmp_path)

    for transport, run in runs.items():
        output, _stderr = run.communicate(timeout=60)
        assert run.returncode == 0, output
        assert "CHANGED | rc=0" in output
        seen = recorders[transport].calls
        assert len(seen) == 1
        assert seen[0]["user"] == "XULAB\\labadmin"
        assert seen[0]["stdin"] == ""
        # raw sends the script -EncodedCommand'ed; the fake's echo of it is what Ansible printed.
        assert "-EncodedCommand" in " ".join([seen[0]["command"], *seen[0]["arguments"]])
        assert json.dumps(seen[0]["user"])[1:-1] in output

    output, _stderr = wrong.communicate(timeout=60)
    assert wrong.returncode != 0
    assert "UNREACHABLE" in output
    assert "credentials were rejected" in output


# --- hostile XML ---------------------------------------------------------------------------------

_CREATE_WITH_ENTITY = (
    '<?xml version="1.0" encoding="{encoding}"?>'
    '<!DOCTYPE s:Envelope [<!ENTITY big "{filler}">]>'
    '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
    'xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell">'
    "<s:Header><a:Action>http://schemas.xmlsoap.org/ws/2004/09/transfer/Create</a:Action>"
    "<a:MessageID>uuid:11111111-2222-3333-4444-555555555555</a:MessageID>"
    "<w:ResourceURI>http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd</w:ResourceURI></s:Header>"
    "<s:Body><rsp:Shell><rsp:InputStreams>{streams}</rsp:InputStreams></rsp:Shell></s:Body></s:Envelope>"
)
_HOSTILE_ENCODINGS = {
    "utf-8": ("UTF-8", "utf-8", b""),
    "utf-8 with BOM": ("UTF-8", "utf-8", b"\xef\xbb\xbf"),
    "utf-16-le with BOM": ("UTF-16", "utf-16-le", b"\xff\xfe"),
    "utf-16-be with BOM": ("UTF-16", "utf-16-be", b"\xfe\xff"),
    "utf-16-le without BOM": ("UTF-16", "utf-16-le", b""),
    "utf-16-be without BOM": ("UTF-16", "utf-16-be", b""),
}


def soap_post(port: int, body: bytes, charset: str) -> tuple[int, bytes]:
    """One authenticated (Basic) WS-Man message as raw bytes; the status and the response body."""
    authorization = "Basic " + base64.b64encode(b"labadmin:" + CREDENTIALS.password.encode()).decode()
    connection = http.client.HTTPConnection(ADDRESS, port, timeout=5)
    try:
        headers = {"Content-Type": f"application/soap+xml;charset={charset}", "Authorization": authorization}
        connection.request("POST", "/wsman", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("variant", list(_HOSTILE_ENCODINGS))
def test_a_dtd_or_entity_is_refused_in_every_encoding(listeners: ListenerLoop, variant: str) -> None:
    declared, codec, bom = _HOSTILE_ENCODINGS[variant]
    port = listeners.start(Recorder(), auth="basic")
    filler = "A" * 1000
    body = bom + _CREATE_WITH_ENTITY.format(encoding=declared, filler=filler, streams="&big;" * 100).encode(codec)

    status, answer = soap_post(port, body, declared)

    # Expanded, the entity would come back 100,000 bytes long in the created shell's InputStreams.
    assert status == 500, answer[:300]
    assert len(answer) < 3000
    assert b'Code="2150858791"' in answer and b"w:InvalidBody" in answer
    assert filler.encode() not in answer


@pytest.mark.parametrize("variant", ["utf-8", "utf-16-le with BOM", "utf-16-be without BOM"])
def test_a_message_without_a_dtd_is_served_in_any_encoding(listeners: ListenerLoop, variant: str) -> None:
    declared, codec, bom = _HOSTILE_ENCODINGS[variant]
    port = listeners.start(Recorder(), auth="basic")
    plain = _CREATE_WITH_ENTITY.replace('<!DOCTYPE s:Envelope [<!ENTITY big "{filler}">]>', "")
    body = bom + plain.format(encoding=declared, streams="stdin").encode(codec)

    status, answer = soap_post(port, body, declared)

    assert status == 200, answer[:300]
    assert b"<rsp:InputStreams>stdin</rsp:InputStreams>" in answer
