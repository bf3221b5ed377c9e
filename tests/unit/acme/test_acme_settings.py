"""The xu_renew_acme_* variables, typed once; the names a certificate is ordered for; secrets that do not print."""

from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.acme.names import NamesError, order_names
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.acme.secrets import Secret, new_password
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.acme.settings import AcmeSettingsError, Endpoint, settings_from_vars


def test_defaults(acme_vars: dict[str, Any]) -> None:
    settings = settings_from_vars(acme_vars)
    assert settings.key_type == "rsa3072" and settings.use_ari is True and settings.max_parallel_orders == 10
    assert settings.dns.server == Endpoint("192.0.2.53", 53) and settings.dns.tsig_algorithm == "hmac-sha256"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"xu_renew_acme_directory": "http://acme.example/dir"}, "xu_renew_acme_directory"),
        ({"xu_renew_acme_account_key": "not a key"}, "xu_renew_acme_account_key"),
        ({"xu_renew_acme_key_type": "dsa"}, "xu_renew_acme_key_type"),
        ({"xu_renew_acme_eab_kid": "kid-1"}, "xu_renew_acme_eab_hmac_key"),
        ({"xu_renew_acme_eab_kid": "k", "xu_renew_acme_eab_hmac_key": "not base64!"}, "xu_renew_acme_eab_hmac_key"),
        ({"xu_renew_acme_dns_server": ""}, "xu_renew_acme_dns_server"),
        ({"xu_renew_acme_dns_server": "ns1:99999"}, "xu_renew_acme_dns_server"),
        ({"xu_renew_acme_tsig_secret": ""}, "xu_renew_acme_tsig_secret"),
        ({"xu_renew_acme_tsig_algorithm": "hmac-md5"}, "xu_renew_acme_tsig_algorithm"),
        ({"xu_renew_acme_validation_timeout": "soon"}, "xu_renew_acme_validation_timeout"),
        ({"xu_renew_acme_max_parallel_orders": 0}, "xu_renew_acme_max_parallel_orders"),
        ({"xu_renew_acme_terms_agreed": "perhaps"}, "xu_renew_acme_terms_agreed"),
    ],
)
def test_a_wrong_variable_is_named(acme_vars: dict[str, Any], change: dict[str, Any], named: str) -> None:
    with pytest.raises(AcmeSettingsError) as failure:
        settings_from_vars(acme_vars | change)
    assert named in failure.value.msg


def test_survey_answers_are_strings(acme_vars: dict[str, Any]) -> None:
    settings = settings_from_vars(
        acme_vars
        | {
            "xu_renew_acme_terms_agreed": "true",
            "xu_renew_acme_contact": "ops@example.com, pki@example.com",
            "xu_renew_acme_dns_nameservers": "192.0.2.1\n[2001:db8::1]:5353",
            "xu_renew_acme_validation_timeout": "120",
        }
    )
    assert settings.terms_agreed is True and settings.validation_timeout == 120
    assert settings.contact == ("mailto:ops@example.com", "mailto:pki@example.com")
    assert settings.dns.nameservers == (Endpoint("192.0.2.1", 53), Endpoint("2001:db8::1", 5353))


def test_the_eab_key_is_padded_for_community_crypto(acme_vars: dict[str, Any]) -> None:
    settings = settings_from_vars(acme_vars | {"xu_renew_acme_eab_kid": "kid", "xu_renew_acme_eab_hmac_key": "abc"})
    assert settings.eab_hmac_key.reveal() == "abc="


def test_no_secret_prints(acme_vars: dict[str, Any]) -> None:
    settings = settings_from_vars(acme_vars | {"xu_renew_acme_eab_kid": "kid", "xu_renew_acme_eab_hmac_key": "c2VjcmV0LWVhYi1rZXk"})
    text = repr(settings) + str(settings) + f"{settings}"
    for secret in settings.secrets:
        assert secret not in text
    assert len(settings.secrets) == 3
    password = new_password()
    assert password.reveal() not in repr(password) + str(password) + f"{password}" + f"{password:>40}"
    with pytest.raises(TypeError):
        __import__("pickle").dumps(Secret("x"))


def test_names_default_to_the_fqdn_and_the_served_names() -> None:
    names, left_out = order_names("XU01.corp.example.com.", ["xu01.corp.example.com", "xu-alias.corp.example.com", "XU01", "10.0.0.5"], [])
    assert names == ("xu01.corp.example.com", "xu-alias.corp.example.com")
    assert left_out == ("XU01", "10.0.0.5")


def test_given_names_replace_the_default_and_must_be_orderable() -> None:
    assert order_names("xu01.example.com", ["old.example.com"], ["sap-extract.example.com", "*.xu.example.com"])[0] == (
        "sap-extract.example.com",
        "*.xu.example.com",
    )
    with pytest.raises(NamesError, match="xu_renew_acme_names"):
        order_names("xu01.example.com", [], ["xu01"])
    with pytest.raises(NamesError, match="xu_renew_fqdn"):
        order_names("", [], [])
