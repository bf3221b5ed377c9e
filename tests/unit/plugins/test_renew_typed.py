"""The typed layer of the renew engine: the facts it hands back, the step table, one source of constants."""

from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.journal._keeper import RunJournal, after_step, parse_journal
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._engine import SEQUENCES, Renewal
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._info import HTTPS_PROTOCOLS, is_tls_file
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._options import role_options_spec
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._plan import MODES, STRATEGIES
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._report import STEPS, parse_failure
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._profiles import TLS_SETTINGS_FILE, WEB_PROTOCOLS
from support import renew_decisions as f
from support.renew_decisions import parse_plan, parse_recovery
from support.renew_reports import BACKUP, NEW, OLD, TLS_PATH, info, journal, store


def test_modes_and_strategies_are_the_roles_choices() -> None:
    spec = role_options_spec()
    assert tuple(spec["xu_renew_mode"]["choices"]) == MODES
    assert tuple(spec["xu_renew_strategy"]["choices"]) == STRATEGIES


def test_protocols_and_the_settings_file_come_from_the_profiles() -> None:
    assert set(HTTPS_PROTOCOLS) == set(WEB_PROTOCOLS) - {"http_unrestricted"}
    assert is_tls_file("C:\\XU\\" + TLS_SETTINGS_FILE.upper()) and not is_tls_file("C:\\XU\\config\\servers\\web\\general.json")


@pytest.mark.parametrize(
    "plan",
    [
        f.renew_plan(info(days_left=10), "reuse_key"),
        f.renew_plan(info(days_left=10, certificates=[*store(OLD), *store(NEW)]), "replace", strategy="minimal_outage", new_thumbprint=NEW),
        f.renew_plan({"unreachable": True, "msg": "gone"}, "replace"),
        f.renew_plan(info(journal=journal(run_id="awx-1", lease_expires="2999-01-01T00:00:00Z")), "reuse_key", run_id="awx-2"),
        f.renew_plan(info(journal=journal()), "reuse_key"),
    ],
)
def test_a_plan_reads_back_as_the_same_fact(plan: dict[str, Any]) -> None:
    assert parse_plan(plan).as_fact() == plan


def test_parsing_is_defensive() -> None:
    assert parse_plan("not a plan").action == "none"
    assert parse_plan({"action": "renew", "config_tls": "yes", "owner": "x", "old_thumbprint": 5}).old_thumbprint is None
    assert parse_journal([1, 2]) is None and parse_journal({}) is None
    odd = parse_journal({"old_thumbprint": OLD, "backup_files": {"a": None, "b": 3, TLS_PATH: BACKUP}})
    assert odd is not None and odd.backup_files == {TLS_PATH: BACKUP}
    recovery = parse_recovery({"action": "rollback", "restores": "x", "swap": 3, "rebind": None})
    assert recovery.acts and recovery.restores == () and recovery.swap is None and recovery.rebind is None
    assert parse_recovery(None).action == "none"
    assert parse_failure({}) is None and parse_failure({"step": "tls_on", "restored": "x"}).restored == ()  # type: ignore[union-attr]


def test_a_journal_read_from_the_host_keeps_its_lease() -> None:
    on_host = journal(lease_expires="2999-01-01T00:00:00Z", step="tls_off")
    parsed = parse_journal(on_host)
    assert parsed is not None and parsed.extra == {"lease_expires": "2999-01-01T00:00:00Z"}
    assert parsed.as_fact() == on_host
    assert after_step(parsed, "renewed").as_fact() == {**on_host, "step": "renewed"}


def test_a_journal_is_frozen_and_each_step_gives_a_new_one() -> None:
    start = RunJournal(run_id="r1", old_thumbprint=OLD, tls_path=TLS_PATH)
    later = after_step(start, "tls_off", backup_file=BACKUP)
    assert start.backup_files == {} and later.backup_files == {TLS_PATH: BACKUP}
    with pytest.raises(AttributeError):
        later.step = "x"  # type: ignore[misc]


def test_every_step_of_every_sequence_is_a_named_step_with_its_own_method() -> None:
    for steps in SEQUENCES.values():
        for step in steps:
            # A failure names its step, as reports have always named it; each row has the method that carries it out.
            assert step.name in STEPS and callable(getattr(Renewal, f"_{step.name}")), step
