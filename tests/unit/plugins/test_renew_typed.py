"""The typed layer under the renew filters: parsing what the role hands in, the facts handed back, one source of constants."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import yaml

from ansible_collections.xtractuniversal.tls.plugins.filter import renew as f
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._profiles import TLS_SETTINGS_FILE, WEB_PROTOCOLS
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._renew_info import HTTPS_PROTOCOLS, is_tls_file
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._renew_journal import RunJournal, after_step, parse_journal
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._renew_options import role_options_spec
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._renew_plan import MODES, STRATEGIES, parse_plan
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._renew_recovery import parse_recovery
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._renew_report import STEPS, parse_failure
from support.renew_reports import BACKUP, NEW, OLD, TLS_PATH, info, journal, store

TASKS = pathlib.Path(f.__file__).resolve().parents[2] / "roles" / "renew" / "tasks"
# The task files whose tasks run while the role acts (main.yml's block with its rescue), and what they include.
ACT_FILES = (
    "renew.yml", "replace.yml", "reuse_key_documented.yml", "reuse_key_minimal_outage.yml", "bind_config.yml",
    "verify.yml", "controller_check.yml", "resume.yml", "recover.yml", "gates.yml", "read.yml",
)
INCLUDES = {"ansible.builtin.include_tasks", "ansible.builtin.import_tasks"}


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


def _tasks(path: pathlib.Path) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for task in yaml.safe_load(path.read_text(encoding="utf-8")) or []:
        found.append(task)
        for section in ("block", "rescue", "always"):
            found += task.get(section) or []
    return found


@pytest.mark.parametrize("name", ACT_FILES)
def test_every_task_that_acts_names_its_step(name: str) -> None:
    for task in _tasks(TASKS / name):
        if INCLUDES & set(task):
            continue
        step = (task.get("vars") or {}).get("xu_renew_step")
        assert step in STEPS, (name, task["name"])
        # The step is the one the task's name reads ("TLS off | ..."), as reports have always named it.
        assert "_".join(task["name"].split(" | ", 1)[0].lower().split()) == step, (name, task["name"])


def test_the_rescue_reads_the_step_from_the_failed_task() -> None:
    rescue = (TASKS / "rescue.yml").read_text(encoding="utf-8")
    assert "ansible_failed_task.vars" in rescue and "ansible_failed_task.name" not in rescue
