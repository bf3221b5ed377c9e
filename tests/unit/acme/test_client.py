"""The shim community.crypto's ACME client runs on, and the retries: budgets, backoff, rate limits."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.acme import client
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.acme.settings import settings_from_vars
from support.fake_acme import Answer, Script, fake_acme

RATE_LIMITED: Answer = (429, {"type": "urn:ietf:params:acme:error:rateLimited", "detail": "too many new orders"}, {"Retry-After": "3600"})
BAD_NONCE: Answer = (400, {"type": "urn:ietf:params:acme:error:badNonce", "detail": "JWS has an invalid anti-replay nonce"}, {})


@contextmanager
def session_for(tmp_path: Path, acme_vars: dict[str, Any], script: Script, budget: float = 5) -> Iterator[Any]:
    with fake_acme(tmp_path, script) as (directory, ca_path):
        chosen = settings_from_vars(
            acme_vars | {"xu_renew_acme_directory": directory, "xu_renew_acme_ca_path": str(ca_path), "xu_renew_acme_retry_budget": budget}
        )
        session = client.open_session(chosen, check_mode=False)
        session.sleep = lambda seconds: None
        yield session


def orders_sent(script: Script) -> int:
    return len([path for path, _payload in script.received if path == "/order"])


def test_community_crypto_is_the_tested_one() -> None:
    """The private module_utils this collection depends on are there, under the names used (community.crypto 3.x)."""
    assert client.COMMUNITY_CRYPTO_IMPORT_ERROR is None


def test_a_rate_limit_beyond_the_budget_fails_at_once_naming_it(tmp_path: Path, acme_vars: dict[str, Any]) -> None:
    """community.crypto would sleep up to 60 s twenty times; the budget stops it before the first sleep it cannot pay."""
    script = Script(order_answers=[RATE_LIMITED] * 3)
    with session_for(tmp_path, acme_vars, script) as session, pytest.raises(client.AcmeError) as failure:
        client.create_order(session, ("xu01.example.com",), None)
    assert failure.value.problem == "rateLimited" and failure.value.step == "order"
    assert "429 (rate limited)" in failure.value.msg
    assert orders_sent(script) == 1


def test_bad_nonces_are_retried_with_backoff(tmp_path: Path, acme_vars: dict[str, Any]) -> None:
    """community.crypto retries a badNonce five times at once; past that the step backs off and tries again."""
    script = Script(order_answers=[BAD_NONCE] * 8)
    waits: list[float] = []
    with session_for(tmp_path, acme_vars, script) as session:
        session.sleep = waits.append
        order = client.create_order(session, ("xu01.example.com",), None)
    assert order.status == "pending"
    assert orders_sent(script) == 9
    assert waits and all(0 < wait <= 30 for wait in waits)
    assert any("badNonce" in note for note in session.notes)


def test_bad_nonces_past_the_budget_fail_naming_the_step(tmp_path: Path, acme_vars: dict[str, Any]) -> None:
    script = Script(order_answers=[BAD_NONCE] * 200)
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    with session_for(tmp_path, acme_vars, script, budget=1) as session:
        session.budget.clock = lambda: clock[0]
        session.budget.started = 0.0
        session.sleep = sleep
        with pytest.raises(client.AcmeError) as failure:
            client.create_order(session, ("xu01.example.com",), None)
    assert failure.value.problem == "badNonce" and "retries exhausted" in failure.value.msg
    assert clock[0] <= 1


def test_the_shim_never_exits_and_never_logs_what_it_is_given(acme_vars: dict[str, Any]) -> None:
    notes: list[str] = []
    shim = client.AcmeModuleShim({"account_key_content": "secret"}, check_mode=False, budget=client.RetryBudget(5), notes=notes)
    with pytest.raises(client.AcmeError):
        shim.fail_json(msg="boom", account_key_content="secret")
    shim.log("anything else is dropped")
    shim.debug("debug output is dropped")
    assert notes == []
    del acme_vars
