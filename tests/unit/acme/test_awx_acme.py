"""The AWX files for ACME in docs/awx/: each variable is one the issuance reads, secrets only from credentials."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest
import yaml

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.acme.settings import PREFIX, SECRET_VARIABLES, VARIABLES, settings_from_vars

AWX = pathlib.Path(__file__).resolve().parents[3] / "docs" / "awx"
CREDENTIAL_TYPES = ("acme_account_credential_type.yml", "tsig_credential_type.yml")
# The renew job template's survey asks for these with the mode acme.
SURVEY = [question for question in json.loads((AWX / "renew_survey.json").read_text())["spec"] if question["variable"].startswith(PREFIX)]


@pytest.mark.parametrize("name", CREDENTIAL_TYPES)
def test_credential_types_inject_known_variables_and_mark_secrets_secret(name: str) -> None:
    credential = yaml.safe_load((AWX / name).read_text())
    fields = {field["id"]: field for field in credential["inputs"]["fields"]}
    for variable, template in credential["injectors"]["extra_vars"].items():
        assert variable.startswith(PREFIX) and variable.removeprefix(PREFIX) in VARIABLES, variable
        field = next(f for f in fields if "{{ " + f in template)
        assert bool(fields[field].get("secret")) == (variable.removeprefix(PREFIX) in SECRET_VARIABLES), variable


def test_the_renew_survey_offers_the_acme_mode_and_its_questions() -> None:
    modes = next(q for q in json.loads((AWX / "renew_survey.json").read_text())["spec"] if q["variable"] == "xu_renew_mode")
    assert "acme" in modes["choices"]
    assert {q["variable"] for q in SURVEY} == {f"{PREFIX}directory", f"{PREFIX}key_type", f"{PREFIX}max_parallel_orders"}


@pytest.mark.parametrize("question", SURVEY, ids=lambda q: q["variable"])
def test_every_survey_answer_is_accepted(question: dict[str, Any], acme_vars: dict[str, Any]) -> None:
    assert question["variable"].removeprefix(PREFIX) in VARIABLES
    answers = question.get("choices") or [question["default"], question.get("min"), question.get("max")]
    for answer in answers:
        # AWX sends integer answers as numbers, the others as strings.
        settings_from_vars(acme_vars | {question["variable"]: answer})
