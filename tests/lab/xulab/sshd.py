"""The lab's SSH endpoint: Win32-OpenSSH on Windows Server 2019+, with powershell.exe as its DefaultShell.

One asyncssh server per simulated host speaks what Ansible's ``ssh`` connection (``ansible_shell_type:
powershell``) meets on such a server: public key authentication for the lab's administrator (as
``administrators_authorized_keys`` grants it; no password authentication, so no ``sshpass``), and exec requests
on session channels, several per connection (Ansible's ControlMaster multiplexes them). sshd runs an exec
request's command as ``powershell.exe -c <command>`` (``do_exec_windows``, contrib/win32/win32compat/w32-doexec.c
in PowerShell/openssh-portable), so the command is a PowerShell script with the channel as its stdin, stdout and
stderr: the host's CommandShell runs it, the same one behind the host's WinRM endpoint. What arrives:

* ansible-core 2.18 and later send the command unchanged: ``PowerShell -NoProfile ... -EncodedCommand <bootstrap>``;
* 2.16 and 2.17 send ``chcp.com 65001 > $null ; PowerShell ... -EncodedCommand <that command, encoded again>``.

The host's firewall filters the port as it filters WinRM (Win32-OpenSSH's installation adds the
``OpenSSH-Server-In-TCP`` allow rule).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

from .firewall import FirewallRule
from .host import Host
from .shell import CommandShell, reads_stdin
from .wsman import WsmanCredentials

# Windows' sshd listens on 22; the lab uses a port that needs no privileges.
SSH_PORT = 2222
KEY_TYPE = "ssh-ed25519"
log = logging.getLogger(__name__)
# asyncssh logs every command line at INFO: the lab's log keeps its own lines only.
logging.getLogger("asyncssh").setLevel(logging.WARNING)


def openssh_rule(port: int = SSH_PORT) -> FirewallRule:
    """The inbound allow rule Win32-OpenSSH's installation (install-sshd.ps1, the optional feature) adds."""
    return FirewallRule(
        name="OpenSSH-Server-In-TCP",
        display_name="OpenSSH SSH Server (sshd)",
        group="OpenSSH Server",
        local_ports=[str(port)],
    )


@dataclass
class SshKeys:
    """The lab's client key (the administrator's) and one host key per host, with the files the controller needs."""

    client: asyncssh.SSHKey = field(default_factory=lambda: asyncssh.generate_private_key(KEY_TYPE))
    hosts: dict[str, asyncssh.SSHKey] = field(default_factory=dict)

    def host_key(self, address: str) -> asyncssh.SSHKey:
        if address not in self.hosts:
            self.hosts[address] = asyncssh.generate_private_key(KEY_TYPE)
        return self.hosts[address]

    def write(self, directory: Path, port: int = SSH_PORT) -> tuple[Path, Path]:
        """``id_ed25519`` (mode 0600) and ``known_hosts`` in ``directory``; returns their paths."""
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        private = directory / "id_ed25519"
        private.unlink(missing_ok=True)
        self.client.write_private_key(str(private))
        private.chmod(0o600)
        known_hosts = directory / "known_hosts"
        lines = [f"[{address}]:{port} {key.export_public_key().decode('ascii').strip()}" for address, key in self.hosts.items()]
        known_hosts.write_text("\n".join(lines) + "\n", encoding="ascii")
        return private, known_hosts


class _SshServer(asyncssh.SSHServer):
    """One connection: the host's firewall, then public key authentication of the lab's administrator only."""

    def __init__(
        self, host: Host, port: int, credentials: WsmanCredentials, client_key: asyncssh.SSHKey, open_connections: set[asyncssh.SSHServerConnection]
    ) -> None:
        self._host = host
        self._port = port
        self._credentials = credentials
        self._client_key = client_key.export_public_key()
        self._open = open_connections
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        peer = conn.get_extra_info("peername")
        if not peer or not self._host.admits(str(peer[0]), self._port):
            conn.abort()
            return
        self._conn = conn
        self._open.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._open.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return self._credentials.names_this_account(username) and key.export_public_key() == self._client_key


def _process_handler(shell: CommandShell, credentials: WsmanCredentials) -> Callable[[asyncssh.SSHServerProcess[bytes]], object]:
    async def handle(process: asyncssh.SSHServerProcess[bytes]) -> None:
        command = process.command
        if command is None:
            # An interactive shell: Ansible never asks for one.
            process.stderr.write(b"xulab answers exec requests only\r\n")
            process.exit(1)
            return
        # What reads stdin waits for its end (Ansible always sends one); anything else runs at once, as PowerShell
        # runs a command that never reads its input.
        stdin = b""
        if reads_stdin(command):
            try:
                stdin = await process.stdin.read()
            except asyncssh.BreakReceived:
                stdin = b""
        peer = process.get_extra_info("peername") or ("", 0)
        result = await shell.run_default_shell_command(command, stdin, (str(peer[0]), int(peer[1])), credentials.account_name)
        if result.drop_connection:
            # The primitive ran; the connection goes before its answer, as a dropped network would take it.
            process.channel.get_connection().abort()
            return
        process.stdout.write(result.stdout)
        process.stderr.write(result.stderr)
        process.exit(result.rc)

    return handle


@dataclass
class SshListener:
    acceptor: asyncssh.SSHAcceptor
    # Ansible's ControlMaster keeps a connection open for a minute after its last command.
    connections: set[asyncssh.SSHServerConnection]


async def start_ssh_server(host: Host, shell: CommandShell, *, port: int, credentials: WsmanCredentials, keys: SshKeys) -> SshListener:
    """An SSH listener on the host's address, running exec requests through ``shell``."""
    connections: set[asyncssh.SSHServerConnection] = set()
    acceptor = await asyncssh.create_server(
        lambda: _SshServer(host, port, credentials, keys.client, connections),
        host.address,
        port,
        server_host_keys=[keys.host_key(host.address)],
        process_factory=_process_handler(shell, credentials),
        encoding=None,
        reuse_address=True,
        # Win32-OpenSSH's banner; Ansible reads nothing from it.
        server_version="OpenSSH_for_Windows_9.5",
    )
    return SshListener(acceptor, connections)


async def stop_ssh_servers(listeners: list[SshListener]) -> None:
    """Stop listening and end every connection (a client's ControlMaster would otherwise hold the stop for a minute)."""
    for listener in listeners:
        listener.acceptor.close()
        for connection in list(listener.connections):
            connection.abort()
    await asyncio.gather(*(listener.acceptor.wait_closed() for listener in listeners), return_exceptions=True)
