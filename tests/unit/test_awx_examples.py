"""The AWX files of docs/awx/: every survey answer and credential injection is a valid value of a role variable."""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any

import pytest
import yaml

from ansible_collections.xtractuniversal.tls.plugins.filter.renew import renew_batches
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._options import (
    ACME_PREFIX,
    ROLE_SPECS,
    SECRET_VARIABLES,
    renew_options,
    role_options_spec,
)
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.report._tls_report import report_options

REPO = pathlib.Path(__file__).resolve().parents[2]
AWX = REPO / "docs" / "awx"
# The surveys of the job templates that run the renew role: renew.yml and enable_tls.yml (which imports it).
SURVEYS = {name: json.loads((AWX / f"{name}_survey.json").read_text(encoding="utf-8")) for name in ("renew", "enable_tls")}
QUESTIONS = [question for survey in SURVEYS.values() for question in survey["spec"]]
# How AWX types an answer in the job's extra vars.
AWX_TYPES = {"integer": int, "float": float, "text": str, "textarea": str, "password": str, "multiplechoice": str, "multiselect": list}
# Survey types that fit each documented type of the role.
FITTING = {"str": {"text", "textarea", "password", "multiplechoice"}, "int": {"integer", "multiplechoice"},
           "float": {"float", "integer"}, "bool": {"multiplechoice"}, "list": {"textarea", "multiselect", "text"}}
ALL_OPTIONS = yaml.safe_load(ROLE_SPECS.read_text(encoding="utf-8"))["argument_specs"]["main"]["options"]
# Variables of the renew playbook itself (play keywords), each read by the filter the playbook passes it through.
PLAYBOOK_VARIABLES = {"xu_renew_serial": renew_batches}
# The ACME mode's questions are read by its own settings (tests/unit/acme/test_awx_acme.py).
ROLE_QUESTIONS = [question for question in QUESTIONS if question["variable"] not in PLAYBOOK_VARIABLES and not question["variable"].startswith(ACME_PREFIX)]
PLAYBOOK_QUESTIONS = [question for question in QUESTIONS if question["variable"] in PLAYBOOK_VARIABLES]


def answer(question: dict[str, Any], value: Any) -> Any:
    return AWX_TYPES[question["type"]](value)


@pytest.mark.parametrize("question", ROLE_QUESTIONS, ids=lambda q: q["variable"])
def test_each_question_sets_a_role_variable_of_a_fitting_type(question: dict[str, Any]) -> None:
    option = role_options_spec()[question["variable"]]
    assert question["type"] in FITTING[option.get("type", "str")]
    if "choices" in option:
        assert set(question["choices"]) <= set(option["choices"])


@pytest.mark.parametrize("question", ROLE_QUESTIONS, ids=lambda q: q["variable"])
def test_every_answer_the_survey_allows_is_accepted_by_the_role(question: dict[str, Any]) -> None:
    values = question.get("choices") or [question["default"]]
    if question["type"] in ("integer", "float"):
        values = [question["min"], question["max"], question["default"]]
    for value in values:
        extra_vars = {"xu_renew_mode": "replace", question["variable"]: answer(question, value)}
        typed = renew_options(extra_vars, "xu01")
        assert question["variable"].removeprefix("xu_renew_") in typed


def test_the_playbook_s_own_questions_are_read_by_its_filter() -> None:
    playbook = (REPO / "playbooks" / "renew.yml").read_text(encoding="utf-8")
    assert {question["variable"] for question in PLAYBOOK_QUESTIONS} == set(PLAYBOOK_VARIABLES)
    for question in PLAYBOOK_QUESTIONS:
        assert f"{question['variable']} | default(none)" in playbook
        assert f"xtractuniversal.tls.{PLAYBOOK_VARIABLES[question['variable']].__name__}" in playbook
        read = PLAYBOOK_VARIABLES[question["variable"]]
        assert question["type"] == "text" and not question["required"]
        # A blank answer is the playbook's default; the description's examples are read as it says.
        assert read(question["default"]) == read(None)
        examples = {"1,3": [1, 3], "1,10%,100%": [1, "10%", "100%"]}
        for example, batches in examples.items():
            assert example in question["question_description"] and read(example) == batches


def test_every_mode_and_the_enrolment_template_have_a_question() -> None:
    renew = {question["variable"]: question for question in SURVEYS["renew"]["spec"]}
    assert set(renew["xu_renew_mode"]["choices"]) == {"replace", "reuse_key", "adopt", "enroll", "acme"}
    assert {"xu_renew_template", "xu_renew_adopt_issuer"} <= set(renew)
    enable = {question["variable"]: question for question in SURVEYS["enable_tls"]["spec"]}
    assert set(enable["xu_renew_mode"]["choices"]) == {"adopt", "enroll", "replace"}
    assert {"xu_renew_template", "xu_renew_web_protocol", "xu_renew_bind_config_server"} <= set(enable)


def test_a_textarea_of_addresses_becomes_a_list() -> None:
    typed = renew_options({"xu_renew_mode": "reuse_key", "xu_renew_gate_allow_from": "10.0.0.5\n10.0.0.6\n"}, "xu01")
    assert typed["gate_allow_from"] == ["10.0.0.5", "10.0.0.6"]


def test_the_credential_type_injects_only_secret_role_variables() -> None:
    credential = yaml.safe_load((AWX / "credential_type.yml").read_text(encoding="utf-8"))
    fields = {field["id"]: field for field in credential["inputs"]["fields"]}
    injected = credential["injectors"]["extra_vars"]
    # AWX injects a field left empty as an empty extra var, which outranks every host's own: the injector uses the
    # names the role reads only when they hold something, never the host variables themselves.
    assert set(injected) == {"xu_renew_credential_pfx_password", "xu_renew_credential_pfx_content"}
    for variable, template in injected.items():
        assert variable in ALL_OPTIONS and variable in SECRET_VARIABLES
        field = template.split("{{", 1)[1].split("}}", 1)[0].split("|", 1)[0].strip()
        assert fields[field]["secret"] is True
    assert set(credential["inputs"]["required"]) <= set(fields)


def test_the_project_playbooks_import_the_collection_s() -> None:
    for name in ("renew", "tls_report", "enable_tls"):
        play = yaml.safe_load((AWX / "project" / f"{name}.yml").read_text(encoding="utf-8"))
        assert play[0]["ansible.builtin.import_playbook"] == f"xtractuniversal.tls.{name}"
        assert (REPO / "playbooks" / f"{name}.yml").is_file()


REPORT_SURVEY = json.loads((AWX / "report_survey.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("question", REPORT_SURVEY["spec"], ids=lambda q: q["variable"])
def test_every_report_survey_answer_is_accepted_by_the_report(question: dict[str, Any], tmp_path: pathlib.Path) -> None:
    values = question.get("choices") or [question["default"]]
    if question["type"] == "integer":
        values = [question["min"], question["max"], ""]  # empty: the question left blank
    if question["variable"] == "xu_report_dir":
        values = ["", str(tmp_path)]
    for value in values:
        typed = report_options({question["variable"]: value if value == "" else answer(question, value)})
        assert typed is not None


def test_the_awx_guide_tells_the_truth() -> None:
    """What docs/awx.md and the credential type say about AWX, installing, and what each job template has."""
    guide = (REPO / "docs" / "awx.md").read_text(encoding="utf-8")
    credential_notes = (AWX / "credential_type.yml").read_text(encoding="utf-8")
    # AWX shows extra vars as they are in a job's output: no_log keeps the secrets out, not AWX.
    for text in (guide, credential_notes):
        assert not re.search(r"AWX (masks|hides)", text)
    assert "AWX does not mask extra vars" in guide and "no_log" in guide
    # The collection from Galaxy, from its release artifact kept in the project, or from Git.
    assert "type: file" in guide and "type: git" in guide
    # Every wrapper playbook of the project, with the survey of its job template.
    for wrapper in sorted((AWX / "project").glob("*.yml")):
        assert f"`{wrapper.name}`" in guide
    for survey in sorted(AWX.glob("*_survey.json")):
        assert f"docs/awx/{survey.name}" in guide
    assert {path.stem for path in (AWX / "project").glob("*.yml")} == {path.name.removesuffix("_survey.json").replace("report", "tls_report")
                                                                       for path in AWX.glob("*_survey.json")}
