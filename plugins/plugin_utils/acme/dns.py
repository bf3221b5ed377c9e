# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""DNS-01 records on the controller: RFC 2136 updates with dnspython, the propagation wait, other providers.

A provider publishes and removes TXT records; ``Rfc2136Provider`` does it with TSIG-signed dynamic updates to the
zone's primary (BIND, PowerDNS, Knot). Any other provider is a Python class named by
``xu_renew_acme_dns_provider`` (``module.path:ClassName``) with the methods of ``DnsProvider``; it runs in the same
process as the issuance, so removing the records is part of the issuance's own ``finally``. Private to this
collection.
"""

from __future__ import annotations

import importlib
import socket
import time
from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

try:
    import dns.exception
    import dns.flags
    import dns.message
    import dns.name
    import dns.query
    import dns.rcode
    import dns.rdatatype
    import dns.resolver
    import dns.tsig
    import dns.update
except ImportError as e:  # reported by issue.missing_requirements before any of this runs
    DNSPYTHON_IMPORT_ERROR: ImportError | None = e
else:
    DNSPYTHON_IMPORT_ERROR = None

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.acme.settings import BUILTIN_DNS_PROVIDER, DnsSettings, Endpoint
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import XuError


class DnsError(XuError):
    """A DNS step that failed; the message says which server answered what (never a key)."""


@runtime_checkable
class DnsProvider(Protocol):
    """What issuance needs of a DNS provider. Names are absolute, lower case, without the trailing dot."""

    def zone_for(self, name: str) -> str:
        """The zone (its apex) that holds ``name``."""

    def add_txt(self, zone: str, name: str, value: str, ttl: int) -> None:
        """Add one TXT value at ``name``, beside any others there."""

    def remove_txt(self, zone: str, name: str, value: str) -> None:
        """Remove that one TXT value; no error when it is not there."""

    def txt_values(self, zone: str, name: str) -> tuple[str, ...]:
        """The TXT values at ``name`` as the provider holds them now."""

    def authoritative_servers(self, zone: str) -> tuple[Endpoint, ...]:
        """Every server that answers for the zone, where the record must be seen before the CA is asked to look."""


def _address(host: str) -> str:
    """An address dnspython can send to (it does not resolve names itself)."""
    try:
        return str(socket.getaddrinfo(host, None, proto=socket.IPPROTO_UDP)[0][4][0])
    except (OSError, IndexError):
        raise DnsError(f"cannot resolve the DNS server name {host}") from None


def query(endpoint: Endpoint, name: str, rdtype: str, timeout: float, *, tcp: bool = False) -> dns.message.Message:
    """One non-recursive query, as an authoritative server is asked; over TCP when told or when the answer was cut."""
    message = dns.message.make_query(name, rdtype)
    message.flags &= ~dns.flags.RD
    address = _address(endpoint.host)
    try:
        if not tcp:
            response = dns.query.udp(message, address, port=endpoint.port, timeout=timeout)
            if not response.flags & dns.flags.TC:
                return response
        return dns.query.tcp(message, address, port=endpoint.port, timeout=timeout)
    except (dns.exception.DNSException, OSError) as e:
        raise DnsError(f"the DNS server {endpoint} did not answer a query for {name} {rdtype}: {type(e).__name__}: {e}") from None


def txt_strings(response: dns.message.Message, name: str) -> tuple[str, ...]:
    wanted = dns.name.from_text(name)
    values: list[str] = []
    for rrset in response.answer:
        if rrset.name == wanted and rrset.rdtype == dns.rdatatype.TXT:
            values += [b"".join(rdata.strings).decode("utf-8", errors="replace") for rdata in rrset]
    return tuple(values)


def zone_of(endpoint: Endpoint, name: str, timeout: float) -> str:
    """The apex of the zone ``endpoint`` serves that holds ``name``: the owner of the SOA it answers with."""
    response = query(endpoint, name, "SOA", timeout)
    if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN) or not response.flags & dns.flags.AA:
        raise DnsError(f"the DNS server {endpoint} is not authoritative for {name} (it answered {dns.rcode.to_text(response.rcode())})")
    for section in (response.answer, response.authority):
        for rrset in section:
            if rrset.rdtype == dns.rdatatype.SOA:
                return rrset.name.to_text(omit_final_dot=True).lower()
    raise DnsError(f"the DNS server {endpoint} named no zone for {name}")


def discover_authoritative(endpoint: Endpoint | None, zone: str, port: int, timeout: float) -> tuple[Endpoint, ...]:
    """The addresses of the zone's NS records, asked of ``endpoint`` (else the system's resolver), on ``port``."""
    names: list[str] = []
    if endpoint is not None:
        response = query(endpoint, zone, "NS", timeout)
        names = [rdata.target.to_text(omit_final_dot=True) for rrset in response.answer if rrset.rdtype == dns.rdatatype.NS for rdata in rrset]
    else:
        try:
            names = [rdata.target.to_text(omit_final_dot=True) for rdata in dns.resolver.resolve(zone, "NS", lifetime=timeout)]
        except dns.exception.DNSException as e:
            raise DnsError(f"cannot find the name servers of {zone}: {e}") from None
    servers: list[Endpoint] = []
    for ns in names:
        addresses: list[str] = []
        if endpoint is not None:
            for rdtype in ("A", "AAAA"):
                answer = query(endpoint, ns, rdtype, timeout)
                addresses += [rdata.to_text() for rrset in answer.answer if rrset.rdtype == dns.rdatatype.from_text(rdtype) for rdata in rrset]
        if not addresses:
            try:
                addresses = sorted({str(info[4][0]) for info in socket.getaddrinfo(ns, None, proto=socket.IPPROTO_UDP)})
            except OSError:
                raise DnsError(f"cannot resolve {ns}, a name server of {zone}") from None
        servers += [Endpoint(address, port) for address in addresses]
    if not servers:
        raise DnsError(f"the zone {zone} has no NS records")
    return tuple(dict.fromkeys(servers))


def wait_until_served(
    servers: tuple[Endpoint, ...],
    name: str,
    value: str,
    *,
    timeout: float,
    query_timeout: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Wait until every server answers ``name`` with ``value``; the seconds waited. DnsError names the laggards."""
    started = clock()
    waiting = list(servers)
    interval = 0.05  # a secondary fed by NOTIFY usually has the record within milliseconds
    last: dict[Endpoint, str] = {}
    while True:
        for server in list(waiting):
            try:
                if value in txt_strings(query(server, name, "TXT", query_timeout), name):
                    waiting.remove(server)
                    continue
                last[server] = "not yet"
            except DnsError as e:
                last[server] = e.msg
        if not waiting:
            return clock() - started
        if clock() - started + interval > timeout:
            lagging = "; ".join(f"{server}: {last.get(server, 'no answer')}" for server in waiting)
            raise DnsError(f"the TXT record {name} was not served by every authoritative server within {timeout:g} s ({lagging})")
        sleep(interval)
        interval = min(interval * 2, 5.0)


class Rfc2136Provider:
    """TSIG-signed dynamic updates (RFC 2136, RFC 8945) sent over TCP to the zone's primary."""

    def __init__(self, settings: DnsSettings) -> None:
        if settings.server is None:
            raise DnsError("xu_renew_acme_dns_server is not set")
        self.server: Endpoint = settings.server
        self.settings = settings
        # dnspython names the algorithms as RFC 8945 does ("hmac-sha256"), which is how the variable takes them.
        self._key = dns.tsig.Key(settings.tsig_name, settings.tsig_secret.reveal(), dns.name.from_text(settings.tsig_algorithm))
        self._zones: dict[str, str] = {}

    def zone_for(self, name: str) -> str:
        if self.settings.zone:
            if name != self.settings.zone and not name.endswith("." + self.settings.zone):
                raise DnsError(f"{name} is not in the zone xu_renew_acme_dns_zone names ({self.settings.zone})")
            return self.settings.zone
        if name not in self._zones:
            self._zones[name] = zone_of(self.server, name, self.settings.timeout)
        return self._zones[name]

    @property
    def _key_words(self) -> str:
        # A key's name may be written absolute ("xu-acme."); a message goes on after it.
        return self.settings.tsig_name.rstrip(".")

    def _send(self, update: dns.update.UpdateMessage, what: str) -> None:
        try:
            response = dns.query.tcp(update, _address(self.server.host), port=self.server.port, timeout=self.settings.timeout)
        except dns.tsig.PeerBadKey:
            raise DnsError(f"the DNS server {self.server} does not know the TSIG key {self._key_words} (BADKEY) for {what}") from None
        except (dns.tsig.PeerBadSignature, dns.tsig.BadSignature):
            raise DnsError(
                f"the DNS server {self.server} rejected the signature of {what} (BADSIG): xu_renew_acme_tsig_secret or"
                f" xu_renew_acme_tsig_algorithm does not match the key {self._key_words}"
            ) from None
        except dns.tsig.PeerBadTime:
            raise DnsError(f"the DNS server {self.server} rejected the time of {what} (BADTIME): the controller's clock is off") from None
        except (dns.exception.DNSException, OSError) as e:
            raise DnsError(f"the DNS server {self.server} did not take {what}: {type(e).__name__}: {e}") from None
        rcode = response.rcode()
        if rcode != dns.rcode.NOERROR:
            hint = " (the update policy does not allow this key to change that name)" if rcode == dns.rcode.REFUSED else ""
            raise DnsError(f"the DNS server {self.server} refused {what}: {dns.rcode.to_text(rcode)}{hint}")

    def _update(self, zone: str) -> dns.update.UpdateMessage:
        return dns.update.UpdateMessage(zone, keyring=self._key)

    def add_txt(self, zone: str, name: str, value: str, ttl: int) -> None:
        update = self._update(zone)
        update.add(name + ".", ttl, "TXT", _quoted(value))
        self._send(update, f"the update adding a TXT record at {name}")

    def remove_txt(self, zone: str, name: str, value: str) -> None:
        update = self._update(zone)
        update.delete(name + ".", "TXT", _quoted(value))
        self._send(update, f"the update removing a TXT record at {name}")

    def txt_values(self, zone: str, name: str) -> tuple[str, ...]:
        del zone
        response = query(self.server, name + ".", "TXT", self.settings.timeout, tcp=True)
        return txt_strings(response, name + ".")

    def authoritative_servers(self, zone: str) -> tuple[Endpoint, ...]:
        if self.settings.nameservers:
            return self.settings.nameservers
        return discover_authoritative(self.server, zone, self.settings.port, self.settings.timeout)


def _quoted(value: str) -> str:
    """A TXT value in zone-file text, split into strings of at most 255 octets."""
    chunks = [value[i : i + 255] for i in range(0, len(value), 255)] or [""]
    return " ".join('"' + chunk.replace("\\", "\\\\").replace('"', '\\"') + '"' for chunk in chunks)


def load_provider(settings: DnsSettings) -> DnsProvider:
    """The provider ``xu_renew_acme_dns_provider`` names: ``rfc2136``, or ``module.path:ClassName``.

    A class is called with one argument, the options of ``xu_renew_acme_dns_provider_options`` as a dictionary of
    strings (revealed here, in the issuing process only).
    """
    if settings.provider == BUILTIN_DNS_PROVIDER:
        return Rfc2136Provider(settings)
    module_name, colon, class_name = settings.provider.partition(":")
    if not module_name or not colon or not class_name:
        raise DnsError(f"xu_renew_acme_dns_provider must be {BUILTIN_DNS_PROVIDER} or module.path:ClassName, not {settings.provider!r}")
    try:
        provider_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as e:
        raise DnsError(f"xu_renew_acme_dns_provider {settings.provider} cannot be loaded: {type(e).__name__}: {e}") from None
    options: Mapping[str, str] = {key: value.reveal() for key, value in settings.provider_options.items()}
    provider = provider_class(dict(options))
    if not isinstance(provider, DnsProvider):
        raise DnsError(f"xu_renew_acme_dns_provider {settings.provider} lacks the methods of a DNS provider (see docs/acme.md)")
    return provider


__all__ = ["DNSPYTHON_IMPORT_ERROR", "DnsError", "DnsProvider", "Rfc2136Provider", "load_provider", "wait_until_served"]
