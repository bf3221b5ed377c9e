"""One simulated Windows host: identity, files, certificate stores, firewall, XU, tasks, events.

Everything a primitive changes goes through here, so every change leaves its event.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from .accounts import SERVICE_LOGONS
from .ca import CertificateAuthority, LeafRequest, key_id, leaf_request
from .certreq_tasks import CertreqTasks
from .certstore import CertificateStore, KeyContainer, MachineStores, StoredCertificate
from .enterprise_ca import EnterpriseCa
from .errors import LabError
from .faults import Faults
from .firewall import Firewall, default_rules
from .folders import JOURNAL_DIR, FolderSecurity, precreate_journal_dir
from .tasks import TaskScheduler
from .timefmt import HostClock, iso_utc
from .winpath import HostFileSystem, join_windows_path
from .xuservice import DependentService, XuService
from .xusettings import CONFIG_DIR

# Environment.OSVersion.Version of each Windows Server the lab can be (`up --windows-version`).
OS_VERSIONS = {"2016": "10.0.14393", "2019": "10.0.17763", "2022": "10.0.20348"}
DEFAULT_WINDOWS_VERSION = "2022"
WINRM_PORT = 5985
PORT_CHECK_TIMEOUT_S = 0.5

# Finds another host of the fleet by name, FQDN or address.
HostLookup = Callable[[str], "Host | None"]


@dataclass(frozen=True)
class HostIdentity:
    index: int
    name: str
    address: str
    domain: str

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.domain}"


def _setting_count(key: str, value: str) -> int:
    if not value.isdigit():
        raise LabError(f"{key} takes a count >= 0, not {value!r}")
    return int(value)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Host:
    """A host of the fleet; its files live under `directory/fs`."""

    def __init__(
        self,
        identity: HostIdentity,
        directory: Path,
        ca: CertificateAuthority,
        *,
        restart_delay: float,
        known_ops: list[str],
        lookup: HostLookup | None = None,
        windows_version: str = DEFAULT_WINDOWS_VERSION,
        enterprise_ca: EnterpriseCa | None = None,
        clock: HostClock | None = None,
    ) -> None:
        if windows_version not in OS_VERSIONS:
            raise LabError(f"windows_version must be one of {', '.join(OS_VERSIONS)}, not {windows_version!r}")
        self.identity = identity
        # What the host reads as now (the agent's answers, its scheduled tasks, its event log's stamps).
        self.clock = clock or HostClock()
        self.windows_version = windows_version
        # `fault --set strict_host_name=true`: XU's TLS listeners answer only to the host's DNS name (SNI, Host header).
        self.strict_host_name = False
        self.directory = directory
        self.ca = ca
        self.fs = HostFileSystem(directory / "fs")
        self.stores = MachineStores()
        # A domain member trusts its enterprise CA.
        self.stores.open("Root").add(StoredCertificate(ca.certificate, None, "xulab Root CA"))
        # The domain's AD CS: its templates, and which of them this host may enrol (the fleet shares one).
        self.enterprise_ca = enterprise_ca or EnterpriseCa.from_specs()
        # Certificates `plant` put into My: [{"kind", "thumbprint"}].
        self.planted: list[dict[str, str]] = []
        self.service = XuService(self, restart_delay)
        self.firewall = Firewall(default_rules(self.service.settings.ports()))
        self.faults = Faults(self.emit, known_ops, self._set_restart_delay, self._apply_setting)
        self.tasks = TaskScheduler(self)
        # The one-shot SYSTEM tasks certreq runs in, and what killed calls left of them.
        self.certreq = CertreqTasks(self)
        self.keys_handed_out: set[str] = set()
        # Event log sources registered on the host (the Application log's, by name).
        self.event_sources: set[str] = set()
        # The display language certreq's labels are in (`fault --set certreq_language=de`).
        self.certreq_language = "en"
        # Owner and DACL of C:\ProgramData\xtractuniversal.tls (None: the agent made it, or it is not there).
        self.journal_dir_security: FolderSecurity | None = None
        self._lookup = lookup
        self._events_path = directory / "events.jsonl"
        self._transcript_path = directory / "transcript.log"

    # -- identity and logs -------------------------------------------------

    @property
    def name(self) -> str:
        return self.identity.name

    @property
    def address(self) -> str:
        return self.identity.address

    @property
    def fqdn(self) -> str:
        return self.identity.fqdn

    def emit(self, event_type: str, **fields: object) -> None:
        record = {"ts": round(self.clock.timestamp(), 6), "host": self.name, "type": event_type, **fields}
        with self._events_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, default=str) + "\n")

    def record_transcript(self, user: str, client: str, command_line: str, script: str | None) -> None:
        """What script block logging would keep: who, the command line, the decoded script."""
        lines = [
            "**********************",
            f"Start time: {iso_utc(self.clock.now())}",
            f"Username: {user}",
            f"Client: {client}",
            f"CommandLine: {command_line}",
        ]
        if script is not None:
            lines += ["ScriptBlock:", script]
        with self._transcript_path.open("a", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")

    def resolve(self, name: str) -> Host | None:
        """Name resolution as this host sees it: itself by every name, the rest through the fleet."""
        folded = name.strip().casefold()
        if folded in ("localhost", self.name.casefold(), self.fqdn.casefold(), self.address, "127.0.0.1", "::1"):
            return self
        return self._lookup(folded) if self._lookup else None

    # -- network -----------------------------------------------------------

    def admits(self, peer: str, port: int) -> bool:
        return self.firewall.admits(peer, port, self.address)

    def accepts_server_name(self, name: str | None) -> bool:
        """Whether XU answers a request for `name` (SNI or Host header): any name, or with strict_host_name its FQDN only."""
        if not self.strict_host_name:
            return True
        return name is not None and name.rstrip(".").casefold() == self.fqdn.casefold()

    def exposure(self) -> dict[str, str]:
        return {str(port): self.firewall.exposure(port, self.address) for port in self.service.settings.ports()}

    def emit_firewall(self, group: str, **fields: object) -> None:
        rules = [rule.name for rule in self.firewall.group_rules(group)]
        self.emit("firewall", group=group, rules=rules, exposure=self.exposure(), **fields)

    async def local_port_open(self, port: int, timeout_s: float = PORT_CHECK_TIMEOUT_S) -> bool:
        """A TCP connect from the host itself (never filtered)."""
        try:
            _reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.address, port, local_addr=(self.address, 0)), timeout_s
            )
        except (OSError, TimeoutError):
            return False
        writer.transport.abort()
        return True

    def _set_restart_delay(self, delay: float) -> None:
        self.service.restart_delay = delay

    @property
    def os_version(self) -> str:
        return OS_VERSIONS[self.windows_version]

    @property
    def reads_pbes2_pfx(self) -> bool:
        """Server 2016 cannot open a PFX encrypted with PBES2 (AES); 2019 and later can."""
        return self.windows_version != "2016"

    def _apply_setting(self, key: str, value: str) -> None:
        """A host setting from `fault --set` (tests/lab/README.md, Faults)."""
        {
            "service_account": self._set_service_account,
            "dependent_service": self._add_dependent_service,
            "dependent_stop_hangs": self._set_dependent_stop_hangs,
            "stop_hangs": self._set_stop_hangs,
            "firewall_profile_off": self._set_profile_off,
            "firewall_local_rules": self._set_local_rules,
            "firewall_service": self._set_firewall_service,
            "strict_host_name": self._set_strict_host_name,
            "journal_dir": self._precreate_journal_dir,
            "kill_certreq": self._set_kill_certreq,
            "certreq_leftover": self.certreq.plant,
            "enterprise_cas": self._set_enterprise_cas,
            "certreq_language": self._set_certreq_language,
        }[key](value)

    def _set_service_account(self, value: str) -> None:
        if value not in SERVICE_LOGONS:
            raise LabError(f"service_account must be one of {', '.join(SERVICE_LOGONS)}, not {value!r}")
        # As in services.msc: the new account is used from the next start on.
        self.service.logon = SERVICE_LOGONS[value]

    def _add_dependent_service(self, value: str) -> None:
        if not value or any(d.name.casefold() == value.casefold() for d in self.service.dependents):
            raise LabError(f"dependent_service needs a new service name, not {value!r}")
        self.service.dependents.append(DependentService(value, "Running" if self.service.state == "Running" else "Stopped"))

    def _set_dependent_stop_hangs(self, value: str) -> None:
        """NAME: that dependent service hangs in StopPending whenever it is stopped; none: no dependent hangs, a hanging stop ends."""
        names = [d.name for d in self.service.dependents if d.name.casefold() == value.casefold()]
        if not names and value != "none":
            raise LabError(f"dependent_stop_hangs takes the name of a dependent service (dependent_service) or none, not {value!r}")
        for dependent in self.service.dependents:
            dependent.hangs = dependent.name in names
            if not dependent.hangs and dependent.state == "StopPending":
                dependent.state = "Stopped"
                self.emit("service", name=dependent.name, state="Stopped", reason="the hanging stop ended", listeners=[])

    def _set_stop_hangs(self, value: str) -> None:
        self.service.stop_hangs = _setting_count("stop_hangs", value)
        if self.service.stop_hangs == 0 and self.service.state == "StopPending":
            self.service.state = "Stopped"
            self.emit("service", state="Stopped", reason="the hanging stop ended", listeners=[])

    def _set_profile_off(self, value: str) -> None:
        names = [name for name in self.firewall.profiles if name.casefold() == value.casefold()]
        if not names and value != "none":
            raise LabError(f"firewall_profile_off takes Domain, Private, Public or none, not {value!r}")
        for profile in self.firewall.profiles.values():
            profile.enabled = profile.name not in names

    def _set_local_rules(self, value: str) -> None:
        if value not in ("applied", "ignored"):
            raise LabError("firewall_local_rules takes applied or ignored")
        for profile in self.firewall.profiles.values():
            profile.local_rules_applied = value == "applied"

    def _set_firewall_service(self, value: str) -> None:
        if value not in ("running", "stopped"):
            raise LabError("firewall_service takes running or stopped")
        self.firewall.service_running = value == "running"

    def _set_certreq_language(self, value: str) -> None:
        if value not in ("en", "de"):
            raise LabError("certreq_language takes en or de")
        self.certreq_language = value

    def _set_enterprise_cas(self, value: str) -> None:
        """1 or 2 enterprise CAs in the forest (the lab's AD CS is shared by its hosts: the setting is the fleet's)."""
        self.enterprise_ca.set_service_count(_setting_count("enterprise_cas", value))

    def _set_kill_certreq(self, value: str) -> None:
        self.certreq.kills = _setting_count("kill_certreq", value)

    def _precreate_journal_dir(self, value: str) -> None:
        if self.fs.resolve(JOURNAL_DIR).exists():
            raise LabError(f"journal_dir: {JOURNAL_DIR} exists already; it can only be made before the collection's first run")
        precreate_journal_dir(self, value)

    def _set_strict_host_name(self, value: str) -> None:
        if value not in ("true", "false"):
            raise LabError("strict_host_name takes true or false")
        self.strict_host_name = value == "true"

    # -- certificates --------------------------------------------------------

    def pick_key(self) -> rsa.RSAPrivateKey:
        """A key this host has never been given (the pool's, or a fresh one)."""
        key = self.ca.key_pool.pick(self.keys_handed_out | self.stores.my.key_ids())
        self.keys_handed_out.add(key_id(key.public_key()))
        return key

    def mint(self, request: LeafRequest, key: rsa.RSAPrivateKey | None = None) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
        key = key or self.pick_key()
        return self.ca.issue(request, key.public_key()), key

    def default_request(self, days_left: float, lifetime_days: float = 365) -> LeafRequest:
        return leaf_request(self.fqdn, (self.fqdn, self.name), days_left=days_left, lifetime_days=lifetime_days)

    def add_certificate(
        self,
        certificate: x509.Certificate,
        key: KeyContainer | None,
        *,
        source: str,
        friendly_name: str = "",
        store: CertificateStore | None = None,
    ) -> StoredCertificate:
        """X509Store.Add into `store` (default My)."""
        store = store or self.stores.my
        entry = store.add(StoredCertificate(certificate, key, friendly_name))
        self.emit(
            "cert_add", thumbprint=entry.thumbprint, subject=entry.subject, source=source, archived=entry.archived, store=store.name
        )
        return entry

    def remove_certificate(self, thumbprint: str, store: CertificateStore | None = None) -> bool:
        store = store or self.stores.my
        removed = store.remove(thumbprint)
        if removed is not None:
            self.emit("cert_remove", thumbprint=removed.thumbprint, store=store.name)
        return removed is not None

    # -- scheduled tasks -------------------------------------------------------

    def emit_task(self, action: str, name: str, **fields: object) -> None:
        self.emit("task", action=action, name=name, **fields)

    # -- files -------------------------------------------------------------------

    def is_settings_file(self, path: Path) -> bool:
        return self.fs.is_under(path, CONFIG_DIR)

    def journal_path(self, name: str) -> str:
        return join_windows_path(JOURNAL_DIR, f"{name}.json")

    def journals(self) -> dict[str, str]:
        folder = self.fs.resolve(JOURNAL_DIR)
        if not folder.is_dir():
            return {}
        return {
            path.stem: path.read_text(encoding="utf-8", errors="replace")
            for path in sorted(folder.iterdir())
            if path.is_file() and path.suffix.casefold() == ".json"
        }

    def files(self) -> dict[str, str]:
        return {self.fs.to_windows(path): sha256_hex(path.read_bytes()) for path in self.fs.all_files()}

    def shut_down(self) -> None:
        """The lab is going away (or resets): close every listener, end a start in progress, forget pending tasks."""
        self.service.halt()
        for listener in self.service.listeners:
            listener.close()
        self.service.listeners = []
        self.tasks.cancel_all()

    # -- state -------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The whole simulated state as JSON (what `xulab state` prints)."""
        return {
            "name": self.name,
            "address": self.address,
            "fqdn": self.fqdn,
            "domain": self.identity.domain,
            "windows_version": self.windows_version,
            "os_version": self.os_version,
            "strict_host_name": self.strict_host_name,
            "service": self.service.state_json(),
            "certificates": [entry.state() for entry in self.stores.my.all_entries()],
            "intermediate_certificates": [entry.state() for entry in self.stores.open("CA").all_entries()],
            "request_certificates": [entry.state() for entry in self.stores.requests.all_entries()],
            "planted": list(self.planted),
            "firewall": {
                "rules": [rule.as_json(with_group=True) for rule in self.firewall.rules],
                "profiles": self.firewall.profiles_json(),
                "service_running": self.firewall.service_running,
                "exposure": self.exposure(),
            },
            "tasks": self.tasks.state(),
            "certreq_tasks": self.certreq.state(),
            "files": self.files(),
            "journals": self.journals(),
            "journal_dir_security": self.journal_dir_security.state() if self.journal_dir_security else None,
            "faults": self.faults.pending(),
        }
