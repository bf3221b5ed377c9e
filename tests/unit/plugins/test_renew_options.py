"""The renew role's variables: typed once at the role's entry, as extra vars and AWX survey answers send them (strings)."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
from typing import Any

import pytest
import yaml
from ansible import context
from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.xtractuniversal.tls.plugins.filter.renew import renew_secrets
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._options import (
    COLLECTION_ROOT,
    ROLE_SPECS,
    RoleOptionsError,
    renew_options,
    role_defaults,
    role_options_spec,
    user_base_dir,
)
from support.action import run_action
from support.fake_host import FakeHost

REPO = pathlib.Path(__file__).resolve().parents[3]
ROLE = REPO / "roles" / "renew"


def typed(host: str = "xu01", **values: Any) -> dict[str, Any]:
    return renew_options({f"xu_renew_{name}": value for name, value in values.items()}, host)


def error_of(**values: Any) -> str:
    """What the engine answers a wrong variable with; the host is not contacted."""
    with pytest.raises(RoleOptionsError) as raised:
        typed(**values)
    host = FakeHost()
    result = run_action("xu_renew", {"phase": "assess", "options": {f"xu_renew_{name}": value for name, value in values.items()}}, host)
    assert result["failed"] and host.calls == [] and str(raised.value) in result["msg"], result
    return str(result["msg"])


def test_string_extra_vars_get_their_documented_types() -> None:
    options = typed(
        mode="replace",
        force="false",
        remove_old="no",
        strict_san="False",
        before_days="400",
        wait_timeout="60",
        gate_auto_open_after="45",
        gate_allow_from="10.0.0.5, 192.0.2.0/24",
    )
    assert options["force"] is False
    assert options["remove_old"] is False
    assert options["strict_san"] is False
    assert options["before_days"] == 400
    assert options["wait_timeout"] == 60
    assert options["gate_auto_open_after"] == 45.0
    assert options["gate_allow_from"] == ["10.0.0.5", "192.0.2.0/24"]


def test_true_strings_are_true() -> None:
    assert typed(mode="replace", force="true")["force"] is True
    assert typed(mode="replace", force="yes")["force"] is True


def test_variables_not_given_take_the_documented_defaults() -> None:
    options = typed(mode="reuse_key")
    assert options == options | {
        "strategy": "documented",
        "before_days": 30,
        "force": False,
        "remove_old": True,
        "gate_auto_open_after": 30.0,
        "gate_allow_from": [],
        "pfx_path": "",
    }


def test_secrets_never_enter_the_typed_options() -> None:
    assert not {"pfx_password", "pfx_content"} & set(typed(mode="replace"))
    assert not {"xu_renew_pfx_password", "xu_renew_pfx_content"} & set(role_options_spec())


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"before_days": "soon"}, "xu_renew_before_days"),
        ({"force": "maybe"}, "xu_renew_force"),
        ({"strategy": "fastest"}, "xu_renew_strategy"),
        ({"wait_timeout": "0"}, "xu_renew_wait_timeout"),
        ({"before_days": "-1"}, "xu_renew_before_days"),
    ],
)
def test_a_wrong_variable_is_named(values: dict[str, Any], named: str) -> None:
    message = error_of(mode="replace", **values)
    assert named in message
    assert "renew role" in message


def test_mode_is_required() -> None:
    assert "xu_renew_mode" in error_of(force="false")


@pytest.mark.parametrize("minutes", ["0", "0.5", "-5", "1e12", "1e300", "nan", "inf", "10081"])
def test_the_gate_always_has_a_deadline(minutes: str) -> None:
    message = error_of(mode="reuse_key", gate_auto_open_after=minutes)
    assert "xu_renew_gate_auto_open_after" in message
    assert "reopens" in message


@pytest.mark.parametrize("minutes", ["1", "10080", "2.5"])
def test_deadlines_within_the_range_pass(minutes: str) -> None:
    assert typed(mode="reuse_key", gate_auto_open_after=minutes)["gate_auto_open_after"] == float(minutes)


def test_pfx_dir_names_the_host_s_file() -> None:
    assert typed("xu07.example.com", mode="replace", pfx_dir="/srv/certs")["pfx_path"] == "/srv/certs/xu07.example.com.pfx"
    assert typed("xu07", mode="replace", pfx_path="/srv/one.pfx")["pfx_path"] == "/srv/one.pfx"


def test_pfx_dir_and_pfx_path_exclude_each_other() -> None:
    message = error_of(mode="replace", pfx_dir="/srv/certs", pfx_path="/srv/one.pfx")
    assert "xu_renew_pfx_path" in message
    assert "xu_renew_pfx_dir" in message


def test_unknown_variables_are_refused() -> None:
    assert "xu_renew_forced" in error_of(mode="replace", forced="true")


def test_the_role_hands_every_typed_variable_to_the_engine() -> None:
    handed = yaml.safe_load((ROLE / "vars" / "main.yml").read_text(encoding="utf-8"))["xu_renew_variables"]
    assert set(handed) == set(role_options_spec())
    assert all(value == f"{{{{ {name} | default(none) }}}}" for name, value in handed.items())
    assert str(ROLE_SPECS).endswith("roles/renew/meta/argument_specs.yml")


def test_the_role_reads_no_variable_but_through_the_engine_s_typing() -> None:
    # A raw variable read in a task would bring the string back ("false" is true in a condition).
    raw = re.compile(r"\b(" + "|".join(sorted(role_options_spec(), key=len, reverse=True)) + r")\b")
    offenders = [f"{path.name}: {m.group(1)}" for path in sorted((ROLE / "tasks").glob("*.yml")) for m in raw.finditer(path.read_text(encoding="utf-8"))]
    assert offenders == []


def test_a_list_from_a_textarea_answer_splits_at_line_breaks() -> None:
    assert typed(mode="reuse_key", gate_allow_from="10.0.0.5\n2001:db8::/64\n\n")["gate_allow_from"] == ["10.0.0.5", "2001:db8::/64"]
    assert typed(mode="reuse_key", gate_allow_from="")["gate_allow_from"] == []


class CopyCounting(list):  # type: ignore[type-arg]
    """A list that counts its deep copies, as Ansible's lazy containers would be copied with their templating machinery."""

    copies = 0

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        CopyCounting.copies += 1
        return list(self)


def test_the_variables_are_checked_as_plain_data_never_by_copying_the_containers_ansible_hands_in() -> None:
    CopyCounting.copies = 0
    options = typed(mode="replace", gate_allow_from=CopyCounting(["10.0.0.5", "192.0.2.0/24"]), extra_dns_names=CopyCounting(["xu"]))
    assert options["gate_allow_from"] == ["10.0.0.5", "192.0.2.0/24"] and options["extra_dns_names"] == ["xu"]
    assert not isinstance(options["gate_allow_from"], CopyCounting)
    assert CopyCounting.copies == 0


def test_the_action_plugins_bring_the_role_filters_into_the_process_that_forks_the_workers() -> None:
    """Ansible loads action plugins in its main process and forks a worker per task: a filter module imported there
    is not compiled again in every worker."""
    script = (
        "import sys\n"
        "from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder\n"
        f"_AnsibleCollectionFinder(paths=[{str(REPO / '.collections')!r}])._install()\n"
        "import ansible_collections.xtractuniversal.tls.plugins.action.xu_tls_info\n"
        "print(sorted(m for m in sys.modules if m.startswith('ansible_collections.xtractuniversal.tls.plugins.filter.')))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    loaded = done.stdout.strip()
    assert "plugins.filter.renew'" in loaded and "plugins.filter.report'" in loaded, done.stdout + done.stderr


# -- empty answers: AWX sends '' (ansible-core 2.19 and later read it as None) -----------------------------------------


def role_spec_options() -> dict[str, dict[str, Any]]:
    options: dict[str, dict[str, Any]] = yaml.safe_load(ROLE_SPECS.read_text(encoding="utf-8"))["argument_specs"]["main"]["options"]
    return options


def test_ansible_core_s_own_check_of_the_role_lets_an_empty_answer_through() -> None:
    """ansible-core validates the role's argument specs before any task of the role runs; an empty answer must pass it."""
    options = role_spec_options()
    nulls = {name: None for name in options} | {"xu_renew_mode": "reuse_key"}
    assert ArgumentSpecValidator(options).validate(nulls).error_messages == []
    # '' as ansible-core 2.16 to 2.18 hand in an empty AWX text answer: fine for the string and list variables.
    blanks = {name: "" for name, option in options.items() if option.get("type", "str") in ("str", "list")} | {"xu_renew_mode": "reuse_key"}
    assert ArgumentSpecValidator(options).validate(blanks).error_messages == []


@pytest.mark.parametrize("name", sorted(set(role_options_spec()) - {"xu_renew_mode"}))
@pytest.mark.parametrize("empty", [None, "", "  "])
def test_an_empty_value_takes_the_default_for_every_variable(name: str, empty: Any) -> None:
    assert renew_options({"xu_renew_mode": "replace", name: empty}, "xu01") == renew_options({"xu_renew_mode": "replace"}, "xu01")


def test_the_defaults_are_the_role_s_defaults_and_each_description_names_its_own() -> None:
    defaults = role_defaults()
    for name, option in role_spec_options().items():
        assert "default" not in option, f"{name}: a default key would make ansible-core refuse null (an empty AWX answer on 2.19+)"
        if name == "xu_renew_mode":
            assert option["required"] is True and name not in defaults
            continue
        value = defaults[name]
        shown = str(value).lower() if isinstance(value, bool) else value
        said = {"": "Empty by default.", "[]": "An empty list by default."}.get(str(value)) or f"Default C({shown})."
        assert said in option["description"], name


def test_the_strategy_follows_the_mode_unless_given() -> None:
    # An ordered certificate goes in with one restart; the other modes follow the vendor's order.
    assert renew_options({"xu_renew_mode": "acme"}, "xu01")["strategy"] == "minimal_outage"
    assert renew_options({"xu_renew_mode": "acme", "xu_renew_strategy": ""}, "xu01")["strategy"] == "minimal_outage"
    for mode in ("replace", "reuse_key", "adopt", "enroll"):
        assert renew_options({"xu_renew_mode": mode}, "xu01")["strategy"] == "documented", mode
    assert renew_options({"xu_renew_mode": "acme", "xu_renew_strategy": "documented"}, "xu01")["strategy"] == "documented"


def test_an_empty_mode_is_named() -> None:
    assert "xu_renew_mode is required" in error_of(mode=None)
    assert "xu_renew_mode is required" in error_of(mode="")


# -- the secrets, and paths ------------------------------------------------------------------------------------------


def test_a_credential_s_pfx_is_used_when_it_holds_one_else_the_host_s_own() -> None:
    host = {"xu_renew_pfx_content": "aG9zdA==", "xu_renew_pfx_password": "host-pw"}
    # What the shipped credential type injects when its PFX field is left empty: an empty string (or None on 2.19+).
    for empty in ("", None):
        assert renew_secrets({**host, "xu_renew_credential_pfx_content": empty, "xu_renew_credential_pfx_password": empty}) == {
            "pfx_content": "aG9zdA==", "pfx_password": "host-pw"}
    shared = {**host, "xu_renew_credential_pfx_content": "c2hhcmVk", "xu_renew_credential_pfx_password": "cred-pw"}
    assert renew_secrets(shared) == {"pfx_content": "c2hhcmVk", "pfx_password": "cred-pw"}
    assert renew_secrets({"xu_renew_pfx_content": None}) == {"pfx_content": "", "pfx_password": ""}
    with pytest.raises(AnsibleFilterError, match="xu_renew_pfx_content"):
        renew_secrets({"xu_renew_pfx_content": {"not": "a string"}})


def test_relative_paths_are_taken_from_the_user_s_playbook_directory(tmp_path: pathlib.Path) -> None:
    project = str(tmp_path)
    options = renew_options({"xu_renew_mode": "replace", "xu_renew_pfx_dir": "certs", "xu_renew_ca_path": "ca/bundle.pem"}, "xu01",
                            playbook_dir=project)
    assert options["pfx_path"] == f"{project}/certs/xu01.pfx" and options["pfx_dir"] == f"{project}/certs"
    assert options["ca_path"] == f"{project}/ca/bundle.pem" and options["pfx_variable"] == "xu_renew_pfx_dir"
    single = renew_options({"xu_renew_mode": "replace", "xu_renew_pfx_path": "one.pfx"}, "xu01", playbook_dir=project)
    assert single["pfx_path"] == f"{project}/one.pfx" and single["pfx_variable"] == "xu_renew_pfx_path"
    assert renew_options({"xu_renew_mode": "replace", "xu_renew_pfx_path": "/srv/one.pfx"}, "xu01", playbook_dir=project)["pfx_path"] == "/srv/one.pfx"


def test_a_playbook_of_the_collection_is_not_the_user_s(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A project's wrapper imports the collection's playbook: its plays' playbook_dir is the collection's playbooks/."""
    collection_playbooks = str(COLLECTION_ROOT / "playbooks")
    wrapper = tmp_path / "project" / "renew.yml"
    wrapper.parent.mkdir()
    wrapper.write_text("- ansible.builtin.import_playbook: xtractuniversal.tls.renew\n")
    monkeypatch.setattr(context, "CLIARGS", {"args": (str(wrapper),)})
    assert user_base_dir(collection_playbooks) == wrapper.parent
    # The collection's playbook run by its name: the directory ansible-playbook was started in (AWX: the project).
    monkeypatch.setattr(context, "CLIARGS", {"args": ("xtractuniversal.tls.renew",)})
    monkeypatch.chdir(tmp_path)
    assert user_base_dir(collection_playbooks) == tmp_path
    # The user's own playbook that runs the role.
    assert user_base_dir(str(tmp_path / "site")) == tmp_path / "site"
