"""Loopback addresses for the hosts of a lab, and claims on them so parallel labs never collide.

Host NN of a lab whose first address is 127.0.1.1 lives on 127.0.1.NN; after .254 the
next third octet begins at .1. A lab started without an explicit first address takes the
lowest 127.0.B.1 whose range no live lab claims. Claims live in a small registry under
the temp folder, guarded by an exclusive lock, and die with the process that made them.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import LabError
from .processes import process_alive

DEFAULT_FIRST = ipaddress.IPv4Address("127.0.1.1")
HOSTS_PER_OCTET = 254
# Third octets above this are left to in-process tests.
HIGHEST_AUTO_OCTET = 199


def host_name(index: int) -> str:
    return f"xu{index:02d}"


def host_addresses(first: ipaddress.IPv4Address, count: int) -> list[str]:
    """`count` consecutive addresses from `first`, skipping .0 and .255."""
    addresses: list[str] = []
    current = int(first)
    while len(addresses) < count:
        candidate = ipaddress.IPv4Address(current)
        if candidate.packed[3] not in (0, 255):
            addresses.append(str(candidate))
        current += 1
    if not ipaddress.IPv4Address(addresses[-1]).is_loopback:
        raise LabError(f"{count} hosts from {first} leave the loopback network")
    return addresses


@dataclass(frozen=True)
class Claim:
    first: int
    last: int
    directory: str
    pid: int

    def overlaps(self, first: int, last: int) -> bool:
        return not (last < self.first or first > self.last)


def _registry_dir() -> Path:
    path = Path(tempfile.gettempdir()) / f"xulab-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


@contextlib.contextmanager
def _locked_registry() -> Iterator[list[Claim]]:
    """The live claims, under an exclusive lock; changes to the list are written back."""
    folder = _registry_dir()
    with (folder / "lock").open("a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = folder / "claims.json"
        try:
            raw = json.loads(path.read_text()) if path.exists() else []
        except ValueError:
            raw = []
        claims = [Claim(**item) for item in raw if process_alive(int(item["pid"]))]
        yield claims
        staging = path.with_suffix(".new")
        staging.write_text(json.dumps([claim.__dict__ for claim in claims]))
        os.replace(staging, path)


def claim_addresses(directory: Path, count: int, first: str | None, skip: set[int] | None = None) -> list[str]:
    """Claim addresses for `count` hosts: from `first`, or the lowest free block (avoiding `skip` octets)."""
    with _locked_registry() as claims:
        if first is not None:
            addresses = host_addresses(ipaddress.IPv4Address(first), count)
            low, high = int(ipaddress.IPv4Address(addresses[0])), int(ipaddress.IPv4Address(addresses[-1]))
            for claim in claims:
                if claim.overlaps(low, high):
                    raise LabError(f"addresses {addresses[0]}..{addresses[-1]} are used by the lab in {claim.directory}")
        else:
            addresses = _free_block(claims, count, skip or set())
            low, high = int(ipaddress.IPv4Address(addresses[0])), int(ipaddress.IPv4Address(addresses[-1]))
        claims.append(Claim(low, high, str(directory), os.getpid()))
    return addresses


def _free_block(claims: list[Claim], count: int, skip: set[int]) -> list[str]:
    octets = (count + HOSTS_PER_OCTET - 1) // HOSTS_PER_OCTET
    for third in range(DEFAULT_FIRST.packed[2], HIGHEST_AUTO_OCTET - octets + 2):
        if skip & set(range(third, third + octets)):
            continue
        addresses = host_addresses(ipaddress.IPv4Address(f"127.0.{third}.1"), count)
        low, high = int(ipaddress.IPv4Address(addresses[0])), int(ipaddress.IPv4Address(addresses[-1]))
        if not any(claim.overlaps(low, high) for claim in claims):
            return addresses
    raise LabError("no free loopback block for the lab: too many labs running")


def release_addresses(directory: Path) -> None:
    with _locked_registry() as claims:
        claims[:] = [claim for claim in claims if not (claim.directory == str(directory) and claim.pid == os.getpid())]
