from __future__ import annotations

import hashlib

import pytest

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._certificate import (
    dns_name_matches,
    key_readable_by,
    parse_der,
)
from support.certs import NOW, der, mint

SERVICE = "NT Service\\XtractUniversal Service"
ADMIN_ACL = [
    {"identity": "NT AUTHORITY\\SYSTEM", "rights": "FullControl", "type": "Allow"},
    {"identity": "BUILTIN\\Administrators", "rights": "FullControl", "type": "Allow"},
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
    granted = {"acl": [*ADMIN_ACL, {"identity": SERVICE.upper(), "rights": "Read", "type": "Allow"}]}
    assert key_readable_by(SERVICE, granted, True) is True
    assert key_readable_by(SERVICE, {"acl": ADMIN_ACL}, True) is False
    denied = {"acl": [*granted["acl"], {"identity": "Everyone", "rights": "Read", "type": "Deny"}]}
    assert key_readable_by(SERVICE, denied, True) is False
    assert key_readable_by(SERVICE, {"acl": [{"identity": "BUILTIN\\Users", "rights": "Read", "type": "Allow"}]}, True) is True
    assert key_readable_by("LocalSystem", {"acl": []}, True) is True
    assert key_readable_by(SERVICE, granted, False) is False
    assert key_readable_by(SERVICE, {"provider": "CNG", "acl": None}, True) is None
    assert key_readable_by(None, granted, True) is None
