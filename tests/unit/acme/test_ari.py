"""Renewal information (RFC 9773) through community.crypto's client against answers shaped as the RFC's examples.

Pebble 2.4 has no renewalInfo endpoint, so these shapes are what the ARI path is tested against (docs/acme.md)."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.acme import client, issue
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.acme.ari import RenewalWindow, ari_verdict
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.acme.settings import settings_from_vars
from support.fake_acme import Answer, Script, fake_acme

UTC = datetime.timezone.utc
# RFC 9773 4.1's example: AKI 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4, serial 00:87:65:43:21.
RFC_CERT_ID = "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"


def certificate(serial: int, aki: bytes) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "xu01.example.com")])
    now = datetime.datetime.now(UTC)
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(serial)
        .not_valid_before(now - datetime.timedelta(days=60)).not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.AuthorityKeyIdentifier(aki, None, None), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("xu01.example.com")]), critical=False)
        .sign(key, hashes.SHA256())
    )


RFC_CERT = certificate(0x0087654321, bytes.fromhex("69885B6B87464041E1B37B847BA0AE2CDE01C8D4"))


def window_answer(start: str, end: str, retry_after: str = "21600") -> tuple[int, dict[str, Any], dict[str, str]]:
    # RFC 9773 4.2's example answer, with its Retry-After.
    body = {"suggestedWindow": {"start": start, "end": end}, "explanationURL": "https://acme.example.com/docs/ari"}
    return 200, body, {"Retry-After": retry_after}


def settings(directory: str, ca_path: Path, acme_vars: dict[str, Any]) -> Any:
    return settings_from_vars(acme_vars | {"xu_renew_acme_directory": directory, "xu_renew_acme_ca_path": str(ca_path), "xu_renew_acme_retry_budget": 5})


def assess(tmp_path: Path, acme_vars: dict[str, Any], script: Script, now: datetime.datetime, served: x509.Certificate = RFC_CERT) -> issue.Assessment:
    with fake_acme(tmp_path, script) as (directory, ca_path):
        chosen = settings(directory, ca_path, acme_vars)
        session = client.open_session(chosen, check_mode=False)
        return issue.assess_host(chosen, issue.HostRequest("xu01", "xu01.example.com", (), served), session, now)


def test_the_cert_id_is_rfc_9773s_example(tmp_path: Path, acme_vars: dict[str, Any]) -> None:
    script = Script(renewal_info={RFC_CERT_ID: window_answer("2025-01-02T04:00:00Z", "2025-01-03T04:00:00Z")})
    assessment = assess(tmp_path, acme_vars, script, datetime.datetime(2025, 1, 1, tzinfo=UTC))
    assert assessment.cert_id == RFC_CERT_ID
    assert ("renewalInfo", RFC_CERT_ID) in script.received


@pytest.mark.parametrize(
    ("now", "due"),
    [
        (datetime.datetime(2025, 1, 1, 12, tzinfo=UTC), False),  # before the window
        (datetime.datetime(2025, 1, 3, 4, tzinfo=UTC), True),  # at its end: whatever the chosen point, it has come
        (datetime.datetime(2025, 2, 1, tzinfo=UTC), True),  # long after it
    ],
)
def test_the_suggested_window_decides(tmp_path: Path, acme_vars: dict[str, Any], now: datetime.datetime, due: bool) -> None:
    script = Script(renewal_info={RFC_CERT_ID: window_answer("2025-01-02T04:00:00Z", "2025-01-03T04:00:00Z")})
    assessment = assess(tmp_path, acme_vars, script, now)
    assert assessment.verdict is not None and assessment.verdict.due is due and assessment.verdict.source == "ari"
    assert assessment.window is not None and assessment.window.retry_after_seconds is not None
    assert 21000 < assessment.window.retry_after_seconds <= 21600
    assert assessment.to_result()["ari"]["explanation_url"] == "https://acme.example.com/docs/ari"


def test_an_early_window_after_a_revocation_is_honoured(tmp_path: Path, acme_vars: dict[str, Any]) -> None:
    """RFC 9773 4.2: after a revocation the CA moves the window into the past; the certificate is due at once,
    although it has weeks left, which the days rule would not renew."""
    now = datetime.datetime.now(UTC)
    past = (now - datetime.timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ"), (now - datetime.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    script = Script(renewal_info={RFC_CERT_ID: window_answer(*past)})
    assessment = assess(tmp_path, acme_vars, script, now)
    assert assessment.verdict is not None and assessment.verdict.due is True
    assert "is over" in assessment.verdict.reason


def test_a_window_that_ends_before_it_starts_is_ignored(tmp_path: Path, acme_vars: dict[str, Any]) -> None:
    script = Script(renewal_info={RFC_CERT_ID: window_answer("2025-01-03T04:00:00Z", "2025-01-02T04:00:00Z")})
    assessment = assess(tmp_path, acme_vars, script, datetime.datetime(2025, 1, 2, 12, tzinfo=UTC))
    assert assessment.verdict is None and "ignored" in assessment.note


def test_a_certificate_the_ca_does_not_know_leaves_the_decision_to_the_engine(tmp_path: Path, acme_vars: dict[str, Any]) -> None:
    assessment = assess(tmp_path, acme_vars, Script(), datetime.datetime(2025, 1, 2, tzinfo=UTC))
    assert assessment.verdict is None and "no renewal information" in assessment.note


def test_a_ca_without_ari_is_not_asked(tmp_path: Path, acme_vars: dict[str, Any]) -> None:
    script = Script(with_ari=False)
    assessment = assess(tmp_path, acme_vars, script, datetime.datetime(2025, 1, 2, tzinfo=UTC))
    assert assessment.verdict is None and assessment.note == "the CA offers no renewal information"
    assert not [item for item in script.received if item[0] == "renewalInfo"]


def test_the_order_names_the_certificate_it_replaces(tmp_path: Path, acme_vars: dict[str, Any]) -> None:
    script = Script()
    with fake_acme(tmp_path, script) as (directory, ca_path):
        session = client.open_session(settings(directory, ca_path, acme_vars), check_mode=False)
        order = client.create_order(session, ("xu01.example.com",), RFC_CERT_ID)
    assert order.replaces_cert_id == RFC_CERT_ID
    assert [payload["replaces"] for path, payload in script.received if path == "/order"] == [RFC_CERT_ID]


def test_an_order_the_ca_refuses_with_replaces_is_sent_again_without(tmp_path: Path, acme_vars: dict[str, Any]) -> None:
    refused: Answer = (400, {"type": "urn:ietf:params:acme:error:malformed", "detail": "replaces: unknown certificate"}, {})
    script = Script(order_answers=[refused])
    with fake_acme(tmp_path, script) as (directory, ca_path):
        session = client.open_session(settings(directory, ca_path, acme_vars), check_mode=False)
        client.create_order(session, ("xu01.example.com",), RFC_CERT_ID)
    sent = [payload for path, payload in script.received if path == "/order"]
    assert [("replaces" in payload) for payload in sent] == [True, False]


def test_the_chosen_time_is_in_the_window_and_stable() -> None:
    window = RenewalWindow.parse({"suggestedWindow": {"start": "2025-01-02T04:00:00Z", "end": "2025-01-03T04:00:00.123456789Z"}})
    chosen = {window.chosen_time(f"id-{n}") for n in range(200)}
    assert all(window.start <= moment < window.end for moment in chosen)
    assert len(chosen) == 200 and window.chosen_time("id-1") == window.chosen_time("id-1")
    assert ari_verdict(window, "id-1", window.start - datetime.timedelta(seconds=1)).due is False
