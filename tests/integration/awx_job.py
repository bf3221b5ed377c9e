"""A job launched as AWX launches it, for ansible-runner: the private data directory AWX writes, byte for byte.

What AWX writes, from its own sources (ansible/awx 24.6, the last release; `safe_yaml.py` is unchanged since 2019):

- ``env/extravars``: the job template's extra vars, the survey's defaults (a default is sent when it is not None
  and passes the question's own validation: an empty ``integer`` default is not sent, an empty ``text`` one is),
  the answers, then ``awx_meta_vars()`` (``awx_*`` and ``tower_*``, overriding); serialised by
  ``awx.main.utils.safe_yaml.safe_dump``: one YAML document per top-level key, ``default_flow_style=False``, every
  string of a key that is not a job template variable (keys included) tagged ``!unsafe`` in single quotes
  (``awx/main/tasks/jobs.py`` ``RunJob.build_extra_vars_file``, ``BaseTask._write_extra_vars_file``).
- a custom credential's ``extra_vars`` injector: each value a template rendered by Jinja's
  ``ImmutableSandboxedEnvironment`` over the credential's inputs, an input left empty not even defined (so it
  renders as ``''``); written by ``safe_dump`` with no trusted keys to a temporary file in ``env/`` and passed as
  ``-e @file`` (``awx/main/models/credential/__init__.py`` ``CredentialType.inject_credential``).
- ``inventory/hosts``: an executable script printing ``Inventory.get_script_data(hostvars=True, towervars=True)``
  (every group a child of ``all``, an empty group included; ``remote_host_*``/``remote_tower_*`` host variables);
  vaulted values as ``{"__ansible_vault": ...}``, as an inventory synced from a project holds them.
- ``env/cmdline``: ``--check`` for a check job, ``-u`` (the machine credential's user, else root), ``--ask-vault-pass``
  with a vault credential (answered on the prompt), ``--forks``, ``-l`` for the limit, the credential's ``-e @file``;
  the working directory is the project, the playbook a path relative to it.

Run as a script with any ansible-core (tests/matrix), or imported (tests/integration/test_renew_runner.py)::

    python awx_job.py JOB.json PRIVATE_DIR LAB_INVENTORY COLLECTIONS_PATH   # prints the job's status, rc, artifacts, output
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import pathlib
import shlex
import stat
import sys
import tempfile
from collections.abc import Mapping
from typing import Any

import yaml

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
AWX_DOCS = REPO / "docs" / "awx"
VAULT_PROMPT = r"Vault password:\s*?$"
SURVEY_STRING_TYPES = ("text", "textarea", "password")


class _UnsafeStringDumper(yaml.SafeDumper):
    """Every string as a ``!unsafe`` scalar: how AWX keeps Jinja in answers from being templated."""

    def represent_data(self, data: Any) -> yaml.Node:
        if isinstance(data, str):
            return self.represent_scalar("!unsafe", data)
        return super().represent_data(data)


def awx_safe_dump(variables: Mapping[str, Any], trusted: Mapping[str, Any] | None = None) -> str:
    """``variables`` as AWX serialises extra vars: one document per key, ``!unsafe`` unless the key and value are trusted."""
    trusted = trusted or {}
    documents = []
    for key, value in variables.items():
        dumper = yaml.SafeDumper if key in trusted and trusted[key] == value else _UnsafeStringDumper
        documents.append(yaml.dump_all([{key: value}], None, Dumper=dumper, default_flow_style=False))
    return "".join(documents)


def _within(question: Mapping[str, Any], measure: float, convert: type[int] | type[float]) -> bool:
    """The question's min and max (an empty one is no bound), as AWX compares them."""
    low, high = question.get("min"), question.get("max")
    return (low in ("", None) or measure >= convert(low)) and (high in ("", None) or measure <= convert(high))


def _choices(question: Mapping[str, Any]) -> list[Any]:
    choices = question["choices"]
    return [choice for choice in choices.splitlines() if choice.strip()] if isinstance(choices, str) else list(choices)


def _survey_default_is_valid(question: Mapping[str, Any], value: Any) -> bool:
    """AWX's validation of one answer, as it judges a question's default before sending it."""
    checks: dict[str, Any] = {
        **dict.fromkeys(SURVEY_STRING_TYPES, lambda: isinstance(value, str) and _within(question, len(value), int)),
        # AWX compares the exact type: a boolean is no integer, 30.0 no integer either.
        "integer": lambda: isinstance(value, int) and not isinstance(value, bool) and _within(question, value, int),
        "float": lambda: isinstance(value, (float, int)) and not isinstance(value, bool) and _within(question, value, float),
        "multiplechoice": lambda: value in _choices(question),
        "multiselect": lambda: isinstance(value, list),
    }
    return bool(checks.get(question["type"], lambda: True)())


def survey_defaults(survey: Mapping[str, Any]) -> dict[str, Any]:
    """The variables a launch without answers (a schedule) sends: each default that is set and passes validation."""
    sent = {}
    for question in survey.get("spec", []):
        default = question.get("default")
        if default is not None and _survey_default_is_valid(question, default):
            sent[question["variable"]] = default
    return sent


def awx_meta_vars(job_id: int, *, launch_type: str = "scheduled", inventory: tuple[int, str] = (3, "XU servers"),
                  template: tuple[int, str] = (7, "Renew XU certificates"), schedule: tuple[int, str] | None = (5, "daily"),
                  project: tuple[str, str] = ("4f1a3c0de0b2c8f7a9e6d5c4b3a2918070605040", "main"),
                  execution_node: str = "awx-task-0") -> dict[str, Any]:
    """``Job.awx_meta_vars()`` of a job a schedule launched (no user), both prefixes, in AWX's order."""
    prefixes = ("awx", "tower")
    meta: dict[str, Any] = {}
    for prefix in prefixes:
        meta[f"{prefix}_job_id"] = job_id
        meta[f"{prefix}_job_launch_type"] = launch_type
    if schedule is not None:
        for prefix in prefixes:
            meta[f"{prefix}_schedule_id"], meta[f"{prefix}_schedule_name"] = schedule
    for prefix in prefixes:
        meta[f"{prefix}_inventory_id"], meta[f"{prefix}_inventory_name"] = inventory
    for prefix in prefixes:
        meta[f"{prefix}_project_revision"], meta[f"{prefix}_project_scm_branch"] = project
    for prefix in prefixes:
        meta[f"{prefix}_job_template_id"], meta[f"{prefix}_job_template_name"] = template
    for prefix in prefixes:
        meta[f"{prefix}_execution_node"] = execution_node
    return meta


def credential_extra_vars(credential_type: Mapping[str, Any], inputs: Mapping[str, Any]) -> dict[str, Any]:
    """A custom credential's ``extra_vars`` injector rendered over its inputs; an empty input is left undefined."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment  # noqa: PLC0415  (ansible-core's own dependency)

    sandbox = ImmutableSandboxedEnvironment()
    namespace = {name: value for name, value in inputs.items() if isinstance(value, bool) or len(value)}

    def render(node: Any) -> Any:
        if isinstance(node, dict):
            return {render(key): render(value) for key, value in node.items()}
        if isinstance(node, list):
            return [render(item) for item in node]
        return sandbox.from_string(node).render(**namespace)

    rendered: dict[str, Any] = render(credential_type.get("injectors", {}).get("extra_vars", {}))
    return rendered


@dataclasses.dataclass(frozen=True)
class Vaulted:
    """A host variable an inventory synced from a project holds vaulted."""

    ciphertext: str


def _script_value(value: Any) -> Any:
    if isinstance(value, Vaulted):
        return {"__ansible_vault": value.ciphertext}
    return value


def inventory_script_data(inventory_yml: Mapping[str, Any], host_vars: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``get_script_data(hostvars=True, towervars=True)`` of an AWX inventory holding a lab's inventory.yml."""
    children = inventory_yml["all"].get("children", {})
    data: dict[str, Any] = {"all": {"hosts": []}}
    hostvars: dict[str, dict[str, Any]] = {}
    host_ids: dict[str, int] = {}
    for name, declared in children.items():
        group = declared or {}
        info: dict[str, Any] = {}
        hosts = sorted(group.get("hosts") or {})
        if hosts:
            info["hosts"] = hosts
        if group.get("vars"):
            info["vars"] = dict(group["vars"])
        if info:
            data[name] = info
        for host in hosts:
            hostvars[host] = dict((group.get("hosts") or {})[host] or {})
    data["all"]["children"] = list(children)
    data["_meta"] = {"hostvars": {}}
    for number, host in enumerate(sorted(hostvars), start=1):
        host_ids[host] = number
        variables = {**hostvars[host], **{k: _script_value(v) for k, v in host_vars.get(host, {}).items()}}
        for prefix in ("host", "tower"):
            variables.update({f"remote_{prefix}_enabled": "true", f"remote_{prefix}_id": host_ids[host]})
        data["_meta"]["hostvars"][host] = variables
    return data


@dataclasses.dataclass
class AwxJob:
    """What an AWX job template, its survey, credentials and launch hand to ansible-playbook."""

    playbook: str = "renew.yml"
    survey: str | None = "renew_survey.json"
    answers: dict[str, Any] = dataclasses.field(default_factory=dict)
    template_extra_vars: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Inputs of docs/awx/credential_type.yml; None: the job has no such credential.
    pfx_credential: dict[str, Any] | None = None
    vault_password: str | None = None
    host_vars: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # Files of the project (the directory the job runs in), relative path -> base64.
    project_files: dict[str, str] = dataclasses.field(default_factory=dict)
    limit: str = ""
    check: bool = False
    forks: int = 5
    job_id: int = 42

    def to_json(self) -> str:
        host_vars = {host: {k: ({"vault": v.ciphertext} if isinstance(v, Vaulted) else v) for k, v in values.items()}
                     for host, values in self.host_vars.items()}
        return json.dumps(dataclasses.asdict(self) | {"host_vars": host_vars})

    @classmethod
    def from_json(cls, text: str) -> AwxJob:
        fields = json.loads(text)
        fields["host_vars"] = {host: {k: (Vaulted(v["vault"]) if isinstance(v, dict) and set(v) == {"vault"} else v) for k, v in values.items()}
                               for host, values in fields["host_vars"].items()}
        return cls(**fields)


def _write_private(path: pathlib.Path, content: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    path.chmod(mode)


def prepare(job: AwxJob, private: pathlib.Path, lab_inventory: pathlib.Path) -> list[str]:
    """The private data directory of the job; returns the command line arguments (env/cmdline)."""
    project = private / "project"
    project.mkdir(parents=True)
    for source in sorted((AWX_DOCS / "project").rglob("*")):
        if source.is_file():
            target = project / source.relative_to(AWX_DOCS / "project")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    for relative, content in job.project_files.items():
        target = project / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(base64.b64decode(content))

    extra_vars: dict[str, Any] = dict(job.template_extra_vars)
    if job.survey:
        extra_vars.update(survey_defaults(json.loads((AWX_DOCS / job.survey).read_text(encoding="utf-8"))))
    extra_vars.update(job.answers)
    extra_vars.update(awx_meta_vars(job.job_id))
    # ALLOW_JINJA_IN_EXTRA_VARS defaults to "template": the job template's own extra vars are trusted as they are.
    _write_private(private / "env" / "extravars", awx_safe_dump(extra_vars, job.template_extra_vars), stat.S_IRUSR)

    args = ["--check"] if job.check else []
    args += ["-u", "root"]
    if job.vault_password is not None:
        args.append("--ask-vault-pass")
    args.append(f"--forks={job.forks}")
    if job.limit:
        args += ["-l", job.limit]
    if job.pfx_credential is not None:
        credential_type = yaml.safe_load((AWX_DOCS / "credential_type.yml").read_text(encoding="utf-8"))
        injected = credential_extra_vars(credential_type, job.pfx_credential)
        if injected:
            handle, name = tempfile.mkstemp(dir=private / "env")
            with os.fdopen(handle, "w") as file:
                file.write(awx_safe_dump(injected))
            os.chmod(name, stat.S_IRUSR)
            args += ["-e", f"@{name}"]
    _write_private(private / "env" / "cmdline", " ".join(shlex.quote(arg) for arg in args), stat.S_IRUSR | stat.S_IWUSR)

    lab = yaml.safe_load(lab_inventory.read_text(encoding="utf-8"))
    script = inventory_script_data(lab, job.host_vars)
    content = "#! /usr/bin/env python3\n# -*- coding: utf-8 -*-\nprint(%r)\n" % json.dumps(script)  # noqa: UP031  (AWX's own format)
    _write_private(private / "inventory" / "hosts", content, 0o700)
    return args


@dataclasses.dataclass
class JobResult:
    status: str
    rc: int
    stdout: str
    artifacts: dict[str, Any]
    extravars: str
    failed_hosts: list[str]


def run(job: AwxJob, private: pathlib.Path, lab_inventory: pathlib.Path, collections: pathlib.Path) -> JobResult:
    """Run the job with ansible-runner as AWX's task container does (no ansible.cfg but the collections path)."""
    import ansible_runner  # noqa: PLC0415  (in the venv of the ansible-core under test)

    prepare(job, private, lab_inventory)
    passwords = {VAULT_PROMPT: job.vault_password} if job.vault_password is not None else {}
    envvars = {
        "ANSIBLE_COLLECTIONS_PATH": str(collections),
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "1",
        "AWX_PRIVATE_DATA_DIR": str(private),
        "JOB_ID": str(job.job_id),
    }
    runner = ansible_runner.run(private_data_dir=str(private), playbook=job.playbook, passwords=passwords, envvars=envvars, quiet=True)
    stdout = runner.stdout.read()
    events = [json.loads(path.read_text()) for path in (private / "artifacts").glob("*/job_events/*.json")]
    stats = [event for event in events if event.get("event") == "playbook_on_stats"]
    artifacts = stats[-1]["event_data"].get("artifact_data", {}) if stats else {}
    failed = sorted({event["event_data"]["host"] for event in events if event.get("event") in ("runner_on_failed", "runner_on_unreachable")
                     and not event["event_data"].get("ignore_errors")})
    return JobResult(runner.status, int(runner.rc), stdout, artifacts, (private / "env" / "extravars").read_text(), failed)


def main() -> int:
    spec, private, lab_inventory, collections = sys.argv[1:5]
    job = AwxJob.from_json(pathlib.Path(spec).read_text(encoding="utf-8"))
    result = run(job, pathlib.Path(private), pathlib.Path(lab_inventory), pathlib.Path(collections))
    print(json.dumps(dataclasses.asdict(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
