"""The shared action base: argument specs come from the doc stubs, and results are masked."""

from __future__ import annotations

import datetime
import importlib
import pathlib

import pytest

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host import _action_base, _agent
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._action_base import (
    XuActionBase,
    argument_spec_from_options,
    module_documentation,
    module_validator,
)
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._agent import agent_payload_texts
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._options import renew_options

REPO = pathlib.Path(__file__).resolve().parents[3]
MODULES = sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py"))


def action_class(module: str) -> type[XuActionBase]:
    cls: type[XuActionBase] = importlib.import_module(f"ansible_collections.xtractuniversal.tls.plugins.action.{module}").ActionModule
    return cls


def test_every_module_stub_has_an_action_plugin() -> None:
    actions = sorted(p.stem for p in (REPO / "plugins" / "action").glob("*.py"))
    assert MODULES and actions == MODULES


@pytest.mark.parametrize("module", MODULES)
def test_action_spec_is_the_stub_documentation(module: str) -> None:
    cls = action_class(module)
    assert module == cls.MODULE
    options = module_documentation(module)["options"]
    spec = cls.argument_spec()
    # The spec is the documentation, plus no_log on the options the action names as secrets.
    expected = argument_spec_from_options(options)
    for name in cls.NO_LOG_OPTIONS:
        assert name in expected, f"{module} masks {name}, which it does not document"
        expected[name]["no_log"] = True
    assert spec == expected

    def compare(spec: dict, options: dict) -> None:  # type: ignore[type-arg]
        assert set(spec) == set(options)
        for name, option in options.items():
            entry = spec[name]
            assert entry["type"] == option.get("type", "str"), name
            for key in ("required", "default", "choices", "elements", "aliases"):
                assert entry.get(key) == option.get(key), f"{name}.{key}"
            assert entry.get("no_log") is (True if name in cls.NO_LOG_OPTIONS else None), f"{name}.no_log"
            assert option.get("description"), f"{name} has no description"
            if "suboptions" in option:
                compare(entry["options"], option["suboptions"])

    compare(spec, options)


@pytest.mark.parametrize("module", MODULES)
def test_constraints_name_documented_options(module: str) -> None:
    cls = action_class(module)
    documented = set(cls.argument_spec())
    named: set[str] = set()
    for group in cls.MUTUALLY_EXCLUSIVE + cls.REQUIRED_ONE_OF + cls.REQUIRED_TOGETHER:
        named.update(group)
    for rule in cls.REQUIRED_IF:
        named.add(rule[0])
        named.update(rule[2])
    for key, needs in cls.REQUIRED_BY.items():
        named.add(key)
        named.update([needs] if isinstance(needs, str) else needs)
    assert named <= documented
    cls.validator()  # builds without error


def test_undocumentable_option_keys_fail_loudly() -> None:
    with pytest.raises(RuntimeError, match="cannot express"):
        argument_spec_from_options({"x": {"type": "str", "description": "x", "mutually_exclusive": ["y"]}})


def test_secret_options_are_no_log() -> None:
    secrets = 0
    for module in MODULES:
        spec = action_class(module).argument_spec()
        for name, entry in spec.items():
            if "password" in name or name.startswith("pfx_content"):
                assert entry.get("no_log") is True, f"{module}.{name}"
                secrets += 1
    assert secrets >= 2  # xu_cert_swap's pfx_password and pfx_content at least


@pytest.mark.parametrize("module", MODULES)
def test_a_task_parses_nothing_its_main_process_prepared(module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Loading an action plugin (which Ansible does in the controller's main process, before it forks a worker for each
    # host and task) makes what every task needs; a task then reads no stub documentation, argument spec or agent file.
    cls = action_class(module)
    validator = cls.validator()

    def forbidden(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("parsed again in a task")

    monkeypatch.setattr(_action_base, "get_docstring", forbidden)
    monkeypatch.setattr("yaml.safe_load", forbidden)
    monkeypatch.setattr(_agent, "_read_script", forbidden)
    assert cls.validator() is validator
    assert agent_payload_texts()[1].startswith(_agent.AGENT_MARKER + "\n")
    if module == "xu_renew":
        # The engine's own reads: the role's variables and the modules it composes.
        assert renew_options({"xu_renew_mode": "replace", "xu_renew_pfx_path": "x.pfx"}, "xu01")["mode"] == "replace"
        for name in ("xu_tls_info", "xu_cert_swap", "xu_tls_binding", "xu_firewall_gate", "xu_tls_restore", "xu_tls_verify"):
            module_validator(name)


def test_arguments_reach_the_validator_as_plain_data() -> None:
    # ansible-core 2.19+ hands an action its templated arguments tagged with their origin; copying a tagged value
    # rebuilds its tags, and the validator deep-copies everything it is given.
    tags = pytest.importorskip("ansible._internal._datatag._tags")
    tagged = tags.Origin(path="/play.yml", line_num=3).tag("replace")
    # A tagged value is an instance of a subclass of str: only its exact class tells it apart.
    assert tagged.__class__ is not str
    args = _action_base.plain_arguments({"mode": tagged, "count": 3, "assessment": {"steps": [tagged, None, 1.5, True]}})
    assert args == {"mode": "replace", "count": 3, "assessment": {"steps": ["replace", None, 1.5, True]}}
    assert args["mode"].__class__ is str and args["assessment"]["steps"][0].__class__ is str
    # What JSON cannot carry is left as given, for the validator to judge.
    when = datetime.date(2026, 1, 1)
    assert _action_base.plain_arguments({"when": when})["when"] is when
