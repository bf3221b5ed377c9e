"""PFX judgement on the controller, with good and bad certificates minted here."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._pfx import (
    PBES2_OID_DER,
    SHA1_MAC_OID,
    PfxError,
    eku_problem,
    judge_pfx,
    load_ca_bundle,
    open_pfx,
    pfx_for_windows,
    pfx_mac_algorithm,
    san_problem,
    windows_2016_reads,
)
from support.certs import CA_KEY, CA_NAME, NOW, mint
from support.fake_swap import CA_CERTIFICATE, FQDN, make_pfx, thumbprint_of

PASSWORD = "correct horse battery staple"  # noqa: S105 - a test value


def pem(*certificates: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def other_ca(name: str = "Other CA") -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(7).not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=100))
        .sign(key, hashes.SHA256())
    )
    return cert, key


def test_a_good_pfx_is_opened_and_trusted_through_its_own_root() -> None:
    cert, key = mint(FQDN)
    opened = open_pfx(make_pfx(cert, key, PASSWORD), PASSWORD)
    judgement = judge_pfx(opened, now=NOW, ca_bundle=None)
    assert judgement.thumbprint == thumbprint_of(cert)
    assert judgement.errors == () and judgement.eku_problem is None and judgement.notes == ()
    assert judgement.trusted_by == "pfx"
    assert [link.facts.subject for link in judgement.chain] == ["CN=Unit Test CA"]
    result = judgement.to_result(NOW, FQDN)
    assert result["san_covers_fqdn"] is True and result["chain_trusted_by"] == "pfx"
    assert result["chain"][0]["source"] == "pfx"


@pytest.mark.parametrize("password", [None, ""])
def test_a_pfx_without_password(password: str | None) -> None:
    cert, key = mint(FQDN)
    assert open_pfx(make_pfx(cert, key, None), password).facts.thumbprint == thumbprint_of(cert)


def test_wrong_password_is_a_clear_error() -> None:
    cert, key = mint(FQDN)
    data = make_pfx(cert, key, PASSWORD)
    with pytest.raises(PfxError, match=r"the password \(pfx_password\) is wrong"):
        open_pfx(data, "Tr0ub4dor&3")
    with pytest.raises(PfxError, match="without a password: set pfx_password"):
        open_pfx(data, None)


def test_a_pfx_opened_under_two_names_is_opened_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # A renewal's task checks the PFX under the role's variable and sends it under the module's option: one key check.
    cert, key = mint(FQDN)
    data = make_pfx(cert, key, PASSWORD)
    loads: list[bytes] = []
    real_load = pkcs12.load_pkcs12

    def counted(pfx: bytes, password: bytes | None) -> pkcs12.PKCS12KeyAndCertificates:
        loads.append(pfx)
        return real_load(pfx, password)

    monkeypatch.setattr(pkcs12, "load_pkcs12", counted)
    first = open_pfx(data, PASSWORD, "xu_renew_pfx_dir/xu01.pfx")
    assert open_pfx(data, PASSWORD, "pfx_path /srv/certs/xu01.pfx") is first
    assert len(loads) == 1
    # A failure is not remembered, and names the file as each caller calls it.
    for name in ("xu_renew_pfx_dir/xu01.pfx", "pfx_content"):
        with pytest.raises(PfxError, match=rf"^Unable to open {name}: the password \(pfx_password\) is wrong"):
            open_pfx(data, "Tr0ub4dor&3", name)
    assert len(loads) == 3


def test_not_a_pfx() -> None:
    cert, _key = mint(FQDN)
    with pytest.raises(PfxError, match="is a PEM file, not a PFX"):
        open_pfx(pem(cert), PASSWORD, "pfx_path site.pem")
    with pytest.raises(PfxError, match="not a PFX"):
        open_pfx(b"\x00\x01 hello", PASSWORD)


def test_no_private_key() -> None:
    cert, _key = mint(FQDN)
    with pytest.raises(PfxError, match="holds no private key; export the certificate together with its private key"):
        open_pfx(make_pfx(cert, None, PASSWORD), PASSWORD)


def test_key_of_another_certificate() -> None:
    from cryptography.hazmat.primitives.serialization import pkcs12  # noqa: PLC0415

    cert, _key = mint(FQDN)
    stray_key = ec.generate_private_key(ec.SECP256R1())
    data = pkcs12.serialize_key_and_certificates(b"x", stray_key, None, [cert], serialization.BestAvailableEncryption(PASSWORD.encode()))
    with pytest.raises(PfxError, match=r"belongs to none of its certificates \(CN=xu01.example.com\)"):
        open_pfx(data, PASSWORD)


@pytest.mark.parametrize(
    ("days_left", "valid_from_days_ago", "expected"),
    [(-2, 300, "expired on"), (400, -5, "is not valid before")],
)
def test_validity_window(days_left: float, valid_from_days_ago: float, expected: str) -> None:
    cert, key = mint(FQDN, days_left=days_left, valid_from_days_ago=valid_from_days_ago)
    judgement = judge_pfx(open_pfx(make_pfx(cert, key, PASSWORD), PASSWORD), now=NOW, ca_bundle=None)
    assert len(judgement.errors) == 1 and expected in judgement.errors[0]
    assert judgement.thumbprint in judgement.errors[0]


def test_san_and_eku() -> None:
    cert, key = mint("other.example.com", server_auth=False)
    judgement = judge_pfx(open_pfx(make_pfx(cert, key, PASSWORD), PASSWORD), now=NOW, ca_bundle=None)
    assert judgement.errors == ()
    assert judgement.eku_problem is not None and "Server Authentication" in judgement.eku_problem
    problem = san_problem(judgement.leaf, FQDN)
    assert problem is not None and f"does not name {FQDN}" in problem and "other.example.com" in problem
    assert san_problem(judgement.leaf, None) is None  # the host is not known yet
    wildcard, _key = mint("*.example.com")
    assert san_problem(judge_pfx(open_pfx(make_pfx(wildcard, _key, PASSWORD), PASSWORD), now=NOW, ca_bundle=None).leaf, FQDN) is None
    no_eku, _key = mint(FQDN, server_auth=None)
    assert eku_problem(open_pfx(make_pfx(no_eku, _key, PASSWORD), PASSWORD).facts) is None  # no EKU: every purpose


def test_chain_against_ca_path() -> None:
    cert, key = mint(FQDN)
    bundle = load_ca_bundle(pem(CA_CERTIFICATE))
    # The root comes from ca_path; the PFX need not carry it.
    judgement = judge_pfx(open_pfx(make_pfx(cert, key, PASSWORD, chain=()), PASSWORD), now=NOW, ca_bundle=bundle)
    assert judgement.errors == () and judgement.trusted_by == "ca_path"
    assert judgement.chain[0].source == "ca_path"

    stranger, _key = other_ca()
    judgement = judge_pfx(open_pfx(make_pfx(cert, key, PASSWORD), PASSWORD), now=NOW, ca_bundle=load_ca_bundle(pem(stranger)))
    assert judgement.trusted_by is None
    assert any("does not lead to a certificate in ca_path" in e for e in judgement.errors)


def test_chain_that_stops_short_is_only_noted_without_ca_path() -> None:
    cert, key = mint(FQDN)
    judgement = judge_pfx(open_pfx(make_pfx(cert, key, PASSWORD, chain=()), PASSWORD), now=NOW, ca_bundle=None)
    assert judgement.errors == () and judgement.trusted_by is None
    assert judgement.notes == ("the PFX does not carry the root of its chain (it stops at CN=Unit Test CA); set ca_path to check the chain against your CA",)


def test_forged_issuer_breaks_the_chain() -> None:
    # A CA certificate with the right name but another key did not sign the leaf.
    impostor_key = ec.generate_private_key(ec.SECP256R1())
    impostor = (
        x509.CertificateBuilder().subject_name(CA_NAME).issuer_name(CA_NAME).public_key(impostor_key.public_key())
        .serial_number(9).not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=100))
        .sign(impostor_key, hashes.SHA256())
    )
    cert, key = mint(FQDN)
    judgement = judge_pfx(open_pfx(make_pfx(cert, key, PASSWORD, chain=(impostor,)), PASSWORD), now=NOW, ca_bundle=None)
    assert any("does not verify with the key of its issuer CN=Unit Test CA" in e for e in judgement.errors)
    assert judgement.trusted_by is None


def test_expired_issuer_is_an_error() -> None:
    stale_root = (
        x509.CertificateBuilder().subject_name(CA_NAME).issuer_name(CA_NAME).public_key(CA_KEY.public_key())
        .serial_number(3).not_valid_before(NOW - datetime.timedelta(days=400)).not_valid_after(NOW - datetime.timedelta(days=1))
        .sign(CA_KEY, hashes.SHA256())
    )
    cert, key = mint(FQDN)
    judgement = judge_pfx(open_pfx(make_pfx(cert, key, PASSWORD, chain=(stale_root,)), PASSWORD), now=NOW, ca_bundle=None)
    assert any(e.startswith("the issuing certificate CN=Unit Test CA") and "expired" in e for e in judgement.errors)


def test_self_signed_certificate_is_noted() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, FQDN)])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(5)
        .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=100))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(FQDN)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    judgement = judge_pfx(open_pfx(make_pfx(cert, key, PASSWORD, chain=()), PASSWORD), now=NOW, ca_bundle=None)
    assert judgement.errors == () and judgement.trusted_by == "pfx" and judgement.chain == ()
    assert any("self-signed" in note for note in judgement.notes)
    # Trusted when ca_path names it.
    judgement = judge_pfx(open_pfx(make_pfx(cert, key, PASSWORD, chain=()), PASSWORD), now=NOW, ca_bundle=load_ca_bundle(pem(cert)))
    assert judgement.errors == () and judgement.trusted_by == "ca_path"


def test_ca_bundle_must_be_pem() -> None:
    with pytest.raises(PfxError, match="not a PEM bundle"):
        load_ca_bundle(b"not a certificate")


# -- the PFX as it travels to the host ------------------------------------------------------


def test_an_aes_pfx_is_re_encoded_with_3des_and_a_sha1_mac_keeping_everything_in_it() -> None:
    cert, key = mint(FQDN, sans=(FQDN,))
    original = make_pfx(cert, key, PASSWORD)
    assert PBES2_OID_DER in original  # what OpenSSL 3 and `cryptography` write by default
    travelling = pfx_for_windows(original, PASSWORD)
    assert PBES2_OID_DER not in travelling
    # pbeWithSHAAnd3-KeyTripleDES-CBC (1.2.840.113549.1.12.1.3) and a SHA-1 MAC (1.3.14.3.2.26).
    assert bytes.fromhex("060a2a864886f70d010c0103") in travelling and bytes.fromhex("06052b0e03021a") in travelling
    before, after = pkcs12.load_pkcs12(original, PASSWORD.encode()), pkcs12.load_pkcs12(travelling, PASSWORD.encode())
    assert after.cert is not None and before.cert is not None
    assert after.cert.certificate == before.cert.certificate and after.cert.friendly_name == before.cert.friendly_name == b"xu01"
    assert [c.certificate for c in after.additional_certs] == [c.certificate for c in before.additional_certs] == [CA_CERTIFICATE]
    assert after.key is not None and before.key is not None
    raw = serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    assert after.key.private_bytes(*raw) == before.key.private_bytes(*raw)
    # With the wrong password nothing opens it.
    with pytest.raises(ValueError, match="Invalid password"):
        pkcs12.load_pkcs12(travelling, b"wrong")


def test_a_legacy_pfx_travels_byte_for_byte() -> None:
    cert, key = mint(FQDN, sans=(FQDN,))
    legacy_encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(hashes.SHA1())  # noqa: S303 - Windows' own export
        .build(PASSWORD.encode())
    )
    legacy = pkcs12.serialize_key_and_certificates(b"xu01", key, cert, None, legacy_encryption)
    assert pfx_mac_algorithm(legacy) == SHA1_MAC_OID and windows_2016_reads(legacy)
    assert pfx_for_windows(legacy, PASSWORD) is legacy


def test_a_3des_pfx_with_a_sha256_mac_is_re_encoded_with_a_sha1_mac() -> None:
    # Server 2016 predates the SHA-256 MAC (unverified whether it checks one): stricter, the file is re-encoded.
    cert, key = mint(FQDN, sans=(FQDN,))
    sha256_mac = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(hashes.SHA256())
        .build(PASSWORD.encode())
    )
    original = pkcs12.serialize_key_and_certificates(b"xu01", key, cert, None, sha256_mac)
    assert PBES2_OID_DER not in original and pfx_mac_algorithm(original) == "2.16.840.1.101.3.4.2.1"
    assert not windows_2016_reads(original)
    travelling = pfx_for_windows(original, PASSWORD)
    assert travelling != original and pfx_mac_algorithm(travelling) == SHA1_MAC_OID and windows_2016_reads(travelling)
    after = pkcs12.load_pkcs12(travelling, PASSWORD.encode())
    assert after.cert is not None and after.cert.certificate == cert
    # Without a password it cannot be re-encoded (a MAC needs one): the error says how to export it.
    with pytest.raises(PfxError, match="MAC other than SHA-1"):
        pfx_for_windows(make_pfx(cert, key, None), None)
    assert pfx_mac_algorithm(b"not a pfx") is None


def test_an_aes_pfx_without_a_password_cannot_be_re_encoded_and_says_what_to_do() -> None:
    with pytest.raises(PfxError, match="-legacy"):
        pfx_for_windows(b"\x30\x82" + PBES2_OID_DER, None)


def test_a_pfx_is_opened_once_per_process_and_its_password_checked_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # A renewal's task opens the same PFX to check it and again to send it; opening validates its RSA key (~40 ms).
    cert, key = mint(FQDN)
    data = make_pfx(cert, key, PASSWORD)
    loads = []
    load = pkcs12.load_pkcs12

    def counted(pfx: bytes, password: bytes | None) -> pkcs12.PKCS12KeyAndCertificates:
        loads.append(password)
        return load(pfx, password)

    monkeypatch.setattr(pkcs12, "load_pkcs12", counted)
    first = open_pfx(data, PASSWORD)
    assert open_pfx(data, PASSWORD) is first and len(loads) == 1
    # Another password, or other bytes, are opened anew: a wrong password still fails.
    with pytest.raises(PfxError, match="password"):
        open_pfx(data, "Tr0ub4dor&3")
    with pytest.raises(PfxError, match="password"):
        open_pfx(data, "Tr0ub4dor&3")
    other_cert, other_key = mint(FQDN)
    assert open_pfx(make_pfx(other_cert, other_key, PASSWORD), PASSWORD).facts.thumbprint == thumbprint_of(other_cert)
    assert len(loads) == 4
    # What is remembered holds no key: the certificates and the friendly name.
    assert set(vars(first)) == {"certificate", "others", "friendly_name"}
