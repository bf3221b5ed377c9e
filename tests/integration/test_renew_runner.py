"""The collection's playbooks as AWX runs them: a private data directory written as AWX writes it (survey defaults,
the credential type's injector, ``awx_*`` variables, all ``!unsafe``), run by ansible-runner from the project directory,
with the collection installed from its release artifact. tests/matrix runs the same jobs with every ansible-core."""

from __future__ import annotations

import json
import pathlib
import sys
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from awx_job import AwxJob, awx_meta_vars, awx_safe_dump, credential_extra_vars, survey_defaults
from awx_scenarios import SCENARIOS, Scenario, install_collection, run_job, run_scenario, start_lab
from labtools import REPO

AWX = REPO / "docs" / "awx"
PYTHON = pathlib.Path(sys.executable)


@pytest.fixture(scope="module")
def collections(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return install_collection(tmp_path_factory.mktemp("artifact"))


def test_extra_vars_are_written_as_awx_writes_them() -> None:
    survey = json.loads((AWX / "renew_survey.json").read_text(encoding="utf-8"))
    sent = survey_defaults(survey)
    # An empty text answer is sent as an empty string; the integers and floats as numbers.
    assert sent["xu_renew_pfx_dir"] == "" and sent["xu_renew_gate_allow_from"] == "" and sent["xu_renew_serial"] == ""
    assert sent["xu_renew_before_days"] == 30
    text = awx_safe_dump({"xu_renew_mode": "reuse_key", "xu_renew_pfx_dir": "", "xu_renew_before_days": 30, **awx_meta_vars(42)})
    assert text.startswith("!unsafe 'xu_renew_mode': !unsafe 'reuse_key'\n!unsafe 'xu_renew_pfx_dir': !unsafe ''\n!unsafe 'xu_renew_before_days': 30\n")
    assert "!unsafe 'awx_job_id': 42\n!unsafe 'awx_job_launch_type': !unsafe 'scheduled'\n" in text
    # A job template's own variable is trusted as it is.
    assert awx_safe_dump({"xu_renew_mode": "replace"}, {"xu_renew_mode": "replace"}) == "xu_renew_mode: replace\n"
    # A credential input left empty is undefined in the injector's template: it renders as an empty string.
    credential_type = yaml.safe_load((AWX / "credential_type.yml").read_text(encoding="utf-8"))
    injected = credential_extra_vars(credential_type, {"pfx_password": "s3cret", "pfx_content": ""})
    assert all(isinstance(value, str) for value in injected.values()) and "" in injected.values()


@pytest.mark.lab
@pytest.mark.parametrize("make", SCENARIOS, ids=lambda make: make.__name__)
def test_awx_jobs_renew_what_they_should(make: Callable[[pathlib.Path, pathlib.Path], Scenario], collections: pathlib.Path,
                                         tmp_path: pathlib.Path) -> None:
    lab = start_lab(tmp_path / "lab")
    try:
        scenario, result, problems = run_scenario(make, PYTHON, lab, tmp_path / "job", collections)
    finally:
        from awx_scenarios import xulab  # noqa: PLC0415

        xulab("down", "--dir", str(lab))
    assert problems == [], f"{scenario.name}: {problems}\n{result.stdout[-6000:]}"
    # The extra vars are AWX's: every string !unsafe, the survey's empty answers as empty strings.
    assert "!unsafe 'xu_renew_serial': !unsafe ''\n" in result.extravars
    # Every host's summary reached the job's artifacts, and the run id is the job's.
    summaries = result.artifacts["xu_renew"]
    assert set(summaries) >= set(scenario.renewed)


@pytest.mark.lab
def test_a_scheduled_report_with_the_survey_s_defaults_fails_on_expired_missing_and_tls_off(
        lab_factory: Any, collections: pathlib.Path, tmp_path: pathlib.Path) -> None:
    lab = lab_factory("--hosts", "5", "--scenario", "mixed", "--restart-delay", "0.2")
    # xu01 healthy, xu02 expiring in 9 days, xu03 expired, xu04 TLS off, xu05 bound certificate missing from the store.
    result = run_job(PYTHON, AwxJob(playbook="tls_report.yml", survey="report_survey.json"), tmp_path / "private", lab.dir, collections)
    assert result.status == "failed" and result.rc != 0, result.stdout[-4000:]
    assert result.failed_hosts == ["xu03", "xu04", "xu05"], result.stdout[-4000:]
    failures = result.artifacts["xu_report_failures"]
    assert set(failures) == {"xu03", "xu04", "xu05"}
    assert "expired" in failures["xu03"] and "TLS is off" in failures["xu04"] and "LocalMachine\\My" in failures["xu05"]
