"""xu_cert_swap's enrolment as the controller decides it from what the host reports: the CA, the key's provider, leftovers.

certreq -submit without -config asks on a desktop which CA to use, and the SYSTEM task it runs in has none: the
controller names the CA, from enroll.ca_config or from the host's list of the forest's enterprise CAs (ca_list).
"""

from __future__ import annotations

from typing import Any

from support.action import run_action
from support.fake_host import FAKE_CA_CONFIG
from support.fake_swap import FQDN, swap_host

SECOND_CA = "ca02.example.com\\Example Issuing CA 2"


def ops_of(calls: list[list[dict[str, Any]]]) -> list[list[str]]:
    return [[op["op"] for op in call] for call in calls]


def test_several_cas_publishing_the_template_need_ca_config_and_nothing_is_enrolled() -> None:
    host, old, _cert = swap_host()
    host.ca_configs = [FAKE_CA_CONFIG, SECOND_CA]
    before = dict(host.files)
    result = run_action("xu_cert_swap", {"old_thumbprint": old, "enroll": {"template": "WebServer"}, "fqdn": FQDN, "grant_key_access": True}, host)
    assert result["failed"] is True
    assert result["msg"] == (
        f"Several enterprise CAs publish the template WebServer: {FAKE_CA_CONFIG}, {SECOND_CA}; set enroll.ca_config to one of them."
        " Nothing was changed"
    )
    assert ops_of(host.calls)[1:] == [["ca_list"]] and host.enrol_requests == 0 and host.files == before
    # Named, it is used as it is, without asking the host.
    args = {"old_thumbprint": old, "enroll": {"template": "WebServer", "ca_config": SECOND_CA}, "fqdn": FQDN, "grant_key_access": True}
    chosen = run_action("xu_cert_swap", args, host)
    assert not chosen.get("failed"), chosen
    enrolments = [op for call in host.calls for op in call if op["op"] == "cert_enroll"]
    assert [op["args"]["ca_config"] for op in enrolments] == [SECOND_CA]
    assert sum(op == ["ca_list"] for op in ops_of(host.calls)) == 1


def test_the_key_provider_defaults_to_the_schannel_csp_and_can_be_the_ksp() -> None:
    for given, sent in ((None, "schannel_csp"), ("software_ksp", "software_ksp")):
        host, old, _cert = swap_host()
        enroll = {"template": "WebServer"} | ({} if given is None else {"key_provider": given})
        result = run_action("xu_cert_swap", {"old_thumbprint": old, "enroll": enroll, "fqdn": FQDN, "grant_key_access": True}, host)
        assert not result.get("failed"), result
        (enrolment,) = [op for call in host.calls for op in call if op["op"] == "cert_enroll"]
        assert enrolment["args"]["key_provider"] == sent
    host, old, _cert = swap_host()
    refused = run_action("xu_cert_swap", {"old_thumbprint": old, "enroll": {"template": "WebServer", "key_provider": "cng"}}, host)
    assert refused["failed"] is True and "key_provider" in refused["msg"] and host.calls == []


def test_leftovers_the_host_could_not_sweep_are_a_warning() -> None:
    host, old, _cert = swap_host()
    answer = host.op_cert_enroll

    def enrol_with_a_failed_sweep(args: dict[str, Any]) -> dict[str, Any]:
        result = answer(args)
        result["sweep_error"] = {"type": "UnauthorizedAccessException", "message": "Access is denied.",
                                 "exception": "System.UnauthorizedAccessException", "hresult": -2147024891}
        return result

    host.op_cert_enroll = enrol_with_a_failed_sweep  # type: ignore[method-assign]
    result = run_action("xu_cert_swap", {"old_thumbprint": old, "enroll": {"template": "WebServer"}, "fqdn": FQDN, "grant_key_access": True}, host)
    assert not result.get("failed"), result
    assert any("'xtractuniversal.tls certreq ...' that interrupted runs left behind could not be removed" in w for w in result["warnings"])
