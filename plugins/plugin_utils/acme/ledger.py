# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a run published in DNS, kept in DNS itself, so that the next run removes what a killed one left.

A run removes its challenge records in its own ``finally``. A run killed outright (SIGKILL, a lost execution node)
cannot; the controller's disk is no help either (an AWX job's container is gone with it). So before a challenge
record is added, an entry naming it is added to the TXT record set ``_xu-acme-ledger.<zone>``; it is removed after
the challenge record. Each entry says until when its publisher may hold the record and which process on which
node published it. Every issuance first sweeps its zone: an entry past its time, or whose publisher was a process of
this node that no longer runs, has its record and itself removed. Private to this collection.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.acme.dns import DnsError, DnsProvider

LEDGER_LABEL = "_xu-acme-ledger"
_ENTRY = re.compile(r"^xu-acme1 rec=(?P<record>\S+) val=(?P<value>\S+) until=(?P<until>\d+) by=(?P<node>[^/\s]*)/(?P<pid>\d+)/(?P<start>\d*)$")


def ledger_name(zone: str) -> str:
    return f"{LEDGER_LABEL}.{zone}"


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (Linux): the state first; [] when there is none."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def process_start(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), which tells a reused PID apart; "" elsewhere."""
    fields = _stat(pid)
    return fields[19] if len(fields) > 19 else ""


@dataclass(frozen=True)
class Publisher:
    node: str
    pid: int
    start: str

    @classmethod
    def current(cls) -> Publisher:
        pid = os.getpid()
        return cls(socket.gethostname().split(".")[0].lower(), pid, process_start(pid))

    def is_gone(self, here: Publisher) -> bool:
        """True when this node can tell that the publishing process no longer runs."""
        if self.node != here.node:
            return False
        if not os.path.exists(f"/proc/{self.pid}") and os.path.isdir("/proc/self"):
            return True
        fields = _stat(self.pid)
        # A killed worker whose parent died too stays a zombie until an init reaps it, which a container's may never do.
        if fields[:1] in (["Z"], ["X"]):
            return True
        start = fields[19] if len(fields) > 19 else ""
        return bool(self.start) and start not in ("", self.start)


@dataclass(frozen=True)
class LedgerEntry:
    record: str
    value: str
    until: int
    publisher: Publisher

    def text(self) -> str:
        by = self.publisher
        return f"xu-acme1 rec={self.record} val={self.value} until={self.until} by={by.node}/{by.pid}/{by.start}"

    @classmethod
    def parse(cls, text: str) -> LedgerEntry | None:
        match = _ENTRY.match(text)
        if not match:
            return None
        publisher = Publisher(match.group("node"), int(match.group("pid")), match.group("start"))
        return cls(match.group("record"), match.group("value"), int(match.group("until")), publisher)


class Ledger:
    """The published challenge records of one zone."""

    def __init__(self, provider: DnsProvider, zone: str, *, clock: Callable[[], float] = time.time, publisher: Publisher | None = None) -> None:
        self.provider = provider
        self.zone = zone
        self.name = ledger_name(zone)
        self.clock = clock
        self.publisher = publisher or Publisher.current()

    def entries(self) -> list[LedgerEntry]:
        parsed = (LedgerEntry.parse(text) for text in self.provider.txt_values(self.zone, self.name))
        return [entry for entry in parsed if entry is not None]

    def publish(self, record: str, value: str, hold_seconds: float, ttl: int) -> LedgerEntry:
        """Note the record, then add it: a kill between the two leaves an entry for nothing, which a sweep removes."""
        entry = LedgerEntry(record, value, int(self.clock() + hold_seconds) + 1, self.publisher)
        self.provider.add_txt(self.zone, self.name, entry.text(), ttl)
        self.provider.add_txt(self.zone, record, value, ttl)
        return entry

    def withdraw(self, entry: LedgerEntry) -> None:
        """Remove the record, then its entry (so that a failure in between leaves the entry to find it again)."""
        self.provider.remove_txt(self.zone, entry.record, entry.value)
        self.provider.remove_txt(self.zone, self.name, entry.text())

    def sweep(self) -> tuple[list[LedgerEntry], list[str]]:
        """Remove what runs that are over left behind: the entries removed, and the errors met on the way."""
        removed: list[LedgerEntry] = []
        errors: list[str] = []
        now = self.clock()
        for entry in self.entries():
            if entry.until > now and not entry.publisher.is_gone(self.publisher):
                continue
            try:
                self.withdraw(entry)
            except DnsError as e:
                errors.append(e.msg)
            else:
                removed.append(entry)
        return removed, errors
