"""The renew role's dry run refuses, before anything is written, the PFX the swap would refuse, in the role's words."""

from __future__ import annotations

import base64
import pathlib
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._precheck import role_wording
from support.certs import mint
from support.fake_swap import CA_CERTIFICATE, FQDN, make_pfx
from support.renew_decisions import renew_precheck

PASSWORD = "pfx-Secret-42"  # noqa: S105 - a test value
OLD = "A" * 40


def plan(source: str = "pfx", **extra: Any) -> dict[str, Any]:
    return {"action": "renew", "reason": "expires in 9 days", "source": source, "old_thumbprint": OLD, "fqdn": FQDN, "pfx_path": "certs/xu01.pfx", **extra}


def write(tmp_path: pathlib.Path, data: bytes, name: str = "xu01.pfx") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def good_pfx(**mint_args: Any) -> bytes:
    return make_pfx(*mint(FQDN, **mint_args), PASSWORD)


def checked(tmp_path: pathlib.Path, data: bytes, **options: Any) -> dict[str, Any]:
    return renew_precheck(plan(), pfx_path=write(tmp_path, data), pfx_password=options.pop("pfx_password", PASSWORD), **options)


def test_a_good_pfx_leaves_the_plan_as_it_is(tmp_path: pathlib.Path) -> None:
    assert checked(tmp_path, good_pfx()) == plan()


@pytest.mark.parametrize(
    ("make", "options", "expected"),
    [
        (good_pfx, {"pfx_password": ""}, "xu_renew_pfx_password"),
        (good_pfx, {"pfx_password": "wrong"}, "password (xu_renew_pfx_password) is wrong"),
        (lambda: good_pfx(sans=("xu09.example.com",)), {}, f"does not name {FQDN}"),
        (lambda: good_pfx(server_auth=False), {}, "Server Authentication"),
        (lambda: good_pfx(days_left=-1, valid_from_days_ago=400), {}, "expired"),
        (lambda: make_pfx(mint(FQDN)[0], None, PASSWORD), {}, "no private key"),
    ],
    ids=["no password", "wrong password", "another host", "no server auth", "expired", "no key"],
)
def test_what_the_swap_refuses_blocks_the_host(tmp_path: pathlib.Path, make: Any, options: dict[str, Any], expected: str) -> None:
    result = checked(tmp_path, make(), **options)
    assert result["action"] == "blocked"
    assert expected in result["reason"]
    assert result["reason"].startswith("expires in 9 days; the new certificate cannot be used: ")
    assert PASSWORD not in result["reason"]


def test_strict_san_off_lets_another_host_s_certificate_through(tmp_path: pathlib.Path) -> None:
    assert checked(tmp_path, good_pfx(sans=("xu09.example.com",)), strict_san=False)["action"] == "renew"


def test_a_chain_that_does_not_reach_ca_path_blocks(tmp_path: pathlib.Path) -> None:
    other, _key = mint("Other Root")
    bundle = write(tmp_path, other.public_bytes(serialization.Encoding.PEM), "ca.pem")
    pfx = make_pfx(*mint(FQDN), PASSWORD, chain=())
    result = checked(tmp_path, pfx, ca_path=bundle)
    assert result["action"] == "blocked" and "ca_path" not in result["reason"].replace("xu_renew_ca_path", "")
    trusted = write(tmp_path, CA_CERTIFICATE.public_bytes(serialization.Encoding.PEM), "trusted.pem")
    assert checked(tmp_path, pfx, ca_path=trusted)["action"] == "renew"


def test_a_pfx_not_found_on_the_controller_blocks() -> None:
    result = renew_precheck(plan(), pfx_path="", pfx_password=PASSWORD)
    assert result["action"] == "blocked" and "certs/xu01.pfx (xu_renew_pfx_path) was not found" in result["reason"]


def test_pfx_content_is_judged_too() -> None:
    content = base64.b64encode(good_pfx(sans=("xu09.example.com",))).decode()
    result = renew_precheck(plan("pfx_content"), pfx_content=content, pfx_password=PASSWORD)
    assert result["action"] == "blocked" and "does not name" in result["reason"]
    assert renew_precheck(plan("pfx_content"), pfx_content=base64.b64encode(good_pfx()).decode(), pfx_password=PASSWORD)["action"] == "renew"


@pytest.mark.parametrize("other", [{"action": "none"}, {"action": "renew", "source": "thumbprint"}, {"action": "renew", "source": "adcs"}])
def test_other_plans_are_left_alone(other: dict[str, Any]) -> None:
    assert renew_precheck(plan(**other), pfx_path="") == plan(**other)


def test_module_options_are_named_as_the_role_s_variables() -> None:
    assert role_wording("set pfx_password, or check ca_path (strict_san is true)") == (
        "set xu_renew_pfx_password, or check xu_renew_ca_path (xu_renew_strict_san is true)"
    )
    # Already a role variable, or part of a longer word: left as it is.
    assert role_wording("xu_renew_pfx_password and my_ca_path") == "xu_renew_pfx_password and my_ca_path"


def test_a_pfx_that_turns_tls_on_is_judged_without_a_certificate_to_replace(tmp_path: pathlib.Path) -> None:
    enabling = plan(old_thumbprint=None, enable_tls=True)
    assert renew_precheck(enabling, pfx_path=write(tmp_path, good_pfx()), pfx_password=PASSWORD) == enabling
    refused = renew_precheck(enabling, pfx_path=write(tmp_path, good_pfx()), pfx_password="wrong")  # noqa: S106 - a test value
    assert refused["action"] == "blocked" and "password (xu_renew_pfx_password) is wrong" in refused["reason"]
