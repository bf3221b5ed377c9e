"""The propagation wait (every authoritative server must answer), TXT text, provider loading, and the PFX."""

from __future__ import annotations

import datetime

import dns.message
import dns.rrset
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.acme import dns as acme_dns
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.acme.certificate import build_pfx, csr_der, generate_key
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.acme.secrets import Secret
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.acme.settings import DnsSettings, Endpoint
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._pfx import PBES2_OID_DER, open_pfx

NAME = "_acme-challenge.xu01.example.com."
A, B = Endpoint("192.0.2.1"), Endpoint("192.0.2.2")


def answer(values: list[str]) -> dns.message.Message:
    response = dns.message.make_response(dns.message.make_query(NAME, "TXT"))
    if values:
        response.answer.append(dns.rrset.from_text(NAME, 60, "IN", "TXT", *(f'"{v}"' for v in values)))
    return response


def test_the_wait_ends_when_every_server_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[Endpoint] = []

    def query(endpoint: Endpoint, name: str, rdtype: str, timeout: float, *, tcp: bool = False) -> dns.message.Message:
        asked.append(endpoint)
        # B, the secondary, lags two rounds behind.
        return answer(["v"] if endpoint == A or asked.count(B) > 2 else [])

    monkeypatch.setattr(acme_dns, "query", query)
    clock = [0.0]
    waited = acme_dns.wait_until_served(
        (A, B), NAME, "v", timeout=60, query_timeout=1, clock=lambda: clock[0], sleep=lambda s: clock.__setitem__(0, clock[0] + s)
    )
    assert asked.count(A) == 1 and asked.count(B) == 3 and waited > 0


def test_a_server_that_never_answers_fails_the_wait_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    def query(endpoint: Endpoint, name: str, rdtype: str, timeout: float, *, tcp: bool = False) -> dns.message.Message:
        if endpoint == B:
            raise acme_dns.DnsError(f"the DNS server {endpoint} did not answer")
        return answer(["v", "another run's value"])

    monkeypatch.setattr(acme_dns, "query", query)
    clock = [0.0]
    with pytest.raises(acme_dns.DnsError) as failure:
        acme_dns.wait_until_served((A, B), NAME, "v", timeout=10, query_timeout=1, clock=lambda: clock[0], sleep=lambda s: clock.__setitem__(0, clock[0] + s))
    assert "192.0.2.2:53" in failure.value.msg and "192.0.2.1:53" not in failure.value.msg


def test_long_values_are_split_into_txt_strings() -> None:
    quoted = acme_dns._quoted("x" * 300)
    assert quoted == '"' + "x" * 255 + '" "' + "x" * 45 + '"'


class NotAProvider:
    def __init__(self, options: dict[str, str]) -> None:
        self.options = options


class TokenProvider:
    """A provider class as a user writes one (docs/acme.md)."""

    def __init__(self, options: dict[str, str]) -> None:
        self.token = options["token"]

    def zone_for(self, name: str) -> str:
        return "example.com"

    def add_txt(self, zone: str, name: str, value: str, ttl: int) -> None: ...

    def remove_txt(self, zone: str, name: str, value: str) -> None: ...

    def txt_values(self, zone: str, name: str) -> tuple[str, ...]:
        return ()

    def authoritative_servers(self, zone: str) -> tuple[Endpoint, ...]:
        return ()


def test_a_provider_is_loaded_by_name_with_its_options_revealed() -> None:
    settings = DnsSettings(provider=f"{__name__}:TokenProvider", provider_options={"token": Secret("api-token")})
    provider = acme_dns.load_provider(settings)
    assert isinstance(provider, TokenProvider) and provider.token == "api-token"  # noqa: S105 - a test value
    with pytest.raises(acme_dns.DnsError, match="lacks the methods"):
        acme_dns.load_provider(DnsSettings(provider=f"{__name__}:NotAProvider"))
    with pytest.raises(acme_dns.DnsError, match="cannot be loaded"):
        acme_dns.load_provider(DnsSettings(provider="no.such.module:Provider"))


def chain(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> list[str]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Intermediate")])
    now = datetime.datetime.now(datetime.timezone.utc)
    leaf = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "xu01.example.com")])).issuer_name(ca_name)
        .public_key(key.public_key()).serial_number(7).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("xu01.example.com")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Root")]))
        .public_key(ca_key.public_key()).serial_number(8).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=900))
        .sign(ca_key, hashes.SHA256())
    )
    return [c.public_bytes(serialization.Encoding.PEM).decode() for c in (leaf, ca)]


@pytest.mark.parametrize("key_type", ["rsa3072", "ecdsa_p256"])
def test_the_pfx_is_windows_server_2016s_encoding_with_key_and_chain(key_type: str) -> None:
    key = generate_key(key_type)
    csr = x509.load_der_x509_csr(csr_der(key, ("xu01.example.com", "alias.example.com")))
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["xu01.example.com", "alias.example.com"]
    issued = build_pfx(key, chain(key), "xu01.example.com ACME")
    assert PBES2_OID_DER not in issued.content  # 3DES and a SHA-1 MAC, which 2016 imports
    opened = open_pfx(issued.content, issued.password.reveal())
    assert opened.certificate == issued.certificate and [c.subject for c in opened.others] == [c.subject for c in issued.chain]
    assert opened.friendly_name == "xu01.example.com ACME"
    assert issued.password.reveal() not in repr(issued)
    if key_type == "rsa3072":
        assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 3072


def test_a_chain_for_another_key_is_refused() -> None:
    with pytest.raises(ValueError, match="does not carry the key"):
        build_pfx(generate_key("ecdsa_p256"), chain(generate_key("ecdsa_p256")), "x")
