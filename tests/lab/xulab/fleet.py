"""The lab's background process: every host of the fleet in one asyncio loop.

`python -m xulab serve` builds the hosts, binds their WinRM and XU ports, writes the
inventory, `ca.pem` and `lab.json`, and answers JSON requests on `DIR/control.sock`
until SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from . import layout, offload
from .accounts import LAB_ADMIN_USER, LAB_DOMAIN_NETBIOS
from .addresses import claim_addresses, host_name, release_addresses
from .ca import CertificateAuthority
from .enrolment import autoenrol_renew
from .enterprise_ca import DEFAULT_TEMPLATES, EnterpriseCa
from .errors import LabError
from .host import DEFAULT_WINDOWS_VERSION, OS_VERSIONS, WINRM_PORT, Host, HostIdentity, HostLookup
from .nearmiss import plant
from .primitives import PRIMITIVES
from .renewals import issue_pfx, winacme_renew
from .scenarios import SCENARIOS, profile_for, provision, windows_version_for
from .shell import CommandShell, split_call_overhead
from .sshd import SSH_PORT, SshKeys, SshListener, openssh_rule, start_ssh_server, stop_ssh_servers
from .timefmt import FleetClock, HostClock, iso_utc_ms
from .wsman import AcceptFilter, WsmanCredentials, WsmanServer, start_wsman_listener

LAB_DOMAIN = "xulab.test"
BIND_ATTEMPTS = 5
# How long a reset or `down` waits for the commands it cancelled to unwind.
STOP_COMMANDS_TIMEOUT_S = 10.0
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FleetOptions:
    directory: Path
    hosts: int
    # ntlm: pywinrm encrypts every message (MS-WSMV), so a PFX is protected on the wire; basic sends it in clear text.
    auth: str = "ntlm"
    restart_delay: float = 1.0
    expiring_in: float = 365.0
    scenario: str = "healthy"
    base_address: str | None = None
    # Seconds every remote call costs before its script runs, as on Windows (`up --call-overhead`).
    call_overhead: float = 0.0
    # None: 2022, or in the mixed scenario 2022, 2019 and 2016 in turn (`up --windows-version`).
    windows_version: str | None = None
    # The AD CS templates every host may enrol, and those needing a CA manager's approval: `NAME` or `NAME:DAYS`.
    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    pending_templates: tuple[str, ...] = ()
    # Hosts whose clock is off (`up --clock-offset`): (host name, or None for every host, seconds ahead; negative: behind).
    clock_offsets: tuple[tuple[str | None, float], ...] = ()
    # How the inventory reaches the hosts: winrm, or ssh (each host also gets an SSH endpoint, Win32-OpenSSH with
    # powershell.exe as its default shell; WinRM keeps listening, as on a Windows server).
    connection: str = "winrm"

    def clock_offset(self, host: str) -> float:
        offset = 0.0
        for name, seconds in self.clock_offsets:
            if name is None or name == host:
                offset = seconds
        return offset

    def check(self) -> None:
        """LabError naming what `up` (or a reset to this shape) cannot build."""
        if self.hosts < 1:
            raise LabError("--hosts must be at least 1")
        if self.call_overhead < 0:
            raise LabError("--call-overhead must be at least 0")
        for name, value, allowed in (
            ("auth", self.auth, AUTHS), ("connection", self.connection, CONNECTIONS), ("scenario", self.scenario, SCENARIOS),
            ("windows-version", self.windows_version or DEFAULT_WINDOWS_VERSION, tuple(OS_VERSIONS)),
        ):
            if value not in allowed:
                raise LabError(f"--{name} is one of {', '.join(allowed)}, not {value!r}")
        EnterpriseCa.from_specs(self.templates, self.pending_templates)

    def shape(self) -> dict[str, Any]:
        """Everything but the directory, as JSON: what a reset to this shape sends (`FleetOptions.of_shape`)."""
        return {name: value for name, value in asdict(self).items() if name != "directory"}

    @classmethod
    def of_shape(cls, directory: Path, shape: object) -> FleetOptions:
        if not isinstance(shape, dict):
            raise LabError("a shape is a JSON object of the lab's options")
        names = {field.name for field in fields(cls)} - {"directory"}
        given = {name: value for name, value in shape.items() if name != "directory"}
        if set(given) - names:
            raise LabError(f"unknown options in the shape: {sorted(set(given) - names)}")
        try:
            for name in ("templates", "pending_templates"):
                if name in given:
                    given[name] = tuple(str(item) for item in given[name])
            if "clock_offsets" in given:
                given["clock_offsets"] = tuple((None if host is None else str(host), float(seconds)) for host, seconds in given["clock_offsets"])
            options = cls(directory=directory, **given)
        except (TypeError, ValueError) as exc:
            raise LabError(f"a bad shape: {exc}") from exc
        options.check()
        return options


AUTHS = ("ntlm", "basic")
CONNECTIONS = ("winrm", "ssh")


class Fleet:
    """All hosts of one lab and the servers they listen with."""

    def __init__(self, options: FleetOptions) -> None:
        self.options = options
        self.directory = options.directory
        self.password = "Xu-" + secrets.token_urlsafe(18)
        self.credentials = WsmanCredentials(LAB_ADMIN_USER, self.password, LAB_DOMAIN_NETBIOS)
        self.hosts: dict[str, Host] = {}
        self.profiles: dict[str, str] = {}
        self.ready = False
        self._by_name: dict[str, Host] = {}
        self._servers: list[WsmanServer] = []
        self._shells: list[CommandShell] = []
        self._addresses: list[str] = []
        self._ssh_servers: list[SshListener] = []
        self.ssh_keys = SshKeys() if options.connection == "ssh" else None
        self._ca: CertificateAuthority | None = None
        self.enterprise_ca = EnterpriseCa.from_specs(options.templates, options.pending_templates)
        self.clock = FleetClock()

    # -- building ------------------------------------------------------------------

    async def start(self) -> None:
        began = time.perf_counter()
        loop = asyncio.get_running_loop()
        self._ca = await loop.run_in_executor(None, CertificateAuthority.create)
        await self._bind_new_addresses()
        await self._provision()
        self.ready = True
        log.info("%d hosts ready in %.2fs", len(self.hosts), time.perf_counter() - began)

    async def _bind_new_addresses(self) -> None:
        """Claim addresses for the hosts (a free block, or from `base_address`) and bind them."""
        skipped: set[int] = set()
        for attempt in range(1, BIND_ATTEMPTS + 1):
            addresses = claim_addresses(self.directory, self.options.hosts, self.options.base_address, skipped)
            try:
                await self._bind_winrm(addresses)
                break
            except OSError as exc:
                log.warning("attempt %d: cannot bind %s..%s (%s)", attempt, addresses[0], addresses[-1], exc)
                await self.stop()
                release_addresses(self.directory)
                if self.options.base_address is not None or attempt == BIND_ATTEMPTS:
                    raise LabError(f"cannot bind the lab's addresses from {addresses[0]}: {exc}") from exc
                skipped.add(int(addresses[0].split(".")[2]))
        self._addresses = addresses

    async def reset(self, options: FleetOptions | None = None) -> dict[str, Any]:
        """Every host as `up` hands it out, on the same addresses, with the same CA, password and inventory.

        As if each machine were reinstalled and the fleet's clock put back: every connection, shell and running
        command ends, every pending start, timer and scheduled task is forgotten, and the hosts are built and
        provisioned again from nothing (files, stores, firewall, service, faults, event log, transcript).
        With ``options`` (the same directory) the lab becomes what `up` with those options hands out instead:
        another number of hosts (on addresses claimed anew when it changes), auth, connection (new SSH keys),
        scenario, restart delay, expiry, Windows version, templates, clock offsets; the CA and password stay.
        """
        began = time.perf_counter()
        if options is not None:
            if options.directory != self.directory:
                raise LabError(f"a reset keeps the lab's directory {self.directory}, not {options.directory}")
            options.check()
        self.ready = False
        await self.stop()
        self.clock = FleetClock()
        if options is not None:
            self._take_shape(options)
        self.enterprise_ca = EnterpriseCa.from_specs(self.options.templates, self.options.pending_templates)
        self.profiles.clear()
        if options is None or len(self._addresses) == self.options.hosts:
            await self._bind_winrm(self._addresses)
        else:
            release_addresses(self.directory)
            await self._bind_new_addresses()
        await self._provision()
        self.ready = True
        elapsed = time.perf_counter() - began
        log.info("%d hosts reset in %.2fs", len(self.hosts), elapsed)
        return {"hosts": len(self.hosts), "reset_s": round(elapsed, 3)}

    def _take_shape(self, options: FleetOptions) -> None:
        """The options `up` would have been given; what `up` derives from them anew (addresses: see `reset`)."""
        moved = options.base_address != self.options.base_address
        self.options = options
        if moved:
            self._addresses = []
        # Keys as `up` makes them: new ones for each lab (SshKeys keeps a host key per address).
        self.ssh_keys = SshKeys() if options.connection == "ssh" else None
        if self.ssh_keys is None:
            shutil.rmtree(layout.ssh_dir(self.directory), ignore_errors=True)

    async def _provision(self) -> None:
        for index, host in enumerate(self.hosts.values(), start=1):
            profile = profile_for(self.options.scenario, index)
            self.profiles[host.name] = profile
            await provision(host, profile, self.options.expiring_in)
        self._write_files()

    async def _bind_winrm(self, addresses: list[str]) -> None:
        assert self._ca is not None
        hosts_dir = layout.hosts_dir(self.directory)
        shutil.rmtree(hosts_dir, ignore_errors=True)
        shell_create_delay, process_start_delay = split_call_overhead(self.options.call_overhead)
        for index, address in enumerate(addresses, start=1):
            identity = HostIdentity(index, host_name(index), address, LAB_DOMAIN)
            version = self.options.windows_version or windows_version_for(self.options.scenario, index)
            host = build_host(
                identity, hosts_dir / identity.name, self._ca, self.options.restart_delay, self.lookup,
                windows_version=version, enterprise_ca=self.enterprise_ca,
                clock=HostClock(self.clock, self.options.clock_offset(identity.name)),
            )
            self.hosts[host.name] = host
            for key in (host.name, host.fqdn, host.address):
                self._by_name[key.casefold()] = host
            # One shell per host, whichever endpoint a command comes through.
            shell = CommandShell(host, process_start_delay=process_start_delay)
            self._shells.append(shell)
            self._servers.append(
                await start_wsman_listener(
                    address,
                    WINRM_PORT,
                    auth=self.options.auth,
                    credentials=self.credentials,
                    run_command=shell.run_command,
                    accept_filter=_winrm_filter(host),
                    shell_create_delay=shell_create_delay,
                )
            )
            if self.ssh_keys is not None:
                host.firewall.add_installed_rule(openssh_rule(SSH_PORT))
                self._ssh_servers.append(
                    await start_ssh_server(host, shell, port=SSH_PORT, credentials=self.credentials, keys=self.ssh_keys)
                )

    def lookup(self, name: str) -> Host | None:
        return self._by_name.get(name.strip().casefold())

    async def stop(self) -> None:
        """Close every endpoint with its connections, end the commands running, and shut the hosts down."""
        for server in self._servers:
            server.server.close()
        await stop_ssh_servers(self._ssh_servers)
        self._ssh_servers.clear()
        running = [task for shell in self._shells for task in shell.end_running()]
        self._shells.clear()
        await asyncio.gather(*(server.close() for server in self._servers))
        self._servers.clear()
        if running:
            await asyncio.wait(running, timeout=STOP_COMMANDS_TIMEOUT_S)
        for host in self.hosts.values():
            host.shut_down()
        self.hosts.clear()
        self._by_name.clear()

    # -- files for the controller -------------------------------------------------

    def _write_files(self) -> None:
        assert self._ca is not None
        layout.ca_pem(self.directory).write_bytes(self._ca.pem())
        if self.ssh_keys is not None:
            self.ssh_keys.write(layout.ssh_dir(self.directory), SSH_PORT)
        _write_private(layout.inventory(self.directory), yaml.safe_dump(self.inventory(), sort_keys=False))
        _write_private(layout.lab_json(self.directory), json.dumps(self.info(), indent=2) + "\n")

    def account_for_inventory(self) -> str:
        return f"{LAB_DOMAIN_NETBIOS}\\{LAB_ADMIN_USER}" if self.options.auth == "ntlm" else LAB_ADMIN_USER

    def connection_vars(self) -> dict[str, Any]:
        """How Ansible reaches the hosts: WinRM, or SSH to Win32-OpenSSH with PowerShell as the shell."""
        if self.options.connection == "ssh":
            ssh_dir = layout.ssh_dir(self.directory)
            return {
                "ansible_connection": "ssh",
                "ansible_shell_type": "powershell",
                "ansible_port": SSH_PORT,
                "ansible_user": LAB_ADMIN_USER,
                "ansible_ssh_private_key_file": str(ssh_dir / "id_ed25519"),
                # Every host key is known: nothing is accepted on first use.
                "ansible_ssh_common_args": f"-o UserKnownHostsFile={ssh_dir / 'known_hosts'} -o StrictHostKeyChecking=yes",
                "xulab_dir": str(self.directory),
            }
        return {
            "ansible_connection": "winrm",
            "ansible_port": WINRM_PORT,
            "ansible_winrm_scheme": "http",
            "ansible_winrm_transport": self.options.auth,
            # pywinrm's default, said aloud: over HTTP, NTLM encrypts every message.
            **({"ansible_winrm_message_encryption": "auto"} if self.options.auth == "ntlm" else {}),
            "ansible_user": self.account_for_inventory(),
            "ansible_password": self.password,
            "ansible_winrm_server_cert_validation": "ignore",
            "xulab_dir": str(self.directory),
        }

    def inventory(self) -> dict[str, Any]:
        return {
            "all": {
                "children": {
                    "xu_servers": {
                        "hosts": {
                            host.name: {"ansible_host": host.address, "xu_fqdn": host.fqdn} for host in self.hosts.values()
                        },
                        "vars": self.connection_vars(),
                    }
                }
            }
        }

    def info(self) -> dict[str, Any]:
        return {
            "dir": str(self.directory),
            "pid": os.getpid(),
            "auth": self.options.auth,
            "scenario": self.options.scenario,
            "restart_delay": self.options.restart_delay,
            "expiring_in": self.options.expiring_in,
            "call_overhead": self.options.call_overhead,
            "clock_offsets": {host.name: host.clock.offset_s for host in self.hosts.values() if host.clock.offset_s},
            "domain": LAB_DOMAIN,
            "ca": self.enterprise_ca.describe(),
            "winrm_port": WINRM_PORT,
            "connection": self.options.connection,
            "ssh_port": SSH_PORT if self.ssh_keys is not None else None,
            "user": self.account_for_inventory(),
            "password": self.password,
            "inventory": str(layout.inventory(self.directory)),
            "ca_pem": str(layout.ca_pem(self.directory)),
            "control_socket": str(layout.control_socket(self.directory)),
            "hosts": [
                {
                    "name": host.name,
                    "address": host.address,
                    "fqdn": host.fqdn,
                    "profile": self.profiles.get(host.name),
                    "windows_version": host.windows_version,
                    "dir": str(host.directory),
                }
                for host in self.hosts.values()
            ],
        }

    # -- control requests ------------------------------------------------------------

    def host(self, name: object) -> Host:
        host = self.hosts.get(str(name))
        if host is None:
            raise LabError(f"no host {name!r} in this lab")
        return host

    async def handle(self, request: dict[str, Any]) -> Any:
        op = request.get("op")
        if op == "ping":
            return {"ready": self.ready, "hosts": len(self.hosts), "pid": os.getpid()}
        if not self.ready:
            raise LabError("the lab is not ready: it is starting or resetting")
        if op in ("hosts", "clock", "reset"):
            return await self._fleet_wide(op, request)
        if op == "state":
            return self.host(request.get("host")).state()
        if op == "fault":
            host = self.host(request.get("host"))
            settings = request.get("set") or {}
            if not isinstance(settings, dict) or not settings:
                raise LabError("fault needs at least one KEY=VALUE")
            for key, value in settings.items():
                host.faults.set(str(key), str(value))
            return {"faults": host.faults.pending(), "restart_delay": host.service.restart_delay}
        if op in ("winacme", "autoenroll", "plant"):
            return self._certificates_arrive(op, request)
        if op == "issue":
            host = self.host(request.get("host"))
            san = request.get("san")
            return issue_pfx(
                host,
                str(request.get("password") or ""),
                expired=bool(request.get("expired")),
                not_yet_valid=bool(request.get("not_yet_valid")),
                dns_names=[str(name) for name in san] if san else None,
                server_auth=not request.get("no_server_auth"),
                same_key_as=str(request["same_key_as"]) if request.get("same_key_as") else None,
                intermediate=bool(request.get("intermediate")),
                aes=bool(request.get("aes")),
                days_left=float(request["days_left"]) if request.get("days_left") is not None else 365,
                expires_with=str(request["expires_with"]) if request.get("expires_with") else None,
            )
        raise LabError(f"unknown control request {op!r}")

    async def _fleet_wide(self, op: str, request: dict[str, Any]) -> Any:
        if op == "reset":
            shape = request.get("shape")
            return await self.reset(None if shape is None else FleetOptions.of_shape(self.directory, shape))
        return self.info()["hosts"] if op == "hosts" else self._clock(request)

    def _clock(self, request: dict[str, Any]) -> dict[str, Any]:
        """Set a host's clock offset (`offset` with `host`) and advance every host's clock (`advance`); the clocks after."""
        try:
            if request.get("offset") is not None:
                self.host(request.get("host")).clock.set_offset(float(request["offset"]))
            if request.get("advance") is not None:
                self.clock.advance(float(request["advance"]))
        except (TypeError, ValueError) as exc:
            raise LabError(f"clock: {exc}") from exc
        hosts = [self.host(request["host"])] if request.get("host") is not None else list(self.hosts.values())
        return {
            "advanced_s": self.clock.advanced_s,
            "hosts": {host.name: {"now": iso_utc_ms(host.clock.now()), "offset_s": host.clock.offset_s} for host in hosts},
        }

    def _certificates_arrive(self, op: str, request: dict[str, Any]) -> dict[str, object]:
        """Certificates that come into a host's store without the collection: win-acme, auto-enrolment, an administrator."""
        host = self.host(request.get("host"))
        if op == "winacme":
            return winacme_renew(host)
        if op == "autoenroll":
            return autoenrol_renew(host)
        return plant(host, str(request.get("kind")))

    async def serve_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One JSON request a line, one JSON answer a line. Requests are never logged (they may hold a password)."""
        try:
            while line := await reader.readline():
                try:
                    request = json.loads(line)
                    if not isinstance(request, dict):
                        raise LabError("a request is a JSON object")
                    answer = {"ok": True, "result": await self.handle(request)}
                except LabError as exc:
                    answer = {"ok": False, "error": str(exc)}
                except Exception as exc:
                    log.exception("control request failed")
                    answer = {"ok": False, "error": f"lab internal error: {type(exc).__name__}: {exc}"}
                writer.write(json.dumps(answer, default=str).encode("utf-8") + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def build_host(
    identity: HostIdentity,
    directory: Path,
    ca: CertificateAuthority,
    restart_delay: float,
    lookup: HostLookup | None = None,
    *,
    windows_version: str = DEFAULT_WINDOWS_VERSION,
    enterprise_ca: EnterpriseCa | None = None,
    clock: HostClock | None = None,
) -> Host:
    """A host with an empty C: drive in `directory`; `scenarios.provision` installs XU on it."""
    (directory / "fs" / "C").mkdir(parents=True, exist_ok=True)
    return Host(
        identity, directory, ca, restart_delay=restart_delay, known_ops=list(PRIMITIVES), lookup=lookup,
        windows_version=windows_version, enterprise_ca=enterprise_ca, clock=clock,
    )


def _winrm_filter(host: Host) -> AcceptFilter:
    """The host's firewall, applied to connections to its WinRM port."""

    def admits(peer: tuple[str, int]) -> bool:
        return host.admits(peer[0], WINRM_PORT)

    return admits


def _write_private(path: Path, text: str) -> None:
    """Files that carry the lab's WinRM password: owner-only."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)


async def serve(options: FleetOptions) -> None:
    """Run the lab until SIGTERM or SIGINT."""
    directory = options.directory
    socket_path = layout.control_socket(directory)
    if len(str(socket_path)) > layout.MAX_SOCKET_PATH:
        raise LabError(f"the lab directory's path is too long for a unix socket: {socket_path}")
    socket_path.unlink(missing_ok=True)
    fleet = Fleet(options)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    control = await asyncio.start_unix_server(fleet.serve_control, str(socket_path))
    os.chmod(socket_path, 0o600)
    offload.start()
    try:
        await fleet.start()
        await stopping.wait()
        log.info("stopping")
    finally:
        control.close()
        await fleet.stop()
        offload.stop()
        release_addresses(directory)
        socket_path.unlink(missing_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if layout.pid_file(directory).read_text().strip() == str(os.getpid()):
                layout.pid_file(directory).unlink()
