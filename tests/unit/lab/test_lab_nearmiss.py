"""Certificates planted beside the bound one (xulab.nearmiss): each near miss fails one test that `better` passes.

The certificates are read as the controller reads them (cert_list's DER, key and ACL) and judged with `cryptography`.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from lab.labkit import AgentCall, HostFactory, events, only_result, run

from xulab.errors import LabError
from xulab.host import Host
from xulab.nearmiss import NEAR_MISS_KINDS, PLANT_KINDS, plant
from xulab.scenarios import ADOPT_PROFILES, profile_for

# What makes a certificate one the host could adopt instead of its bound one; `better` has them all.
PROPERTIES = ("names", "private_key", "server_auth", "lab_issuer", "valid_now", "ends_after_bound")
# The one property each near miss lacks (an expired one also ends before a bound certificate that is still valid).
LACKS = {
    "wrong_san": ["names"],
    "no_key": ["private_key"],
    "no_eku": ["server_auth"],
    "other_issuer": ["lab_issuer"],
    "expired": ["valid_now", "ends_after_bound"],
    "not_yet_valid": ["valid_now"],
    "shorter": ["ends_after_bound"],
}


async def store(agent_call: AgentCall, host: Host, name: str = "My") -> dict[str, dict[str, Any]]:
    _result, answer = await agent_call(host, [("cert_list", {"store": name})])
    return {c["thumbprint"]: c for c in only_result(answer)["certificates"]}


def certificate(entry: dict[str, Any]) -> x509.Certificate:
    return x509.load_der_x509_certificate(base64.b64decode(entry["der_b64"]))


def judged(entry: dict[str, Any], bound: dict[str, Any], fqdn: str) -> dict[str, bool]:
    cert, reference = certificate(entry), certificate(bound)
    now = datetime.now(UTC)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    usages = list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    return {
        "names": fqdn in names,
        "private_key": entry["has_private_key"],
        "server_auth": ExtendedKeyUsageOID.SERVER_AUTH in usages,
        "lab_issuer": cert.issuer == reference.issuer,
        "valid_now": cert.not_valid_before_utc <= now <= cert.not_valid_after_utc,
        "ends_after_bound": cert.not_valid_after_utc > reference.not_valid_after_utc,
    }


@pytest.mark.parametrize("kind", PLANT_KINDS)
def test_each_near_miss_lacks_exactly_its_one_property(host_factory: HostFactory, agent_call: AgentCall, kind: str) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            (bound,) = (await store(agent_call, host)).values()
            planted = plant(host, kind)
            listed = await store(agent_call, host)
            assert set(listed) == {bound["thumbprint"], planted["thumbprint"]} and planted["bound_thumbprint"] == bound["thumbprint"]
            entry = listed[str(planted["thumbprint"])]
            verdict = judged(entry, bound, host.fqdn)
            assert [name for name in PROPERTIES if not verdict[name]] == LACKS.get(kind, [])
            # Keys are a new administrator's import: only SYSTEM and Administrators may read them.
            if entry["key"] is not None:
                assert {rule["sid"] for rule in entry["key"]["acl"]} == {"S-1-5-18", "S-1-5-32-544"}
                assert entry["key"]["provider"] == "CNG"
            assert entry["friendly_name"] == host.fqdn
            assert host.state()["planted"] == [{"kind": kind, "thumbprint": planted["thumbprint"]}]
            assert events(host, "cert_add")[-1]["thumbprint"] == planted["thumbprint"]

    run(scenario())


def test_the_distinguishing_details(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            planted = {kind: plant(host, kind) for kind in PLANT_KINDS}
            listed = await store(agent_call, host)
            cert = {kind: certificate(listed[str(p["thumbprint"])]) for kind, p in planted.items()}
            now = datetime.now(UTC)
            usages = list(cert["no_eku"].extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
            assert usages == [ExtendedKeyUsageOID.CLIENT_AUTH]
            assert planted["wrong_san"]["san"] == ["intranet.xulab.test"] and planted["wrong_san"]["subject"] == "CN=intranet.xulab.test"
            assert cert["expired"].not_valid_after_utc < now and cert["not_yet_valid"].not_valid_before_utc > now
            assert listed[str(planted["no_key"]["thumbprint"])]["key"] is None
            # The second root that issued other_issuer is one the host trusts: it is in LocalMachine\Root.
            roots = {certificate(c).subject: certificate(c) for c in (await store(agent_call, host, "Root")).values()}
            assert cert["other_issuer"].issuer in roots and cert["other_issuer"].issuer != cert["better"].issuer
            cert["other_issuer"].verify_directly_issued_by(roots[cert["other_issuer"].issuer])
            # Every planted key is new: no two certificates of the host share one.
            keys = [c.public_key() for c in cert.values()]
            assert all(keys[i] != keys[j] for i in range(len(keys)) for j in range(i))

    run(scenario())


def test_what_cannot_be_planted_is_refused(host_factory: HostFactory) -> None:
    async def scenario() -> None:
        async with host_factory("expired") as host:
            with pytest.raises(LabError, match="no valid certificate can end before it"):
                plant(host, "shorter")
            with pytest.raises(LabError, match="kind must be one of"):
                plant(host, "worse")
            # On an expired host, better still ends after the bound certificate.
            assert plant(host, "better")["not_after"] > host.state()["certificates"][0]["not_after"]

    run(scenario())


def test_the_adopt_scenario_cycles_through_the_near_misses_and_one_haystack() -> None:
    profiles = [profile_for("adopt", index) for index in range(1, 10)]
    assert profiles == [*(f"adopt_{kind}" for kind in NEAR_MISS_KINDS), "adopt_better", "adopt_wrong_san"]
    assert ADOPT_PROFILES[-1] == "adopt_better"


@pytest.mark.parametrize("profile", ["adopt_no_eku", "adopt_better"])
def test_adopt_hosts_carry_their_plants_beside_a_healthy_binding(host_factory: HostFactory, agent_call: AgentCall, profile: str) -> None:
    async def scenario() -> None:
        async with host_factory(profile) as host:
            kinds = [p["kind"] for p in host.state()["planted"]]
            assert kinds == (list(PLANT_KINDS) if profile == "adopt_better" else ["no_eku"])
            assert len(await store(agent_call, host)) == len(kinds) + 1
            assert host.service.state == "Running" and host.service.listeners[-1].thumbprint not in {p["thumbprint"] for p in host.planted}

    run(scenario())
