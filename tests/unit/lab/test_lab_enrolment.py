"""Certificates from the domain's CA: cert_enroll (who may enrol what, pending, denied), auto-enrolment, and the fake's answers.

Everything is observed as the controller observes it (the agent's answers, cert_list's DER and key
ACLs, service_restart) or as the lab's state and events record it.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from lab.labkit import AgentCall, HostFactory, brief, events, only_result, results, run

from support.certs import mint
from support.fake_host import FakeHost
from xulab.accounts import XU_SERVICE_ACCOUNT, sid_of
from xulab.enrolment import autoenrol_renew
from xulab.enterprise_ca import CA_CONFIG, SECOND_CA_CONFIG
from xulab.errors import LabError
from xulab.host import Host
from xulab.xusettings import TLS_SETTINGS

TLS_JSON = "C:\\Program Files\\XtractUniversal\\config\\servers\\tls.json"
RESTART = ("service_restart", {"name": "XtractUniversal Service", "wait_ports": [8165], "timeout_s": 5})
V1_TEMPLATE = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2")
MACHINE_KEY_SIDS = {"S-1-5-18", "S-1-5-32-544"}


def bound(host: Host) -> str:
    value: str = json.loads(host.fs.resolve(TLS_SETTINGS).read_text())["WebServer"]["Certificate"]["Thumbprint"]
    return value


def enrol(template: str = "WebServer", names: tuple[str, ...] = ("xu01.xulab.test", "xu01"), **extra: Any) -> tuple[str, dict[str, Any]]:
    """cert_enroll as the controller sends it: with the CA named (as the machine certreq must not choose it)."""
    return ("cert_enroll", {"template": template, "dns_names": list(names), "ca_config": CA_CONFIG, **extra})


async def listed(agent_call: AgentCall, host: Host, *, include_archived: bool = False, store: str = "My") -> dict[str, dict[str, Any]]:
    _result, answer = await agent_call(host, [("cert_list", {"store": store, "include_archived": include_archived})])
    return {c["thumbprint"]: c for c in only_result(answer)["certificates"]}


def certificate(entry: dict[str, Any]) -> x509.Certificate:
    return x509.load_der_x509_certificate(base64.b64decode(entry["der_b64"]))


def san(cert: x509.Certificate) -> list[str]:
    return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName))


def usages(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def error_of(answer: dict[str, Any] | None) -> dict[str, str]:
    (entry,) = results(answer)
    assert entry["status"] == "error", entry
    return {key: str(value) for key, value in brief(entry["error"]).items()}


# -- enrolment as the machine ----------------------------------------------------------------


def test_the_machine_enrols_a_new_key_that_xu_cannot_read_until_granted(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            old = bound(host)
            before = datetime.now(UTC).replace(microsecond=0)
            _result, answer = await agent_call(host, [enrol(names=(host.fqdn, host.name))])
            enrolled = only_result(answer)
            assert (enrolled["enrolled_as"], enrolled["exit_code"]) == ("machine", 0)
            new = enrolled["thumbprint"]
            assert re.fullmatch(r"[0-9A-F]{40}", new) and f"Thumbprint: {new.lower()}" in enrolled["output"]
            store = await listed(agent_call, host)
            assert set(store) == {old, new}  # the bound certificate is left alone
            entry = store[new]
            cert = certificate(entry)
            assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == host.fqdn
            assert san(cert) == [host.fqdn, host.name] and usages(cert) == [ExtendedKeyUsageOID.SERVER_AUTH]
            assert cert.issuer == certificate(store[old]).issuer
            # AD CS back-dates NotBefore; WebServer's validity is two years.
            assert timedelta(minutes=9) <= before - cert.not_valid_before_utc <= timedelta(minutes=11)
            assert cert.not_valid_after_utc - before - timedelta(days=730) < timedelta(minutes=1)
            named = cert.extensions.get_extension_for_oid(V1_TEMPLATE).value
            assert isinstance(named, x509.UnrecognizedExtension) and named.value[2:].decode("utf-16-be") == "WebServer"
            # A new key, in the RSA SChannel CSP (key_provider's default), which only SYSTEM and Administrators may read.
            public = cert.public_key()
            assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 2048
            assert public != certificate(store[old]).public_key()
            assert entry["has_private_key"] and entry["key"]["provider"] == "CSP"
            assert {rule["sid"] for rule in entry["key"]["acl"]} == MACHINE_KEY_SIDS
            # Bound without a grant, XU cannot start; with one it serves the new certificate.
            text = host.fs.resolve(TLS_SETTINGS).read_text().replace(old, new)
            _result, answer = await agent_call(host, [("file_write", {"path": TLS_JSON, "content": text}), RESTART])
            assert results(answer)[1]["result"]["state"] == "Stopped"
            grant = ("key_grant_read", {"thumbprint": new, "account": sid_of(XU_SERVICE_ACCOUNT)})
            _result, answer = await agent_call(host, [grant, RESTART])
            assert results(answer)[1]["result"]["started"] is True and host.service.listeners[-1].thumbprint == new
            (event,) = events(host, "enrol")
            assert {k: event[k] for k in ("template", "enrolled_as", "account", "disposition", "thumbprint", "exit_code")} == {
                "template": "WebServer", "enrolled_as": "machine", "account": f"XULAB\\{host.name.upper()}$",
                "disposition": "issued", "thumbprint": new, "exit_code": 0,
            }
            # One SYSTEM task for the three certreq steps; the request left LocalMachine\REQUEST when it was accepted.
            assert [e["action"] for e in events(host, "task")] == ["registered", "ran", "removed"]
            assert host.state()["request_certificates"] == [] and await listed(agent_call, host, store="REQUEST") == {}

    run(scenario())


def test_in_the_winrm_logon_certreq_cannot_reach_the_ca_and_its_request_stays(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            store = await listed(agent_call, host)
            _result, answer = await agent_call(host, [enrol(run_as="caller")])
            error = error_of(answer)
            assert error["type"] == "CertreqFailed" and error["message"].startswith("certreq exited with -2146877419: ")
            assert "0x80094015" in error["message"]
            assert await listed(agent_call, host) == store
            # certreq -new ran in the session: its request, with a key, is left in LocalMachine\REQUEST.
            (request,) = (await listed(agent_call, host, store="REQUEST")).values()
            assert request["has_private_key"] is True
            (event,) = events(host, "enrol")
            assert (event["enrolled_as"], event["account"], event["disposition"]) == ("caller", "XULAB\\xuadmin", "failed")
            assert events(host, "task") == []

    run(scenario())


def test_a_template_that_needs_approval_leaves_the_request_pending(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy", pending_templates=("XUApproved",)) as host:
            store = await listed(agent_call, host)
            _result, answer = await agent_call(host, [enrol("XUApproved"), enrol("XUApproved")], stop_on_error=False)
            first, second = (entry["error"] for entry in results(answer))
            assert first["type"] == second["type"] == "EnrollPending"
            ids = [int(re.match(r"request (\d+) is pending at the CA: ", e["message"]).group(1)) for e in (first, second)]  # type: ignore[union-attr]
            assert ids[1] == ids[0] + 1 and "Taken Under Submission" in first["message"]
            assert [e["request_id"] for e in events(host, "enrol")] == ids
            assert {e["disposition"] for e in events(host, "enrol")} == {"pending"}
            assert await listed(agent_call, host) == store
            assert len(await listed(agent_call, host, store="REQUEST")) == 2

    run(scenario())


def test_templates_the_ca_does_not_publish_or_the_host_may_not_enrol_are_denied(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        # WebServer is published (as on every enterprise CA), but the hosts may enrol only XUWeb.
        async with host_factory("healthy", templates=("XUWeb:90",)) as host:
            store = await listed(agent_call, host)
            ops = [enrol("NoSuchTemplate"), enrol("WebServer"), enrol("User")]
            _result, answer = await agent_call(host, ops, stop_on_error=False)
            unknown, denied, user = (entry["error"] for entry in results(answer))
            assert unknown["type"] == "CertreqFailed" and unknown["message"].startswith("certreq exited with -2146875392: ")
            assert "0x80094800" in unknown["message"] and "CERTSRV_E_UNSUPPORTED_CERT_TYPE" in unknown["message"]
            for error in (denied, user):
                assert error["type"] == "CertreqFailed" and error["message"].startswith("certreq exited with -2146877422: ")
                assert "CERTSRV_E_TEMPLATE_DENIED" in error["message"]
            assert await listed(agent_call, host) == store
            assert [e["disposition"] for e in events(host, "enrol")] == ["denied"] * 3
            # AD finds a template by its name whatever its case; this one is valid 90 days and named by its OID.
            _result, answer = await agent_call(host, [enrol("xuweb", ("web.xulab.test",))])
            cert = certificate((await listed(agent_call, host))[only_result(answer)["thumbprint"]])
            assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=90, minutes=10)
            template = cert.extensions.get_extension_for_class(x509.MSCertificateTemplate).value
            assert san(cert) == ["web.xulab.test"] and template.template_id.dotted_string.startswith("1.3.6.1.4.1.311.21.8.")

    run(scenario())


def test_the_ca_is_reached_by_its_config_string_and_a_wrong_one_is_unreachable(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            short = CA_CONFIG.replace(".xulab.test", "").upper()
            _result, answer = await agent_call(host, [enrol(ca_config=CA_CONFIG), enrol(ca_config=short), enrol(ca_config="ca02\\xulab Root CA")],
                                               stop_on_error=False)
            first, second, wrong = results(answer)
            assert first["status"] == second["status"] == "ok"
            assert wrong["error"]["type"] == "CertreqFailed" and wrong["error"]["message"].startswith("certreq exited with -2147023174: ")
            host.faults.set("certreq_fails", "1")
            _result, answer = await agent_call(host, [enrol()])
            assert "RPC_S_SERVER_UNAVAILABLE" in error_of(answer)["message"]

    run(scenario())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"template": 'Web"Server', "dns_names": ["a.test"]}, "template must match ^[A-Za-z0-9 ._-]{1,64}\\z"),
        ({"dns_names": ["a.test"]}, "template must match ^[A-Za-z0-9 ._-]{1,64}\\z"),
        ({"template": "WebServer", "dns_names": []}, "dns_names must be a non-empty list of DNS names"),
        ({"template": "WebServer"}, "dns_names must be a non-empty list of DNS names"),
        ({"template": "WebServer", "dns_names": ["a.test", "not a name"]}, "dns_names must be a non-empty list of DNS names"),
        ({"template": "WebServer", "dns_names": ["a.test"], "ca_config": "ca01 only"},
         "ca_config must match ^[A-Za-z0-9_.-]{1,253}\\\\[A-Za-z0-9 _.()-]{1,64}\\z"),
        ({"template": "WebServer", "dns_names": ["a.test"], "ca_config": "ca01\\100%"},
         "ca_config must match ^[A-Za-z0-9_.-]{1,253}\\\\[A-Za-z0-9 _.()-]{1,64}\\z"),
        ({"template": "WebServer", "dns_names": ["a.test"], "key_length": 1024}, "key_length must be 2048, 3072 or 4096"),
        ({"template": "WebServer", "dns_names": ["a.test"], "run_as": "Machine"}, "run_as must be machine or caller"),
    ],
)
def test_arguments_are_checked_before_certreq_runs(host_factory: HostFactory, agent_call: AgentCall, args: dict[str, Any], message: str) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            _result, answer = await agent_call(host, [("cert_enroll", args)])
            assert error_of(answer) == {"type": "InvalidArgument", "message": message}
            assert events(host, "enrol") == []

    run(scenario())


def test_a_longer_key_is_made_as_asked(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            _result, answer = await agent_call(host, [enrol(key_length=3072)])
            public = certificate((await listed(agent_call, host))[only_result(answer)["thumbprint"]]).public_key()
            assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 3072

    run(scenario(), timeout=60)


def test_faults_reach_enrolment_as_every_primitive(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            store = await listed(agent_call, host)
            host.faults.set("fail_primitive", "cert_enroll")
            _result, answer = await agent_call(host, [enrol()])
            assert error_of(answer)["type"] == "UnauthorizedAccessException"
            assert events(host, "enrol") == [] and await listed(agent_call, host) == store
            # A dropped connection loses the answer, not the enrolment.
            host.faults.set("drop_connection", "cert_enroll")
            result, _answer = await agent_call(host, [enrol()])
            assert result.drop_connection
            (event,) = events(host, "enrol")
            assert event["thumbprint"] in await listed(agent_call, host)

    run(scenario())


# -- auto-enrolment --------------------------------------------------------------------------


def test_autoenrolment_renews_with_a_new_key_and_keeps_the_old_certificate_archived(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            old = bound(host)
            before = await listed(agent_call, host)
            outcome = autoenrol_renew(host)
            assert outcome["old_thumbprint"] == old and outcome["template"] == "WebServer"
            new = str(outcome["new_thumbprint"])
            visible = await listed(agent_call, host)
            assert list(visible) == [new]  # the old one no longer enumerates ...
            everything = await listed(agent_call, host, include_archived=True)
            assert everything[old]["archived"] is True and everything[old]["has_private_key"] is True  # ... but it is kept
            assert everything[old]["key"] == before[old]["key"]
            old_cert, new_cert = certificate(everything[old]), certificate(visible[new])
            assert san(new_cert) == san(old_cert) and new_cert.subject == old_cert.subject
            assert new_cert.public_key() != old_cert.public_key()
            assert {rule["sid"] for rule in visible[new]["key"]["acl"]} == MACHINE_KEY_SIDS
            assert new_cert.not_valid_after_utc - new_cert.not_valid_before_utc == timedelta(days=730, minutes=10)
            # XU is not touched: it serves the old certificate, and cannot start again with it archived.
            assert host.service.listeners[-1].thumbprint == old and bound(host) == old
            _result, answer = await agent_call(host, [RESTART])
            assert only_result(answer)["state"] == "Stopped"
            assert "was not found" in events(host, "service")[-1]["reason"]
            (event,) = events(host, "autoenrol")
            assert (event["old_thumbprint"], event["new_thumbprint"]) == (old, new)
            assert events(host, "cert_archive")[-1]["thumbprint"] == old

    run(scenario())


def test_autoenrolment_keeps_the_template_and_needs_the_right_to_enrol_it(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy", templates=("XUWeb:30",)) as host:
            with pytest.raises(LabError, match="may not enrol template WebServer"):
                autoenrol_renew(host)
            assert all(not c["archived"] for c in host.state()["certificates"])
            _result, answer = await agent_call(host, [enrol("XUWeb", (host.fqdn, host.name))])
            enrolled = only_result(answer)["thumbprint"]
            text = host.fs.resolve(TLS_SETTINGS).read_text().replace(bound(host), enrolled)
            host.fs.resolve(TLS_SETTINGS).write_text(text)
            outcome = autoenrol_renew(host)
            assert (outcome["old_thumbprint"], outcome["template"]) == (enrolled, "XUWeb")
            new = certificate((await listed(agent_call, host))[str(outcome["new_thumbprint"])])
            assert new.not_valid_after_utc - new.not_valid_before_utc == timedelta(days=30, minutes=10)

    run(scenario())


# -- the fake host answers as the lab does -----------------------------------------------------


def test_the_fake_enrols_as_the_lab_does(host_factory: HostFactory, agent_call: AgentCall) -> None:
    cases = [enrol(), enrol(run_as="caller"), enrol("XUApproved"), enrol("NoSuchTemplate")]

    async def lab_answers() -> list[dict[str, Any]]:
        async with host_factory("healthy", pending_templates=("XUApproved",)) as host:
            _result, answer = await agent_call(host, cases, stop_on_error=False)
            return results(answer)

    fake = FakeHost(pending_templates={"XUApproved"}, ca_configs=[CA_CONFIG])
    fake.add_certificate(mint("xu01.xulab.test")[0])
    ops = [{"id": i, "op": op, "args": a} for i, (op, a) in enumerate(cases, 1)]
    request = {"agent": "# xtractuniversal.tls agent 1\n", "request": {"protocol": 1, "stop_on_error": False, "ops": ops}}
    _rc, stdout, _stderr = fake.transport("PowerShell -NoProfile -NonInteractive -ExecutionPolicy Unrestricted -EncodedCommand x",
                                          json.dumps(request).encode())
    faked = json.loads(stdout)["results"]

    def shape(entry: dict[str, Any]) -> tuple[str, object]:
        if entry["status"] == "ok":
            return "ok", sorted(entry["result"])
        return "error", entry["error"]["type"]

    assert [shape(e) for e in faked] == [shape(e) for e in run(lab_answers())]
    (new,) = [c for c in fake.certificates if c["thumbprint"] == faked[0]["result"]["thumbprint"]]
    assert {rule["sid"] for rule in new["key"]["acl"]} == MACHINE_KEY_SIDS


# -- the key's provider, the CA, certreq's translated labels (issue 21) -------------------------------------


@pytest.mark.parametrize(("provider", "kind"), [(None, "CSP"), ("schannel_csp", "CSP"), ("software_ksp", "CNG")])
def test_the_key_is_made_by_the_provider_asked_for(host_factory: HostFactory, agent_call: AgentCall, provider: str | None, kind: str) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            extra: dict[str, Any] = {} if provider is None else {"key_provider": provider}
            _result, answer = await agent_call(host, [enrol(**extra)])
            new = only_result(answer)["thumbprint"]
            assert (await listed(agent_call, host))[new]["key"]["provider"] == kind
            _result, answer = await agent_call(host, [enrol(key_provider="Microsoft Strong Cryptographic Provider")])
            assert error_of(answer) == {"type": "InvalidArgument", "message": "key_provider must be schannel_csp or software_ksp"}

    run(scenario())


def test_as_the_machine_certreq_never_chooses_the_ca_and_ca_list_names_them(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            # certreq without -config would ask on a desktop the SYSTEM task does not have: refused before anything runs.
            _result, answer = await agent_call(host, [enrol(ca_config=None)])
            assert error_of(answer) == {"type": "InvalidArgument", "message": "ca_config is required as the machine (ca_list names the CAs)"}
            assert events(host, "enrol") == [] and host.state()["request_certificates"] == []
            # The forest's CAs, read as the machine in a SYSTEM task of its own.
            host.faults.set("enterprise_cas", "2")
            _result, answer = await agent_call(host, [("ca_list", {})])
            cas = only_result(answer)["cas"]
            assert [ca["config"] for ca in cas] == [CA_CONFIG, SECOND_CA_CONFIG] and all("WebServer" in ca["templates"] for ca in cas)
            assert [e["action"] for e in events(host, "task")][-3:] == ["registered", "ran", "removed"]
            # Each issues what it is asked for: the second one through the lab's issuing CA.
            _result, answer = await agent_call(host, [enrol(ca_config=SECOND_CA_CONFIG)])
            issued = certificate((await listed(agent_call, host))[only_result(answer)["thumbprint"]])
            assert issued.issuer.rfc4514_string() == "CN=xulab Issuing CA,O=xulab"

    run(scenario())


def test_a_pending_request_is_found_whatever_certreqs_label_is(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy", pending_templates=("XUApproved",)) as host:
            host.faults.set("certreq_language", "de")
            _result, answer = await agent_call(host, [enrol("XUApproved")])
            error = error_of(answer)
            assert error["type"] == "EnrollPending" and error["message"].startswith("request 1000 is pending at the CA: ")
            assert "RequestId" not in error["message"] and 'Anforderungs-ID: "1000"' in error["message"]

    run(scenario())
