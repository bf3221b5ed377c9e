"""One simulated Windows host: identity, files, certificate stores, firewall, XU, tasks, events.

Everything a primitive changes goes through here, so every change leaves its event.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from .ca import CertificateAuthority, LeafRequest, key_id, leaf_request
from .certstore import CertificateStore, KeyContainer, MachineStores, StoredCertificate
from .faults import Faults
from .firewall import Firewall, default_rules
from .tasks import TaskScheduler
from .timefmt import iso_utc, utc_now
from .winpath import HostFileSystem, join_windows_path
from .xuservice import XuService
from .xusettings import CONFIG_DIR

JOURNAL_DIR = "C:\\ProgramData\\xtractuniversal.tls"
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
    ) -> None:
        self.identity = identity
        self.directory = directory
        self.ca = ca
        self.fs = HostFileSystem(directory / "fs")
        self.stores = MachineStores()
        # A domain member trusts its enterprise CA.
        self.stores.open("Root").add(StoredCertificate(ca.certificate, None, "xulab Root CA"))
        self.service = XuService(self, restart_delay)
        self.firewall = Firewall(default_rules(self.service.settings.ports()))
        self.faults = Faults(self.emit, known_ops, self._set_restart_delay)
        self.tasks = TaskScheduler(self)
        self.keys_handed_out: set[str] = set()
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
        record = {"ts": round(time.time(), 6), "host": self.name, "type": event_type, **fields}
        with self._events_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, default=str) + "\n")

    def record_transcript(self, user: str, client: str, command_line: str, script: str | None) -> None:
        """What script block logging would keep: who, the command line, the decoded script."""
        lines = [
            "**********************",
            f"Start time: {iso_utc(utc_now())}",
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
        """The lab is going away: close every listener and forget pending tasks."""
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
            "service": self.service.state_json(),
            "certificates": [entry.state() for entry in self.stores.my.all_entries()],
            "intermediate_certificates": [entry.state() for entry in self.stores.open("CA").all_entries()],
            "firewall": {
                "rules": [rule.as_json(with_group=True) for rule in self.firewall.rules],
                "exposure": self.exposure(),
            },
            "tasks": self.tasks.state(),
            "files": self.files(),
            "journals": self.journals(),
            "faults": self.faults.pending(),
        }
