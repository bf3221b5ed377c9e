"""Certificates planted in a host's LocalMachine\\My beside the bound one: near misses for replacing it, and a better one.

`better` is what a host could adopt instead of its bound certificate: a private key, Server
Authentication, the bound certificate's names, the lab CA, valid now and until later than the
bound one. Every near miss differs from `better` in one property (an expired one, necessarily,
also ends before a bound certificate that is still valid), so a selection that overlooks that
property picks it:

* `wrong_san`: another name (`intranet.<domain>`) as its CN and SAN;
* `no_key`: no private key in the store;
* `no_eku`: an extended key usage without Server Authentication (Client Authentication only);
* `other_issuer`: issued by a second root CA, which the host trusts too (it goes into Root);
* `expired`: its validity ended yesterday;
* `not_yet_valid`: its validity starts in 30 days;
* `shorter`: valid now, but it ends half way between now and the bound certificate's end.

Keys get the machine key set's default ACL: the XU service cannot read any of them until granted.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from .ca import OTHER_ROOT_COMMON_NAME, LeafRequest, Signer
from .certstore import KeyContainer, StoredCertificate, default_machine_key_acl
from .errors import LabError
from .renewals import bound_certificate
from .timefmt import iso_utc, utc_now

if TYPE_CHECKING:
    from .host import Host

NEAR_MISS_KINDS = ("wrong_san", "no_key", "no_eku", "other_issuer", "expired", "not_yet_valid", "shorter")
PLANT_KINDS = (*NEAR_MISS_KINDS, "better")
# How much longer than the bound certificate a planted one lasts (all but `shorter` and `expired`).
LONGER_BY = timedelta(days=90)
NOT_YET_VALID_IN = timedelta(days=30)


def plant(host: Host, kind: str) -> dict[str, object]:
    """Put a certificate of `kind` into My (see the module's text); what it is, with its thumbprint."""
    if kind not in PLANT_KINDS:
        raise LabError(f"kind must be one of {', '.join(PLANT_KINDS)}, not {kind!r}")
    reference = bound_certificate(host)
    if reference is None:
        raise LabError(f"{host.name} has no bound certificate to plant a {kind} certificate beside")
    now = utc_now()
    bound_until = reference.certificate.not_valid_after_utc
    names = tuple(reference.dns_names) or (reference.common_name,)
    common_name = reference.common_name or names[0]
    not_before, not_after = now - timedelta(hours=1), max(bound_until, now) + LONGER_BY
    server_auth, with_key = True, True
    signer: Signer | None = None
    if kind == "wrong_san":
        common_name = f"intranet.{host.identity.domain}"
        names = (common_name,)
    elif kind == "no_key":
        with_key = False
    elif kind == "no_eku":
        server_auth = False
    elif kind == "other_issuer":
        signer = host.ca.other_root()
        root = host.stores.open("Root")
        if root.get(StoredCertificate(signer[0], None).thumbprint) is None:
            host.add_certificate(signer[0], None, source="plant", friendly_name=OTHER_ROOT_COMMON_NAME, store=root)
    elif kind == "expired":
        not_before, not_after = now - timedelta(days=366), now - timedelta(days=1)
    elif kind == "not_yet_valid":
        not_before = now + NOT_YET_VALID_IN
    elif kind == "shorter":
        if bound_until - now < timedelta(days=2):
            raise LabError(f"the bound certificate of {host.name} ends {iso_utc(bound_until)}: no valid certificate can end before it")
        not_after = now + (bound_until - now) / 2
    key = host.pick_key()
    certificate = host.ca.issue(LeafRequest(common_name, names, not_before, not_after, server_auth), key.public_key(), signer=signer)
    container = KeyContainer(key, "CNG", default_machine_key_acl()) if with_key else None
    # The friendly name an administrator would give any of them: it tells nothing about the kind.
    entry = host.add_certificate(certificate, container, source="plant", friendly_name=host.fqdn)
    host.planted.append({"kind": kind, "thumbprint": entry.thumbprint})
    return {
        "kind": kind,
        "thumbprint": entry.thumbprint,
        "subject": entry.subject,
        "san": entry.dns_names,
        "issuer": certificate.issuer.rfc4514_string(),
        "not_before": iso_utc(certificate.not_valid_before_utc),
        "not_after": iso_utc(certificate.not_valid_after_utc),
        "has_private_key": entry.has_private_key,
        "bound_thumbprint": reference.thumbprint,
    }
