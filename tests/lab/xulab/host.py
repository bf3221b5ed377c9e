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
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from .ca import CertificateAuthority, LeafRequest, key_id, leaf_request
from .certstore import CertificateStore, KeyContainer, MachineStores, StoredCertificate, default_machine_key_acl
from .faults import Faults
from .firewall import Firewall, default_rules
from .timefmt import iso_utc, utc_now
from .winpath import HostFileSystem, join_windows_path
from .xuservice import CONFIG_DIR, StartFailure, XuService

JOURNAL_DIR = "C:\\ProgramData\\xtractuniversal.tls"
WINRM_PORT = 5985
PORT_CHECK_TIMEOUT_S = 0.5
CERTREQ_BACKDATE = timedelta(minutes=10)  # AD CS back-dates NotBefore for clock skew
# certreq's exit code is the HRESULT of its failure.
CERTREQ_NOT_FOUND = -2146885628
CERTREQ_RPC_UNAVAILABLE = -2147023174
CERTREQ_BAD_KEYSET = -2146893802
CERTREQ_EXPIRED = -2146762495

Resolver = Callable[[str], str | None]


@dataclass(frozen=True)
class HostIdentity:
    index: int
    name: str
    address: str
    domain: str

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.domain}"


@dataclass
class ScheduledTask:
    name: str
    run_at: datetime
    fw_group_to_remove: str
    description: str | None
    timer: asyncio.TimerHandle | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "state": "Ready",
            "next_run_utc": iso_utc(self.run_at),
            "description": self.description,
        }


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest().upper()


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
        resolver: Resolver | None = None,
    ) -> None:
        self.identity = identity
        self.directory = directory
        self.ca = ca
        self.fs = HostFileSystem(directory / "fs")
        self.stores = MachineStores()
        self.service = XuService(self, restart_delay)
        self.firewall = Firewall(default_rules(self.service.settings.ports()))
        self.faults = Faults(self.emit, known_ops, self._set_restart_delay)
        self.tasks: dict[str, ScheduledTask] = {}
        self.keys_handed_out: set[str] = set()
        self._resolver = resolver
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

    def resolve(self, name: str) -> str | None:
        """Name resolution as this host sees it: itself by every name, the rest through the fleet."""
        folded = name.strip().casefold()
        if folded in ("localhost", self.name.casefold(), self.fqdn.casefold(), self.address, "127.0.0.1", "::1"):
            return self.address
        return self._resolver(folded) if self._resolver else None

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
            _, writer = await asyncio.wait_for(
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
        self, certificate: x509.Certificate, key: KeyContainer | None, *, source: str, friendly_name: str = ""
    ) -> StoredCertificate:
        entry = StoredCertificate(certificate, key, friendly_name)
        if self.stores.my.add(entry):
            self.emit("cert_add", thumbprint=entry.thumbprint, subject=entry.subject, source=source)
        return entry

    def remove_certificate(self, thumbprint: str, store: CertificateStore | None = None) -> bool:
        store = store or self.stores.my
        removed = store.remove(thumbprint)
        if removed is not None:
            self.emit("cert_remove", thumbprint=removed.thumbprint, store=store.name)
        return removed is not None

    def certreq_renew(self, thumbprint: str) -> tuple[int, str]:
        """`certreq -enroll -machine -q -cert <thumbprint> Renew ReuseKeys` against the lab's AD CS.

        Returns certreq's exit code and output. On success the new certificate shares the old
        one's key container (so its ACL) and the old certificate is archived.
        """
        old = self.stores.my.get(thumbprint)
        if old is None:
            return CERTREQ_NOT_FOUND, "Certificate Request Processor: Cannot find object or property. 0x80092004 (-2146885628 CRYPT_E_NOT_FOUND)"
        if self.faults.take_certreq_failure():
            return CERTREQ_RPC_UNAVAILABLE, (
                "Certificate Request Processor: The RPC server is unavailable. 0x800706ba (WIN32: 1722 RPC_S_SERVER_UNAVAILABLE)"
            )
        if old.key is None:
            return CERTREQ_BAD_KEYSET, "Certificate Request Processor: Keyset does not exist 0x80090016 (-2146893802 NTE_BAD_KEYSET)"
        now = utc_now()
        if old.certificate.not_valid_after_utc < now:
            # A renewal request is signed with the old certificate; the CA rejects an expired signer.
            return CERTREQ_EXPIRED, (
                "Certificate Request Processor: A required certificate is not within its validity period when verifying "
                "against the current system clock or the timestamp in the signed file. 0x800b0101 (-2146762495 CERT_E_EXPIRED)"
            )
        request = LeafRequest(
            common_name=old.common_name,
            dns_names=tuple(old.dns_names),
            not_before=now - CERTREQ_BACKDATE,
            not_after=now + timedelta(days=365),
            server_auth=_has_server_auth(old.certificate),
        )
        certificate = self.ca.issue(request, old.key.private_key.public_key())
        renewed = self.add_certificate(certificate, old.key, source="certreq")
        old.archived = True
        self.emit("cert_archive", thumbprint=old.thumbprint, successor=renewed.thumbprint)
        output = "\r\n".join(
            [
                "Active Directory Enrollment Policy",
                "  {6A2B0CF5-1F3E-4C1B-9E1A-0D5C2A7B3E11}",
                "  ldap:",
                "",
                f"Request ID: {certificate.serial_number % 100000}",
                "Certificate retrieved(Issued) Issued",
                "",
                "Installed Certificate:",
                f"  Serial Number: {format(certificate.serial_number, 'x')}",
                f"  Subject: {renewed.subject}",
                f"  NotBefore: {request.not_before.strftime('%m/%d/%Y %I:%M %p')}",
                f"  NotAfter: {request.not_after.strftime('%m/%d/%Y %I:%M %p')}",
                f"  Thumbprint: {renewed.thumbprint.lower()}",
            ]
        )
        return 0, output

    def winacme_renew(self) -> dict[str, object]:
        """A win-acme renewal: a new key and certificate in My, the previous one deleted; XU untouched."""
        old = self._winacme_predecessor()
        certificate, key = self.mint(self.default_request(days_left=90, lifetime_days=90))
        container = KeyContainer(key, "CNG", default_machine_key_acl())
        new = self.add_certificate(certificate, container, source="winacme", friendly_name=f"{self.fqdn} @ win-acme")
        if old is not None:
            self.remove_certificate(old.thumbprint)
        return {"old_thumbprint": old.thumbprint if old else None, "new_thumbprint": new.thumbprint}

    def _winacme_predecessor(self) -> StoredCertificate | None:
        try:
            settings = self.service.settings.read()
        except StartFailure:
            settings = None
        if settings is not None and settings.web_certificate is not None:
            bound = self.stores.my.get(settings.web_certificate.thumbprint)
            if bound is not None:
                return bound
        mine = [e for e in self.stores.my.entries() if self.fqdn.casefold() in (n.casefold() for n in e.dns_names)]
        return max(mine, key=lambda e: e.certificate.not_valid_after_utc, default=None)

    # -- scheduled tasks -------------------------------------------------------

    def register_task(self, name: str, run_at: datetime, group: str, description: str | None) -> None:
        existing = self.tasks.pop(name.casefold(), None)
        if existing is not None and existing.timer is not None:
            existing.timer.cancel()
        task = ScheduledTask(name, run_at, group, description)
        delay = max(0.0, (run_at - utc_now()).total_seconds())
        task.timer = asyncio.get_running_loop().call_later(delay, self._run_task, task)
        self.tasks[name.casefold()] = task
        self.emit("task", action="registered", name=name, run_at_utc=iso_utc(run_at))

    def remove_task(self, name: str) -> bool:
        task = self.tasks.pop(name.casefold(), None)
        if task is None:
            return False
        if task.timer is not None:
            task.timer.cancel()
        self.emit("task", action="removed", name=task.name)
        return True

    def _run_task(self, task: ScheduledTask) -> None:
        """The task runs as SYSTEM: removes the group's firewall rules, then deletes itself."""
        if self.tasks.get(task.name.casefold()) is not task:
            return
        removed = self.firewall.remove_group(task.fw_group_to_remove)
        self.emit_firewall(task.fw_group_to_remove, removed=removed, added=0, by=f"task {task.name}")
        del self.tasks[task.name.casefold()]
        self.emit("task", action="ran", name=task.name, removed_rules=removed)

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

    # -- state -------------------------------------------------------------------------

    def state(self) -> dict[str, object]:
        return {
            "name": self.name,
            "address": self.address,
            "fqdn": self.fqdn,
            "domain": self.identity.domain,
            "service": self.service.state_json(),
            "certificates": [entry.state() for entry in self.stores.my.entries()],
            "firewall": {
                "rules": [rule.as_json(with_group=True) for rule in self.firewall.rules],
                "exposure": self.exposure(),
            },
            "tasks": [task.as_json() | {"fw_group_to_remove": task.fw_group_to_remove} for task in self.tasks.values()],
            "files": self.files(),
            "journals": self.journals(),
            "faults": self.faults.pending(),
        }


def _has_server_auth(certificate: x509.Certificate) -> bool:
    try:
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in list(usages)
