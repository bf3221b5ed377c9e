"""xu_renew_mode acme in the renewal engine: the CA's verdict decides, the order step orders before the host is touched,
and no secret (the account key, the TSIG secret, the ordered PFX's password) reaches a result.

The CA is in memory (support/fake_ca.py); tests/integration/test_acme_*.py run the same against pebble and BIND.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from support.action import run_action
from support.engine_host import EngineHost, engine_host
from support.fake_ca import ACCOUNT_KEY, ACME_VARIABLES, TSIG_SECRET, FakeCa, fake_ca
from support.fake_swap import FQDN


def options(**extra: Any) -> dict[str, Any]:
    return {"xu_renew_mode": "acme", "xu_renew_strategy": "minimal_outage", "xu_renew_fqdn": FQDN, **extra}


def renew(host: EngineHost, ca: FakeCa, *, check_mode: bool = False, acme: dict[str, Any] | None = None,
          **extra: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The assessment and the act phase of one run, the act phase's remote calls counted."""
    given = {"options": options(**extra), "acme": ACME_VARIABLES if acme is None else acme, "run_id": "acme-run"}
    with fake_ca(ca):
        host.arm(None)
        assessment = run_action("xu_renew", {"phase": "assess", **given}, host, check_mode=check_mode)
        if assessment.get("failed") or assessment["action"] != "renew":
            return assessment, {}
        host.arm(None)
        acted = run_action("xu_renew", {"phase": "act", "assessment": assessment, **given}, host, check_mode=check_mode)
        acted["calls"] = list(host.recorded)
    return assessment, acted


def served_der(host: EngineHost) -> bytes:
    served = host.served[8165]
    assert served is not None
    return bytes(served.public_bytes(Encoding.DER))


def test_the_ca_s_verdict_decides_whatever_the_days_left() -> None:
    # 200 days left, but the CA moved the window into the past (a revocation): due at once.
    host, _old = engine_host(old_days_left=200)
    assessment, acted = renew(host, FakeCa(due=True))
    assert assessment["action"] == "renew" and "the CA's renewal window is open" in assessment["plan"]["reason"], assessment["plan"]
    assert acted["summary"]["result"] == "renewed"
    # 10 days left, fewer than xu_renew_before_days, but the CA suggests a later time: not due.
    host, _old = engine_host(old_days_left=10)
    assessment, _acted = renew(host, FakeCa(due=False))
    assert assessment["action"] == "none" and assessment["summary"]["result"] == "not_due"
    assert "the CA suggests renewing from" in assessment["summary"]["reason"]


def test_without_renewal_information_the_days_decide_and_the_reason_says_why() -> None:
    host, _old = engine_host(old_days_left=200)
    assessment, _acted = renew(host, FakeCa(due=None))
    assert assessment["summary"]["result"] == "not_due"
    assert assessment["summary"]["reason"].endswith("(the CA offers no renewal information)"), assessment["summary"]
    host, _old = engine_host(old_days_left=10)
    assessment, acted = renew(host, FakeCa(due=None))
    assert assessment["action"] == "renew" and acted["summary"]["result"] == "renewed"


def test_the_ca_is_asked_about_the_served_certificate_and_the_order_replaces_it() -> None:
    host, _old = engine_host()
    before = served_der(host)
    ca = FakeCa()
    _assessment, acted = renew(host, ca, xu_renew_strategy="minimal_outage")
    assert ca.asked_about and set(ca.asked_about) == {before}
    assert len(ca.orders) == 1 and ca.orders[0][1] == "aki.serial"
    # The host's name and the served certificate's names, but the short one no CA issues for.
    assert ca.orders[0][0] == (FQDN,) and acted["acme"]["assessment"]["left_out"] == ["xu01"]
    order = acted["acme"]["order"]
    assert order["replaces"] == "aki.serial" and order["names"] == list(ca.orders[0][0])
    assert [step["step"] for step in acted["steps"]][:2] == ["order", "install"]
    # The order step is the controller's: no remote call of its own.
    assert acted["steps"][0]["calls"] == 0 and acted["steps"][0]["outcome"] == "ok"
    assert served_der(host) != before


def test_a_host_variable_names_what_is_ordered() -> None:
    host, _old = engine_host()
    ca = FakeCa()
    renew(host, ca, acme={**ACME_VARIABLES, "xu_renew_acme_names": [FQDN, "xu-alias.example.com"]})
    assert ca.orders[0][0] == (FQDN, "xu-alias.example.com")


def test_a_refused_order_fails_the_host_before_it_is_touched() -> None:
    host, _old = engine_host()
    files, certificates = dict(host.files), list(host.certificates)
    _assessment, acted = renew(host, FakeCa(refuse="The CA refused xu01.example.com: rejectedIdentifier"))
    summary = acted["summary"]
    assert summary["result"] == "failed" and summary["failed_step"] == "order", summary
    assert "rejectedIdentifier" in summary["reason"] and "nothing had been changed" in summary["reason"], summary
    # Not one remote call: the recovery had nothing to read back.
    assert acted["calls"] == [] and [step["step"] for step in acted["steps"]] == ["order"]
    assert (dict(host.files), list(host.certificates)) == (files, certificates) and host.journals == {}


def test_check_mode_proves_the_order_possible_and_orders_nothing() -> None:
    host, _old = engine_host()
    files = dict(host.files)
    ca = FakeCa()
    _assessment, acted = renew(host, ca, check_mode=True)
    assert acted["summary"]["result"] == "would_renew" and acted["acme"]["dry_run"]["names"]
    assert ca.dry_runs == 1 and ca.orders == [] and acted["calls"] == [] and dict(host.files) == files
    # A session in check mode only looks the account up.
    assert all(ca.sessions)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("xu_renew_acme_directory", "http://ca.example.test/directory"), ("xu_renew_acme_account_key", "not a key"),
     ("xu_renew_acme_tsig_algorithm", "md5"), ("xu_renew_acme_names", 42)],
)
def test_a_wrong_acme_variable_is_named_and_the_host_is_not_contacted(variable: str, value: Any) -> None:
    host, _old = engine_host()
    assessment, _acted = renew(host, FakeCa(), acme={**ACME_VARIABLES, variable: value})
    assert assessment["failed"] and variable in assessment["msg"], assessment
    assert host.recorded == []


def test_no_secret_reaches_a_result() -> None:
    host, _old = engine_host()
    ca = FakeCa()
    assessment, acted = renew(host, ca)
    _dry_assessment, dry = renew(engine_host()[0], FakeCa(), check_mode=True)
    wrong, _none = renew(engine_host()[0], FakeCa(), acme={**ACME_VARIABLES, "xu_renew_acme_directory": ACCOUNT_KEY})
    text = json.dumps([assessment, acted, dry, wrong])
    assert acted["summary"]["result"] == "renewed" and ca.passwords
    for secret in (ACCOUNT_KEY, TSIG_SECRET, *ca.passwords):
        assert secret not in text
    # Not even one line of the key.
    assert not any(line in text for line in ACCOUNT_KEY.splitlines()[1:-1])
