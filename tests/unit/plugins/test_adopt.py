"""Adopting a certificate already in LocalMachine\\My: the rule each near miss fails, and xu_cert_swap's new_thumbprint: auto."""

from __future__ import annotations

import datetime
from dataclasses import replace
from typing import Any

import pytest

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import XuError
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._engine import sequence_of
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._adopt import AdoptionRules, Candidate, adoption_in_report, choose, why_not
from support import renew_decisions as renew
from support.action import run_action
from support.certs import mint
from support.fake_swap import FQDN, swap_host
from support.renew_decisions import parse_plan

NOW = datetime.datetime(2026, 11, 29, 12, 0, tzinfo=datetime.timezone.utc)
BOUND_EXPIRES = NOW + datetime.timedelta(days=20)
RULES = AdoptionRules(fqdn="xu01.example.com")
BETTER = Candidate(
    thumbprint="B" * 40, subject="CN=xu01.example.com", issuer="CN=R11, O=Let's Encrypt, C=US",
    not_before=NOW - datetime.timedelta(days=1), not_after=NOW + datetime.timedelta(days=89),
    dns_names=("xu01.example.com",), server_auth=True, has_private_key=True, covers_fqdn=True,
)

NEAR_MISSES = {
    "no_key": (replace(BETTER, has_private_key=False), "it has no private key in the store"),
    "not_yet_valid": (replace(BETTER, not_before=NOW + datetime.timedelta(hours=1)), "it is not valid before 2026-11-29T13:00:00Z"),
    "expired": (replace(BETTER, not_after=NOW - datetime.timedelta(seconds=1)), "it expired 2026-11-29T11:59:59Z"),
    "no_eku": (replace(BETTER, server_auth=False), "it lacks the Server Authentication EKU"),
    "wrong_san": (replace(BETTER, covers_fqdn=False, dns_names=("other.example.com",)), "its SAN does not name xu01.example.com"),
    "shorter": (replace(BETTER, not_after=BOUND_EXPIRES), "it does not expire later than the bound certificate (2026-12-19T12:00:00Z)"),
}


@pytest.mark.parametrize("kind", sorted(NEAR_MISSES))
def test_each_near_miss_is_passed_over_with_its_reason(kind: str) -> None:
    candidate, reason = NEAR_MISSES[kind]
    assert why_not(candidate, BOUND_EXPIRES, RULES, NOW) == reason
    adoption = choose([candidate], "A" * 40, BOUND_EXPIRES, RULES, NOW)
    assert adoption.chosen is None and adoption.to_result()["passed_over"] == [{"thumbprint": "B" * 40, "subject": "CN=xu01.example.com", "reason": reason}]


def test_the_issuer_and_the_days_left_are_checked_when_asked() -> None:
    other_ca = AdoptionRules.from_options("xu01.example.com", "o=let's encrypt", None)
    assert why_not(BETTER, BOUND_EXPIRES, other_ca, NOW) is None  # case-insensitive search
    corporate = AdoptionRules.from_options("xu01.example.com", "^CN=Corp Issuing CA", None)
    assert why_not(BETTER, BOUND_EXPIRES, corporate, NOW) == "its issuer \"CN=R11, O=Let's Encrypt, C=US\" does not match '^CN=Corp Issuing CA'"
    assert why_not(BETTER, BOUND_EXPIRES, AdoptionRules.from_options("xu01.example.com", None, 89), NOW) is None
    assert why_not(BETTER, BOUND_EXPIRES, AdoptionRules.from_options("xu01.example.com", None, 90), NOW) == "it has fewer than 90 days left"


def test_an_unknown_host_name_adopts_nothing() -> None:
    assert why_not(replace(BETTER, covers_fqdn=None), BOUND_EXPIRES, AdoptionRules(fqdn=None), NOW) == (
        "the host's name is not known, so its SAN cannot be checked (set fqdn)"
    )


@pytest.mark.parametrize(
    ("issuer", "days", "message"),
    [
        ("(", None, "adopt_issuer '(' is not a regular expression"),
        (None, "soon", "adopt_min_days must be a number of days, not 'soon'"),
        (None, -1, "adopt_min_days must be from 0 to 3650 days, not -1"),
    ],
)
def test_bad_rules_name_their_option(issuer: Any, days: Any, message: str) -> None:
    with pytest.raises(XuError, match=message.replace("(", r"\(")):
        AdoptionRules.from_options("xu01.example.com", issuer, days)


def test_the_one_that_expires_last_wins_whatever_the_order() -> None:
    later = replace(BETTER, thumbprint="C" * 40, not_after=BETTER.not_after + datetime.timedelta(days=1))
    for order in ([BETTER, later], [later, BETTER]):
        adoption = choose(order, "A" * 40, BOUND_EXPIRES, RULES, NOW)
        assert adoption.chosen == later
        assert adoption.to_result()["passed_over"] == [{"thumbprint": "B" * 40, "subject": "CN=xu01.example.com", "reason": f"{'C' * 40} expires later"}]
    # Without the bound certificate in the store (win-acme deleted it), any certificate that qualifies will do.
    assert choose([replace(BETTER, not_after=NOW + datetime.timedelta(days=1))], "A" * 40, None, RULES, NOW).chosen is not None


def test_a_report_entry_makes_the_same_candidate() -> None:
    entry = {
        "thumbprint": "b" * 40, "subject": BETTER.subject, "issuer": BETTER.issuer, "not_before": "2026-11-28T12:00:00Z",
        "not_after": "2027-02-26T12:00:00Z", "dns_names": ["xu01.example.com"], "server_auth": True, "has_private_key": True,
        "san_covers_fqdn": True,
    }
    assert Candidate.from_report(entry) == BETTER
    assert Candidate.from_report({**entry, "not_after": None}) is None


# -- xu_cert_swap, new_thumbprint: auto -----------------------------------------------------------


def adopt_host() -> tuple[Any, str, dict[str, str]]:
    """The bound certificate (20 days left), a better one, and a near miss of each kind the fake can hold."""
    host, old, _cert = swap_host(old_days_left=20)
    planted = {}
    better, key = mint(FQDN, sans=(FQDN,), days_left=89, valid_from_days_ago=1)
    planted["better"] = host.add_keyed(better, key)
    wrong_san, key = mint("other.example.com", days_left=300)
    planted["wrong_san"] = host.add_keyed(wrong_san, key)
    planted["no_key"] = host.add_certificate(mint(FQDN, days_left=300)[0], has_private_key=False)
    no_eku, key = mint(FQDN, days_left=300, server_auth=False)
    planted["no_eku"] = host.add_keyed(no_eku, key)
    expired, key = mint(FQDN, days_left=-1, valid_from_days_ago=90)
    planted["expired"] = host.add_keyed(expired, key)
    future, key = mint(FQDN, days_left=300, valid_from_days_ago=-1)
    planted["not_yet_valid"] = host.add_keyed(future, key)
    shorter, key = mint(FQDN, days_left=10)
    planted["shorter"] = host.add_keyed(shorter, key)
    return host, old, planted


def test_auto_adopts_the_better_certificate_in_check_mode_for_real_and_then_not_again() -> None:
    host, old, planted = adopt_host()
    before = dict(host.files)
    args = {"old_thumbprint": old, "new_thumbprint": "auto", "fqdn": FQDN, "grant_key_access": True, "remove_old": True}
    checked = run_action("xu_cert_swap", args, host, check_mode=True)
    assert checked["changed"] is True and checked["new_thumbprint"] == planted["better"] and host.files == before
    assert checked["adoption"]["chosen"] == planted["better"]
    reasons = {entry["thumbprint"]: entry["reason"] for entry in checked["adoption"]["passed_over"]}
    assert {kind for kind, thumbprint in planted.items() if thumbprint in reasons} == set(planted) - {"better"}

    done = run_action("xu_cert_swap", args, host)
    assert not done.get("failed"), done
    assert done["changed"] is True and done["new_thumbprint"] == planted["better"] and done["removed_old"] is True
    assert planted["better"] in (host.file("config\\servers\\tls.json") or "") and old not in host.thumbprints()

    # The next scheduled run: the adopted certificate is bound, nothing in the store is better.
    again = run_action("xu_cert_swap", {**args, "old_thumbprint": planted["better"]}, host)
    assert not again.get("failed"), again
    assert again["changed"] is False and again["adoption"]["chosen"] is None and again["new_thumbprint"] is None


def test_auto_without_a_better_certificate_changes_nothing_unless_the_old_one_is_unusable() -> None:
    host, old, _cert = swap_host(old_days_left=20)
    shorter, key = mint(FQDN, days_left=10)
    host.add_keyed(shorter, key)
    before = dict(host.files)
    result = run_action("xu_cert_swap", {"old_thumbprint": old, "new_thumbprint": "AUTO"}, host)
    assert not result.get("failed") and result["changed"] is False and host.files == before
    assert len(host.calls) == 1  # the read, nothing more

    # win-acme deleted the bound certificate: any certificate that qualifies beats one that is gone.
    host.certificates = [c for c in host.certificates if c["thumbprint"] != old]
    result = run_action("xu_cert_swap", {"old_thumbprint": old, "new_thumbprint": "auto", "grant_key_access": True}, host)
    assert not result.get("failed"), result
    assert result["changed"] is True and result["adoption"]["chosen"] == result["new_thumbprint"] != old

    # Gone, and nothing in the store can take its place: an error, and nothing changed.
    host, old, _cert = swap_host(old_days_left=20)
    wrong_san, key = mint("other.example.com", days_left=300)
    host.add_keyed(wrong_san, key)
    host.certificates = [c for c in host.certificates if c["thumbprint"] != old]
    before = dict(host.files)
    result = run_action("xu_cert_swap", {"old_thumbprint": old, "new_thumbprint": "auto"}, host)
    assert result["failed"] is True and host.files == before and len(host.calls) == 1
    assert f"The old certificate {old} is not in LocalMachine\\My, so the next restart fails" in result["msg"]
    assert "its SAN does not name xu01.example.com" in result["msg"] and result["adoption"]["chosen"] is None


def test_adopt_options_need_auto() -> None:
    host, old, _cert = swap_host()
    result = run_action("xu_cert_swap", {"old_thumbprint": old, "new_thumbprint": "A" * 40, "adopt_min_days": 30}, host)
    assert result["failed"] is True and result["msg"] == "adopt_issuer and adopt_min_days only apply with new_thumbprint: auto"
    assert host.calls == []


def test_the_role_chooses_from_the_report_what_the_module_chooses_on_the_host() -> None:
    host, old, planted = adopt_host()
    report = run_action("xu_tls_info", {"fqdn": FQDN}, host)
    from_report = adoption_in_report(report, None, None, datetime.datetime.now(datetime.timezone.utc))
    on_host = run_action("xu_cert_swap", {"old_thumbprint": old, "new_thumbprint": "auto", "fqdn": FQDN}, host, check_mode=True)
    assert from_report.chosen is not None and from_report.chosen.thumbprint == planted["better"] == on_host["adoption"]["chosen"]
    assert from_report.to_result()["passed_over"] == on_host["adoption"]["passed_over"]
    with pytest.raises(XuError, match="xu_renew_adopt_min_days must be from 0 to 3650 days"):
        adoption_in_report(report, None, 4000, NOW)


# -- xu_cert_swap, enroll ---------------------------------------------------------------------------


def test_enroll_recovers_an_expired_certificate_with_a_new_key_check_mode_first() -> None:
    host, old, _cert = swap_host(old_days_left=-3)  # expired: AD CS would refuse to renew it with its key
    before = dict(host.files)
    args = {"old_thumbprint": old, "enroll": {"template": "WebServer"}, "fqdn": FQDN, "grant_key_access": True}
    checked = run_action("xu_cert_swap", args, host, check_mode=True)
    assert checked["changed"] is True and checked["enrolled"] is True and host.files == before and host.enrol_requests == 0

    calls = len(host.calls)
    done = run_action("xu_cert_swap", args, host)
    assert not done.get("failed"), done
    new = done["new_thumbprint"]
    assert done["enrolled"] is True and done["key_access_granted"] is True and new != old and host.enrol_requests == 1
    # Three calls after the read: which CA publishes the template (none was given), the enrolment (with the store listed
    # again), then the swap, which checks the enrolled certificate is still there and grants its key before it writes.
    assert [[op["op"] for op in call][:3] for call in host.calls[calls + 1:]] == [
        ["ca_list"], ["cert_enroll", "cert_list"], ["cert_check", "key_grant_read", "file_write"]]
    expected = {"template": "WebServer", "ca_config": host.ca_configs[0], "dns_names": [FQDN], "key_length": 2048, "key_provider": "schannel_csp",
                "run_as": "machine", "timeout_s": 300}
    assert host.calls[calls + 2][0]["args"] == expected
    assert new in (host.file("config\\servers\\tls.json") or "") and old in host.thumbprints()  # kept: remove_old is false


@pytest.mark.parametrize(
    ("template", "message", "pending"),
    [
        ("Approval", "Enrolling a new certificate from the template Approval failed; nothing was changed: request 1001 is pending", True),
        ("Unknown", "No enterprise CA of the forest publishes the template Unknown", None),
    ],
)
def test_an_enrolment_the_ca_does_not_answer_changes_nothing(template: str, message: str, pending: bool | None) -> None:
    host, old, _cert = swap_host()
    host.pending_templates = {"Approval"}
    before = dict(host.files)
    result = run_action("xu_cert_swap", {"old_thumbprint": old, "enroll": {"template": template}, "fqdn": FQDN}, host)
    assert result["failed"] is True and result["msg"].startswith(message) and result.get("pending") is pending
    assert host.files == before and len(host.calls) == (3 if pending else 2)


@pytest.mark.parametrize(
    ("enroll", "message"),
    [
        ({"template": "Web;Server"}, "enroll.template 'Web;Server' must be a template's name"),
        ({"template": "WebServer", "ca_config": "ca01"}, "enroll.ca_config 'ca01' must be the CA as host\\CA name"),
        ({"template": "WebServer", "dns_names": ["bad host!"]}, "enroll.dns_names entry 'bad host!' is not a DNS name"),
    ],
)
def test_bad_enrolment_options_fail_before_any_remote_call(enroll: dict[str, Any], message: str) -> None:
    host, old, _cert = swap_host()
    result = run_action("xu_cert_swap", {"old_thumbprint": old, "enroll": enroll}, host)
    assert result["failed"] is True and message in result["msg"] and host.calls == []
    both = run_action("xu_cert_swap", {"old_thumbprint": old, "enroll": {"template": "WebServer"}, "new_thumbprint": "auto"}, host)
    assert both["msg"] == "Invalid arguments: parameters are mutually exclusive: new_thumbprint|pfx_path|pfx_content|enroll"


# -- the renew role's plan in adopt and enroll modes ------------------------------------------------


def test_adopt_mode_renews_a_host_with_a_better_certificate_whatever_its_expiry() -> None:
    host, _old, planted = adopt_host()
    report = run_action("xu_tls_info", {"fqdn": FQDN}, host)
    planned = renew.renew_plan(report, "adopt", strategy="minimal_outage", before_days=5, run_id="r1")
    assert planned["action"] == "renew" and planned["status"] == "due" and sequence_of(parse_plan(planned)) == "new_certificate"
    assert (planned["source"], planned["new_thumbprint"], planned["remove_old"]) == ("thumbprint", planted["better"], True)
    assert planned["reason"].startswith(f"{planted['better']} in LocalMachine\\My can replace it (expires ")


def test_adopt_mode_without_a_better_certificate_is_not_due_or_blocked_when_the_bound_one_is() -> None:
    host, old, planted = adopt_host()
    host.certificates = [c for c in host.certificates if c["thumbprint"] != planted["better"]]
    report = run_action("xu_tls_info", {"fqdn": FQDN}, host)
    quiet = renew.renew_plan(report, "adopt", before_days=5, run_id="r1")
    assert (quiet["action"], quiet["status"]) == ("none", "not_due")
    assert quiet["reason"] == f"no certificate in LocalMachine\\My is better than the bound {old}"
    due = renew.renew_plan(report, "adopt", before_days=30, run_id="r1")  # 20 days left: due, nothing to adopt
    assert due["action"] == "blocked" and "no certificate in LocalMachine\\My can replace it (" in due["reason"]
    assert "its SAN does not name xu01.example.com" in due["reason"] and "it has no private key in the store" in due["reason"]


def test_enroll_mode_plans_the_swap_options_and_needs_a_template() -> None:
    host, _old, _cert = swap_host(old_days_left=-3)
    report = run_action("xu_tls_info", {"fqdn": FQDN}, host)
    planned = renew.renew_plan(report, "enroll", template="WebServer", extra_dns_names=["XU.example.com", FQDN], run_id="r1")
    assert planned["action"] == "renew" and planned["source"] == "enroll" and sequence_of(parse_plan(planned)) == "new_certificate"
    assert planned["enroll"] == {"template": "WebServer", "ca_config": None, "dns_names": [FQDN, "xu.example.com"], "key_provider": "schannel_csp"}
    blocked = renew.renew_plan(report, "enroll", run_id="r1")
    assert blocked["action"] == "blocked" and blocked["reason"].endswith("enroll mode needs the AD CS template to enrol from: set xu_renew_template")
    # reuse_key cannot renew this expired certificate; enroll can.
    assert "a CA refuses to renew an expired certificate" in renew.renew_plan(report, "reuse_key", run_id="r1")["reason"]
