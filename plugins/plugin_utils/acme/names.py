# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The DNS names a host's certificate is ordered for. Private to this collection."""

from __future__ import annotations

import re
from collections.abc import Iterable

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import XuError

# RFC 1035 labels as public CAs take them (letters, digits, hyphens; the wildcard only as the leftmost label).
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class NamesError(XuError):
    """A name that cannot be ordered; the message names it and where it came from."""


def normalise(name: str) -> str:
    return name.strip().rstrip(".").lower()


def check_name(name: str, source: str) -> str:
    """The name, normalised; NamesError when a CA could not issue for it."""
    normal = normalise(name)
    try:
        ascii_name = normal.encode("idna").decode("ascii") if not normal.isascii() else normal
    except UnicodeError:
        raise NamesError(f"{source}: {name!r} is not a valid DNS name") from None
    labels = ascii_name.split(".")
    if len(labels) < 2:
        raise NamesError(f"{source}: {name!r} is not a fully qualified DNS name (a CA issues only for names in a DNS zone)")
    body = labels[1:] if labels[0] == "*" else labels
    if len(ascii_name) > 253 or not all(_LABEL.match(label) for label in body):
        raise NamesError(f"{source}: {name!r} is not a valid DNS name")
    if re.fullmatch(r"[0-9.]+", ascii_name):
        raise NamesError(f"{source}: {name!r} is an IP address; DNS-01 validates DNS names only")
    return ascii_name


def order_names(fqdn: str, served_names: Iterable[str], given: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The names to order, the host's FQDN first, and the served certificate's names left out.

    ``given`` (the host's ``xu_renew_acme_names``) replaces the default, which is the host's FQDN plus the DNS names of
    the certificate it serves now (so that the aliases its clients use keep working). A served name no CA can issue
    for (a short name such as ``XU01``, an address) is left out and reported; a given name that is not orderable fails.
    """
    given = tuple(given)
    if given:
        candidates = [(name, "xu_renew_acme_names", True) for name in given]
    else:
        if not fqdn:
            raise NamesError("the host's DNS name is not known: set xu_renew_fqdn or xu_renew_acme_names for it")
        candidates = [(fqdn, "the host's DNS name", True), *((name, "the served certificate's SAN", False) for name in served_names)]
    names: list[str] = []
    skipped: list[str] = []
    for name, source, required in candidates:
        try:
            checked = check_name(name, source)
        except NamesError:
            if required:
                raise
            skipped.append(name)
            continue
        if checked not in names:
            names.append(checked)
    if len(names) > 100:
        raise NamesError(f"{len(names)} names for one certificate: public CAs issue for at most 100")
    return tuple(names), tuple(skipped)
