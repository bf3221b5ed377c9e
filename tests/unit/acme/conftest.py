"""Fixtures of the ACME unit tests."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


@pytest.fixture
def account_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


@pytest.fixture
def acme_vars(account_key: str) -> dict[str, Any]:
    return {
        "xu_renew_acme_directory": "https://acme.example/directory",
        "xu_renew_acme_account_key": account_key,
        "xu_renew_acme_dns_server": "192.0.2.53",
        "xu_renew_acme_tsig_name": "xu-acme.",
        "xu_renew_acme_tsig_secret": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I=",
    }
