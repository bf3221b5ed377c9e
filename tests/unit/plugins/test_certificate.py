from __future__ import annotations

import hashlib

import pytest

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._certificate import (
    ServiceIdentity,
    dns_name_matches,
    key_readable_by,
    parse_der,
)
from support.certs import NOW, der, mint

SERVICE_SID = "S-1-5-80-2835434641-1716488285-1104975628-79970361-2622572616"
SERVICE_GROUPS = ("S-1-1-0", "S-1-5-11", "S-1-5-32-545", "S-1-5-6")
SERVICE = ServiceIdentity("NT Service\\XtractUniversal Service", SERVICE_SID, SERVICE_GROUPS)
ADMIN_ACL = [
    {"identity": "NT AUTHORITY\\SYSTEM", "sid": "S-1-5-18", "rights": "FullControl", "type": "Allow"},
    {"identity": "BUILTIN\\Administrators", "sid": "S-1-5-32-544", "rights": "FullControl", "type": "Allow"},
]


def test_facts_of_a_good_certificate() -> None:
    cert, _key = mint("xu01.example.com", sans=("xu01.example.com", "xu01"), days_left=45.5)
    facts = parse_der(der(cert))
    assert facts.thumbprint == hashlib.sha1(der(cert), usedforsecurity=False).hexdigest().upper()
    assert facts.subject == "CN=xu01.example.com"
    assert facts.issuer == "CN=Unit Test CA"
    assert facts.dns_names == ("xu01.example.com", "xu01")
    assert facts.server_auth
    assert facts.key_type == "EC secp256r1"
    assert int(facts.days_left(NOW)) == 45
    assert not facts.is_expired(NOW) and not facts.is_not_yet_valid(NOW)
    assert facts.covers("XU01.example.com") is True
    assert facts.covers("xu02.example.com") is False
    assert facts.covers(None) is None
    result = facts.to_result(NOW, "xu01.example.com")
    assert result["days_left"] == 45 and result["san_covers_fqdn"] is True


def test_expired_and_not_yet_valid() -> None:
    expired = parse_der(der(mint(days_left=-3)[0]))
    assert expired.is_expired(NOW) and expired.to_result(NOW, None)["days_left"] == -3
    future = parse_der(der(mint(valid_from_days_ago=-2)[0]))
    assert future.is_not_yet_valid(NOW)


@pytest.mark.parametrize(("server_auth", "expected"), [(True, True), (False, False), (None, True)])
def test_server_auth_eku(server_auth: bool | None, expected: bool) -> None:
    # No EKU extension means every purpose on Windows.
    assert parse_der(der(mint(server_auth=server_auth)[0])).server_auth is expected


def test_same_key_gives_same_public_key_fingerprint() -> None:
    first, key = mint()
    renewed, _key = mint(key=key)
    other, _key = mint()
    assert parse_der(der(first)).public_key_sha256 == parse_der(der(renewed)).public_key_sha256
    assert parse_der(der(first)).public_key_sha256 != parse_der(der(other)).public_key_sha256


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("xu01.example.com", "XU01.EXAMPLE.COM.", True),
        ("*.example.com", "xu01.example.com", True),
        ("*.example.com", "a.xu01.example.com", False),
        ("*.example.com", "example.com", False),
        ("xu01", "xu01.example.com", False),
    ],
)
def test_dns_name_matching(pattern: str, name: str, expected: bool) -> None:
    assert dns_name_matches(pattern, name) is expected


def test_key_readable_by_service_account() -> None:
    granted = {"acl": [*ADMIN_ACL, {"identity": "NT SERVICE\\XtractUniversal Service", "sid": SERVICE_SID, "rights": "Read", "type": "Allow"}]}
    assert key_readable_by(SERVICE, granted, True) is True
    assert key_readable_by(SERVICE, {"acl": ADMIN_ACL}, True) is False
    denied = {"acl": [*granted["acl"], {"identity": "Everyone", "sid": "S-1-1-0", "rights": "Read", "type": "Deny"}]}
    assert key_readable_by(SERVICE, denied, True) is False
    assert key_readable_by(SERVICE, {"acl": [{"identity": "BUILTIN\\Users", "sid": "S-1-5-32-545", "rights": "Read", "type": "Allow"}]}, True) is True
    assert key_readable_by(ServiceIdentity("LocalSystem", "S-1-5-18", None), {"acl": []}, True) is True
    assert key_readable_by(SERVICE, granted, False) is False
    assert key_readable_by(SERVICE, {"provider": "CNG", "acl": None}, True) is None
    assert key_readable_by(None, granted, True) is None
    # An account the host could not translate cannot be judged; neither can an entry without its SID.
    assert key_readable_by(ServiceIdentity("HOST\\gone", None, None), granted, True) is None
    assert key_readable_by(SERVICE, {"acl": [{"identity": "NT SERVICE\\XtractUniversal Service", "rights": "Read", "type": "Allow"}]}, True) is None


@pytest.mark.parametrize(
    ("start_name", "acl_identity", "sid"),
    [
        # The same account, spelled by the service configuration and by an ACL: only the SID says so.
        ("NT AUTHORITY\\NetworkService", "NT AUTHORITY\\NETWORK SERVICE", "S-1-5-20"),
        (".\\svc", "XU01\\svc", "S-1-5-21-1-2-3-1001"),
        ("svc@example.com", "EXAMPLE\\svc", "S-1-5-21-4-5-6-1105"),
    ],
)
def test_accounts_are_compared_by_sid_never_by_name(start_name: str, acl_identity: str, sid: str) -> None:
    identity = ServiceIdentity(start_name, sid, ())
    acl = {"acl": [*ADMIN_ACL, {"identity": acl_identity, "sid": sid, "rights": "Read", "type": "Allow"}]}
    assert key_readable_by(identity, acl, True) is True
    # A name that merely looks alike is someone else.
    other = {"acl": [*ADMIN_ACL, {"identity": start_name, "sid": "S-1-5-21-9-9-9-500", "rights": "Read", "type": "Allow"}]}
    assert key_readable_by(identity, other, True) is False


def test_a_right_through_a_group_counts_and_a_deny_through_a_group_wins() -> None:
    group = "S-1-5-21-4-5-6-1109"
    identity = ServiceIdentity("svc@example.com", "S-1-5-21-4-5-6-1105", ("S-1-1-0", group))
    by_group = {"acl": [*ADMIN_ACL, {"identity": "EXAMPLE\\XU Key Readers", "sid": group, "rights": "Read", "type": "Allow"}]}
    assert key_readable_by(identity, by_group, True) is True
    # Groups unknown: only the account's own SID counts (a missing right may be reported that a group grants).
    assert key_readable_by(ServiceIdentity("EXAMPLE\\svc", "S-1-5-21-4-5-6-1105", None), by_group, True) is False
    deny = {"acl": [*by_group["acl"], {"identity": "Everyone", "sid": "S-1-1-0", "rights": "FullControl", "type": "Deny"}]}
    assert key_readable_by(identity, deny, True) is False
    # SIDs compare without regard to case, as Windows parses them.
    lower = {"acl": [{"identity": "x", "sid": group.lower(), "rights": "FullControl", "type": "Allow"}]}
    assert key_readable_by(identity, lower, True) is True
    assert ServiceIdentity.from_service({"account": "a", "account_sid": "s-1-5-20", "account_groups": None}) == ServiceIdentity("a", "S-1-5-20", None)
