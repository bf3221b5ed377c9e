"""Windows Defender Firewall, inbound TCP only, with its rule semantics.

An enabled Block rule that matches a connection wins over every Allow rule; otherwise a
matching Allow rule admits it; otherwise the default inbound action (Block) applies.
Traffic from the host's own address is never filtered, as on Windows.

Remote address sets are kept as sorted integer intervals per family, so `exposure` can
be computed exactly over the whole IPv4 and IPv6 space.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from .errors import PrimitiveError, cim_windows_error

IPV4_MAX = 2**32 - 1
IPV6_MAX = 2**128 - 1
# Keywords New-NetFirewallRule accepts for RemoteAddress; the lab has no such networks, so they match nothing.
ADDRESS_KEYWORDS = {
    keyword.casefold(): keyword
    for keyword in (
        "LocalSubnet",
        "DNS",
        "DHCP",
        "WINS",
        "DefaultGateway",
        "Internet",
        "Intranet",
        "IntranetRemoteAccess",
        "PlayToDevice",
    )
}
PORT_KEYWORDS = {"rpc", "rpcepmap", "iphttpsin", "iphttpsout", "edgetraversal"}

INVALID_ADDRESS = (
    "The address is invalid. Addresses may be specified as IP addresses, ranges, or subnets. Also, the "
    "following address keywords are allowed in certain places: LocalSubnet, DNS, DHCP, WINS, DefaultGateway, "
    "Internet, Intranet, IntranetRemoteAccess, PlayToDevice. To specify addresses that are not local, use "
    "an address that is not local."
)
# What New-NetFirewallRule says about a /0 network (and, unverified, a range starting at 0.0.0.0 or ::).
INVALID_DATA = "The data is invalid."
# What the NetSecurity cmdlets say while the Windows Defender Firewall service (mpssvc) is stopped (unverified text).
SERVICE_NOT_ACTIVE = "The service has not been started."
# The Win32 codes behind those texts, which the cmdlets' error records carry as "Windows System Error <code>"
# (ERROR_INVALID_DATA, ERROR_INVALID_PARAMETER, ERROR_SERVICE_NOT_ACTIVE, ERROR_ALREADY_EXISTS). Unverified which code
# New-NetFirewallRule names for a rejected address or port; the lab says ERROR_INVALID_DATA and ERROR_INVALID_PARAMETER.
ERROR_INVALID_DATA = 13
ERROR_INVALID_PARAMETER = 87
ERROR_SERVICE_NOT_ACTIVE = 1062
ERROR_ALREADY_EXISTS = 183
NEW_RULE = "New-NetFirewallRule"
PROFILE_NAMES = ("Domain", "Private", "Public")
# A domain member's connections arrive on the Domain profile.
ACTIVE_PROFILE = "Domain"
INVALID_PORT = (
    "The port is invalid. When Protocol is TCP or UDP, individual ports or ranges are allowed. Also, the "
    "following port keywords are allowed in certain places: RPC, RPCEPMap, IPHTTPSIn, IPHTTPSOut, Any."
)

Interval = tuple[int, int]


def _rejected(message: str, code: int) -> PrimitiveError:
    return cim_windows_error(NEW_RULE, message, code, "InvalidArgument")


def _merge(intervals: list[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _subtract(intervals: list[Interval], removed: list[Interval]) -> list[Interval]:
    result: list[Interval] = []
    for start, end in intervals:
        pieces = [(start, end)]
        for cut_start, cut_end in removed:
            next_pieces: list[Interval] = []
            for piece_start, piece_end in pieces:
                if cut_end < piece_start or cut_start > piece_end:
                    next_pieces.append((piece_start, piece_end))
                    continue
                if piece_start < cut_start:
                    next_pieces.append((piece_start, cut_start - 1))
                if cut_end < piece_end:
                    next_pieces.append((cut_end + 1, piece_end))
            pieces = next_pieces
        result.extend(pieces)
    return _merge(result)


@dataclass(frozen=True)
class AddressSet:
    """A set of IPv4 and IPv6 addresses as merged inclusive intervals."""

    v4: tuple[Interval, ...] = ()
    v6: tuple[Interval, ...] = ()

    @classmethod
    def everything(cls) -> AddressSet:
        return cls(((0, IPV4_MAX),), ((0, IPV6_MAX),))

    @classmethod
    def single(cls, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> AddressSet:
        value = int(address)
        return cls(((value, value),), ()) if address.version == 4 else cls((), ((value, value),))

    def union(self, other: AddressSet) -> AddressSet:
        return AddressSet(tuple(_merge([*self.v4, *other.v4])), tuple(_merge([*self.v6, *other.v6])))

    def minus(self, other: AddressSet) -> AddressSet:
        return AddressSet(tuple(_subtract(list(self.v4), list(other.v4))), tuple(_subtract(list(self.v6), list(other.v6))))

    def is_empty(self) -> bool:
        return not self.v4 and not self.v6

    def contains(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        value = int(address)
        intervals = self.v4 if address.version == 4 else self.v6
        return any(start <= value <= end for start, end in intervals)


def parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text.strip().split("%", 1)[0])


def parse_remote_address(entry: object) -> AddressSet:
    """One RemoteAddress entry: Any, an address, a subnet (prefix or mask), a range or a keyword."""
    text = str(entry).strip()
    folded = text.casefold()
    if folded in ("any", "*"):
        return AddressSet.everything()
    if folded in ADDRESS_KEYWORDS:
        return AddressSet()
    try:
        if "-" in text:
            first_text, last_text = text.split("-", 1)
            first, last = parse_address(first_text), parse_address(last_text)
            if first.version != last.version or int(first) > int(last):
                raise ValueError(text)
            if int(first) == 0:
                # Whether Windows takes a range from 0.0.0.0 or :: is not known: the lab refuses it (stricter).
                raise _rejected(INVALID_DATA, ERROR_INVALID_DATA)
            interval = ((int(first), int(last)),)
            return AddressSet(interval, ()) if first.version == 4 else AddressSet((), interval)
        if "/" in text:
            network = ipaddress.ip_network(text, strict=False)
            if network.prefixlen == 0:
                raise _rejected(INVALID_DATA, ERROR_INVALID_DATA)
            interval = ((int(network.network_address), int(network.broadcast_address)),)
            return AddressSet(interval, ()) if network.version == 4 else AddressSet((), interval)
        return AddressSet.single(parse_address(text))
    except ValueError as exc:
        raise _rejected(INVALID_ADDRESS, ERROR_INVALID_PARAMETER) from exc


def normalise_remote_address(entry: str) -> str:
    """How Get-NetFirewallAddressFilter shows an address: IPv4 subnets with a mask, single hosts bare."""
    text = entry.strip()
    folded = text.casefold()
    keyword = {"any": "Any", "*": "Any"}.get(folded) or ADDRESS_KEYWORDS.get(folded)
    if keyword is not None:
        return keyword
    if "-" in text:
        first, last = (parse_address(part) for part in text.split("-", 1))
        return f"{first}-{last}"
    if "/" in text:
        network = ipaddress.ip_network(text, strict=False)
        if network.num_addresses == 1:
            return str(network.network_address)
        if network.version == 4:
            return f"{network.network_address}/{network.netmask}"
        return str(network)
    return str(parse_address(text))


def _check_port(entry: str) -> None:
    folded = entry.casefold()
    if folded == "any" or folded in PORT_KEYWORDS:
        return
    parts = entry.split("-", 1)
    if not all(part.strip().isdigit() and 0 <= int(part) <= 65535 for part in parts):
        raise _rejected(INVALID_PORT, ERROR_INVALID_PARAMETER)
    if len(parts) == 2 and int(parts[0]) > int(parts[1]):
        raise _rejected(INVALID_PORT, ERROR_INVALID_PARAMETER)


def port_matches(entries: list[str], port: int) -> bool:
    for entry in entries:
        folded = entry.casefold()
        if folded == "any":
            return True
        if folded in PORT_KEYWORDS:
            continue
        first, _dash, last = entry.partition("-")
        if int(first) <= port <= int(last or first):
            return True
    return False


def _as_list(value: object, default: list[str]) -> list[str]:
    if value is None:
        return list(default)
    if isinstance(value, (list, tuple)):
        return [str(item).strip() for item in value]
    return [part.strip() for part in str(value).split(",")]


def _as_enabled(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.casefold() in ("true", "false"):
        return value.casefold() == "true"
    raise PrimitiveError("InvalidArgument", f"enabled must be True or False, not {value!r}")


def _choice(value: object, choices: tuple[str, ...], argument: str) -> str:
    for choice in choices:
        if isinstance(value, str) and value.casefold() == choice.casefold():
            return choice
    raise PrimitiveError("InvalidArgument", f"{argument} must be one of {', '.join(choices)}, not {value!r}")


@dataclass
class FirewallRule:
    name: str
    display_name: str
    group: str
    direction: str = "Inbound"
    action: str = "Allow"
    enabled: bool = True
    protocol: str = "TCP"
    local_ports: list[str] = field(default_factory=lambda: ["Any"])
    remote_addresses: list[str] = field(default_factory=lambda: ["Any"])
    # Built-in rules carry an indirect string as Group and the readable name as DisplayGroup.
    display_group: str | None = None

    @classmethod
    def from_args(cls, group: str, args: object) -> FirewallRule:
        """A rule as New-NetFirewallRule would create it from the primitive's arguments."""
        if not isinstance(args, dict):
            raise PrimitiveError("InvalidArgument", "Each rule must be an object.")
        name, display_name = args.get("name"), args.get("display_name")
        if not isinstance(name, str) or not name.strip():
            raise PrimitiveError("InvalidArgument", "A firewall rule needs a name.")
        if not isinstance(display_name, str) or not display_name.strip():
            raise PrimitiveError("InvalidArgument", "A firewall rule needs a display_name.")
        rule = cls(
            name=name,
            display_name=display_name,
            group=group,
            direction=_choice(args.get("direction", "Inbound"), ("Inbound", "Outbound"), "direction"),
            action=_choice(args.get("action", "Allow"), ("Allow", "Block"), "action"),
            enabled=_as_enabled(args.get("enabled", True)),
            protocol=_choice(args.get("protocol", "TCP"), ("TCP", "UDP", "Any"), "protocol"),
            local_ports=_as_list(args.get("local_ports"), ["Any"]),
            remote_addresses=_as_list(args.get("remote_addresses"), ["Any"]),
        )
        for port in rule.local_ports:
            _check_port(port)
        if rule.protocol == "Any" and [port.casefold() for port in rule.local_ports] != ["any"]:
            raise _rejected(INVALID_PORT, ERROR_INVALID_PARAMETER)
        for address in rule.remote_addresses:
            parse_remote_address(address)
        rule.remote_addresses = [normalise_remote_address(address) for address in rule.remote_addresses]
        return rule

    def remote_set(self) -> AddressSet:
        combined = AddressSet()
        for entry in self.remote_addresses:
            combined = combined.union(parse_remote_address(entry))
        return combined

    def applies_to_tcp_port(self, port: int) -> bool:
        return (
            self.enabled
            and self.direction == "Inbound"
            and self.protocol in ("TCP", "Any")
            and port_matches(self.local_ports, port)
        )

    def as_json(self, with_group: bool = False) -> dict[str, object]:
        rule: dict[str, object] = {
            "name": self.name,
            "display_name": self.display_name,
            "direction": self.direction,
            "action": self.action,
            "enabled": self.enabled,
            "protocol": self.protocol,
            "local_ports": list(self.local_ports),
            "remote_addresses": list(self.remote_addresses),
        }
        if with_group:
            rule["group"] = self.group
            rule["display_group"] = self.display_group or self.group
        return rule


def default_rules(xu_ports: list[int]) -> list[FirewallRule]:
    """What an XU installation and an enabled WinRM listener leave on a server."""
    return [
        FirewallRule(
            name="XtractUniversal-In",
            display_name="Xtract Universal",
            group="Xtract Universal",
            local_ports=[str(port) for port in xu_ports],
        ),
        FirewallRule(
            name="WINRM-HTTP-In-TCP",
            display_name="Windows Remote Management (HTTP-In)",
            group="@FirewallAPI.dll,-30267",
            display_group="Windows Remote Management",
            local_ports=["5985"],
        ),
    ]


@dataclass
class FirewallProfile:
    """One profile as Get-NetFirewallProfile -PolicyStore ActiveStore shows it."""

    name: str
    enabled: bool = True
    # False when group policy sets AllowLocalFirewallRules to False: rules made on the host are ignored.
    local_rules_applied: bool = True


class Firewall:
    """The host's inbound rules; the default inbound action is Block.

    Connections arrive on the Domain profile. With it off nothing is filtered. With local rules
    ignored by policy only the policy's rules count; the lab's policy holds the same XU and WinRM
    allow rules an installation makes, so the host stays reachable while a local block rule has
    no effect.
    """

    def __init__(self, rules: list[FirewallRule]) -> None:
        self.rules = rules
        self.policy_rules = [FirewallRule(**{**rule.__dict__, "group": "Group Policy"}) for rule in rules]
        self.profiles = {name: FirewallProfile(name) for name in PROFILE_NAMES}
        self.service_running = True

    def add_installed_rule(self, rule: FirewallRule) -> None:
        """A rule another component's installation adds (OpenSSH's), to the host's rules and to the policy's copy."""
        self.rules.append(rule)
        self.policy_rules.append(FirewallRule(**{**rule.__dict__, "group": "Group Policy"}))

    def require_service(self, cmdlet: str) -> None:
        if not self.service_running:
            raise cim_windows_error(cmdlet, SERVICE_NOT_ACTIVE, ERROR_SERVICE_NOT_ACTIVE, "NotSpecified")

    @property
    def local_rules_applied(self) -> bool:
        return self.profiles[ACTIVE_PROFILE].local_rules_applied

    def group_rules(self, group: str) -> list[FirewallRule]:
        folded = group.casefold()
        return [rule for rule in self.rules if rule.group.casefold() == folded]

    def active_group_rules(self, group: str) -> list[FirewallRule]:
        """The group's rules in the active store: none while policy ignores local rules."""
        return self.group_rules(group) if self.local_rules_applied else []

    def remove_group(self, group: str) -> int:
        folded = group.casefold()
        kept = [rule for rule in self.rules if rule.group.casefold() != folded]
        removed = len(self.rules) - len(kept)
        self.rules = kept
        return removed

    def add(self, rule: FirewallRule) -> None:
        """Add a rule; like New-NetFirewallRule, a rule name may exist once."""
        if any(existing.name.casefold() == rule.name.casefold() for existing in self.rules):
            raise cim_windows_error(NEW_RULE, "Cannot create a file when that file already exists.", ERROR_ALREADY_EXISTS, "NotSpecified")
        self.rules.append(rule)

    def effective_rules(self) -> list[FirewallRule]:
        return self.rules if self.local_rules_applied else self.policy_rules

    def allowed_sources(self, port: int) -> AddressSet:
        if not self.profiles[ACTIVE_PROFILE].enabled:
            return AddressSet.everything()
        allowed, blocked = AddressSet(), AddressSet()
        for rule in self.effective_rules():
            if not rule.applies_to_tcp_port(port):
                continue
            if rule.action == "Block":
                blocked = blocked.union(rule.remote_set())
            else:
                allowed = allowed.union(rule.remote_set())
        return allowed.minus(blocked)

    def admits(self, peer: str, port: int, own_address: str) -> bool:
        try:
            address = parse_address(peer)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if address == parse_address(own_address):
            return True
        return self.allowed_sources(port).contains(address)

    def exposure(self, port: int, own_address: str) -> str:
        """open: every outside address may connect; restricted: some may; closed: none may."""
        outside = AddressSet.everything().minus(AddressSet.single(parse_address(own_address)))
        reachable = self.allowed_sources(port).minus(AddressSet.single(parse_address(own_address)))
        if reachable.is_empty():
            return "closed"
        if outside.minus(reachable).is_empty():
            return "open"
        return "restricted"

    def profiles_json(self) -> list[dict[str, object]]:
        return [
            {"name": profile.name, "enabled": profile.enabled, "local_rules_applied": profile.local_rules_applied}
            for profile in self.profiles.values()
        ]
