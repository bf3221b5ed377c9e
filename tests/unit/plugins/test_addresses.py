from __future__ import annotations

import ipaddress

import pytest

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.gate._addresses import (
    AddressError,
    address_sets,
    block_all_except,
    complement,
    format_interval,
    same_addresses,
)


def covered(specs: list[str], address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return any(first <= int(ip) <= last for first, last in address_sets(specs)[ip.version])


def test_nothing_allowed_blocks_any() -> None:
    assert block_all_except([]) == ["Any"]


def test_one_address_is_spared_exactly() -> None:
    blocked = block_all_except(["10.1.2.3"])
    # A range from 0.0.0.0 may not be accepted by Windows: its start is written as a network.
    assert blocked == ["0.0.0.0/5", "8.0.0.0-10.1.2.2", "10.1.2.4-255.255.255.255", "::/1", "8000::/1"]
    assert not covered(blocked, "10.1.2.3")
    for outside in ("10.1.2.2", "10.1.2.4", "0.0.0.0", "255.255.255.255", "192.168.1.1", "::1", "2001:db8::1"):
        assert covered(blocked, outside), outside


def test_networks_ranges_and_both_families() -> None:
    allow = ["192.0.2.0/24", "198.51.100.10-198.51.100.20", "2001:db8::/32", "203.0.113.5/255.255.255.255"]
    blocked = block_all_except(allow)
    for inside in ("192.0.2.0", "192.0.2.255", "198.51.100.10", "198.51.100.20", "2001:db8::5", "203.0.113.5"):
        assert not covered(blocked, inside), inside
    for outside in ("192.0.3.0", "198.51.100.9", "198.51.100.21", "2001:db9::", "::", "203.0.113.4"):
        assert covered(blocked, outside), outside
    # Together they are the whole address space, with no overlap.
    union = address_sets(blocked + allow)
    assert union == address_sets(["Any"])


def test_complement_edges() -> None:
    assert complement([(0, 2**32 - 1)], 4) == []
    assert complement([], 4) == [(0, 2**32 - 1)]
    assert complement([(0, 9), (5, 20)], 4) == [(21, 2**32 - 1)]


def test_format_interval() -> None:
    assert format_interval((167772160, 184549375), 4) == "10.0.0.0/8"
    assert format_interval((1, 1), 4) == "0.0.0.1"
    assert format_interval((1, 5), 4) == "0.0.0.1-0.0.0.5"


def test_windows_normalised_forms_compare_equal() -> None:
    # fw_get returns networks the way Windows shows them.
    assert same_addresses(["10.0.0.0/255.0.0.0", "Any"], ["Any"])
    assert same_addresses(["10.0.0.0/255.0.0.0"], ["10.0.0.0/8"])
    assert same_addresses(["10.0.0.0-10.0.0.255"], ["10.0.0.0/24"])
    assert not same_addresses(["10.0.0.0/24"], ["10.0.0.0/25"])
    assert not same_addresses(["LocalSubnet"], ["10.0.0.0/8"])


@pytest.mark.parametrize("bad", ["10.0.0", "10.0.0.5-10.0.0.1", "10.0.0.1-::1", "example.com", ""])
def test_bad_addresses(bad: str) -> None:
    with pytest.raises(AddressError):
        block_all_except([bad])


@pytest.mark.parametrize(("allow_from", "halves"), [(["10.1.2.3"], ["::/1", "8000::/1"]), (["2001:db8::1"], ["0.0.0.0/1", "128.0.0.0/1"])])
def test_a_family_allow_from_leaves_out_is_blocked_in_two_halves_never_as_slash_0(allow_from: list[str], halves: list[str]) -> None:
    # Windows Firewall rejects 0.0.0.0/0 and ::/0 ("The data is invalid"), after the group's old rules were removed.
    blocked = block_all_except(allow_from)
    assert not [a for a in blocked if a.endswith("/0")]
    assert all(half in blocked for half in halves)
    assert same_addresses(blocked, [*block_all_except(allow_from)])


@pytest.mark.parametrize("allowed", ["10.1.2.3", "0.0.0.1", "0.0.0.0", "127.255.255.255", "fd00::1", "::1", "2001:db8::/32", "8.0.0.0/5"])
def test_no_entry_is_a_range_from_zero_or_a_whole_family(allowed: str) -> None:
    blocked = block_all_except([allowed])
    assert not any(entry.split("-", maxsplit=1)[0] in ("0.0.0.0", "::") and "-" in entry for entry in blocked), blocked
    assert not any(entry.endswith("/0") for entry in blocked), blocked
    assert not covered(blocked, allowed.split("/", maxsplit=1)[0])
    for outside in ("0.0.0.0", "0.0.0.2", "9.9.9.9", "255.255.255.255", "::", "::2", "ffff::1"):
        if outside != allowed.split("/", maxsplit=1)[0] and not same_addresses([outside], [allowed]) and not covered([allowed], outside):
            assert covered(blocked, outside), (allowed, outside, blocked)
