"""A bad host name fails before the host is contacted, in every module that takes one."""

from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._hostname import clean_fqdn
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import XuError
from support.action import run_action
from support.fake_host import FakeHost

OLD = "AD3B9B0C9F6E3F1A2B3C4D5E6F708192A3B4ECE6"
NEW = "1" * 40


@pytest.mark.parametrize(("given", "clean"), [("XU01.Example.COM", "xu01.example.com"), (" xu01.example.com. ", "xu01.example.com"),
                                              ("10.1.2.3", "10.1.2.3"), ("", None), (None, None)])
def test_names_are_cleaned(given: str | None, clean: str | None) -> None:
    assert clean_fqdn(given) == clean


@pytest.mark.parametrize("bad", ["bad host!", "a..b", "x" * 64 + ".example.com", "é.example.com", "a/b", ("a." * 127) + "com"])
def test_what_is_not_a_dns_name_is_refused(bad: str) -> None:
    with pytest.raises(XuError, match="is not a DNS name"):
        clean_fqdn(bad)


@pytest.mark.parametrize(("module", "args"), [
    ("xu_cert_swap", {"old_thumbprint": OLD, "new_thumbprint": NEW}),
    ("xu_tls_binding", {"web_certificate": NEW}),
    ("xu_tls_info", {}),
])
def test_each_module_refuses_a_bad_fqdn_before_any_remote_call(module: str, args: dict[str, Any]) -> None:
    host = FakeHost()
    result = run_action(module, {**args, "fqdn": "bad host!"}, host)
    assert result["failed"] and "fqdn 'bad host!' is not a DNS name" in result["msg"], result
    assert host.calls == [] and result["changed"] is False
