# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Address sets for Windows Firewall rules, as integer intervals per family. Private to this collection.

Windows Firewall evaluates block rules before allow rules, so "block everyone except
these" is a block rule whose remote addresses are the complement of the exceptions.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Interval = tuple[int, int]  # inclusive
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

FAMILIES = {4: (ipaddress.IPv4Address, (1 << 32) - 1), 6: (ipaddress.IPv6Address, (1 << 128) - 1)}


class AddressError(ValueError):
    """A remote address specification Windows Firewall would not accept."""


def parse_address(spec: str) -> tuple[int, Interval]:
    """One of: an address, a CIDR network, an address/netmask, or a ``first-last`` range."""
    text = spec.strip()
    try:
        if "-" in text:
            first_text, last_text = (part.strip() for part in text.split("-", 1))
            first, last = ipaddress.ip_address(first_text), ipaddress.ip_address(last_text)
            if first.version != last.version or int(first) > int(last):
                raise AddressError(f"{spec!r} is not a range from a lower to a higher address of one family")
            return first.version, (int(first), int(last))
        network = ipaddress.ip_network(text, strict=False)
    except ValueError as e:
        raise AddressError(f"{spec!r} is not an IP address, network or range: {e}") from e
    return network.version, (int(network.network_address), int(network.broadcast_address))


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for first, last in sorted(intervals):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def address_sets(specs: Iterable[str]) -> dict[int, list[Interval]]:
    """Merged intervals per family (4 and 6); ``Any`` covers both families whole."""
    by_family: dict[int, list[Interval]] = {4: [], 6: []}
    for spec in specs:
        if spec.strip().lower() in ("any", "*"):
            for family, (_address_type, top) in FAMILIES.items():
                by_family[family].append((0, top))
            continue
        family, interval = parse_address(spec)
        by_family[family].append(interval)
    return {family: merge(intervals) for family, intervals in by_family.items()}


def complement(intervals: list[Interval], family: int) -> list[Interval]:
    top = FAMILIES[family][1]
    result: list[Interval] = []
    next_free = 0
    for first, last in merge(intervals):
        if first > next_free:
            result.append((next_free, first - 1))
        next_free = last + 1
    if next_free <= top:
        result.append((next_free, top))
    return result


def format_interval(interval: Interval, family: int) -> str:
    """The shortest form Windows accepts: an address, a CIDR network, or a range."""
    make = FAMILIES[family][0]
    first, last = interval
    if first == last:
        return str(make(first))
    size = last - first + 1
    if size & (size - 1) == 0 and first % size == 0:
        prefix = FAMILIES[family][1].bit_length() - (size.bit_length() - 1)
        return f"{make(first)}/{prefix}"
    return f"{make(first)}-{make(last)}"


def without_whole_family(interval: Interval, family: int) -> list[Interval]:
    """The interval, as two halves when it is a whole family: Windows Firewall rejects 0.0.0.0/0 and ::/0."""
    top = FAMILIES[family][1]
    if interval != (0, top):
        return [interval]
    middle = (top + 1) // 2
    return [(0, middle - 1), (middle, top)]


def never_a_range_from_zero(interval: Interval, family: int) -> list[Interval]:
    """The interval, its start split off as a network when it is a range from 0.0.0.0 or ::.

    Whether Windows Firewall takes such a range is not known (docs/assumptions.md), so the
    largest network starting there comes first and a range from the next address follows.
    """
    first, last = interval
    size = 1 << ((last + 1).bit_length() - 1)  # the largest power of two not above the interval's size
    if first != 0 or size == last + 1:
        return [interval]
    return [(0, size - 1), (size, last)]


def block_all_except(allow_from: Iterable[str]) -> list[str]:
    """Remote addresses for a block rule that spares exactly ``allow_from``; never a /0 network, never a range from zero."""
    allowed = address_sets(allow_from)
    if not allowed[4] and not allowed[6]:
        return ["Any"]
    return [
        format_interval(piece, family)
        for family in (4, 6)
        for interval in complement(allowed[family], family)
        for half in without_whole_family(interval, family)
        for piece in never_a_range_from_zero(half, family)
    ]


def whole_families(allow_from: Iterable[str]) -> list[str]:
    """The families (``IPv4``, ``IPv6``) every address of which ``allow_from`` admits."""
    allowed = address_sets(allow_from)
    return [f"IPv{family}" for family in (4, 6) if allowed[family] == [(0, FAMILIES[family][1])]]


def same_addresses(left: Iterable[str], right: Iterable[str]) -> bool:
    """Whether two remote-address lists cover the same addresses, however they are written."""
    try:
        return address_sets(left) == address_sets(right)
    except AddressError:
        return False
