"""AWX jobs against the lab, as an operator sets them up from docs/awx/: shared by test_renew_runner.py and tests/matrix.

Each scenario is a job (tests/integration/awx_job.py encodes it exactly as AWX does) and what the lab must show after
it. The scenarios run with the main .venv's tools (the lab, the PFX files, vault); the job itself runs with whichever
Python and ansible-core the caller names, through ``awx_job.py`` as a script.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import pathlib
import secrets
import subprocess
import sys
from collections.abc import Callable

import yaml
from awx_job import AwxJob, JobResult, Vaulted

REPO = pathlib.Path(__file__).resolve().parents[2]
LAB_PYTHON = REPO / ".venv" / "bin" / "python"
AWX_JOB = pathlib.Path(__file__).resolve().parent / "awx_job.py"
HOSTS = ("xu01", "xu02")
JOB_TIMEOUT = 900


def xulab(*args: str) -> str:
    done = subprocess.run([str(LAB_PYTHON), "-m", "xulab", *args], capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise AssertionError(f"xulab {' '.join(args)} failed: {done.stdout}{done.stderr}")
    return done.stdout


def served(lab: pathlib.Path, host: str) -> set[str]:
    """The thumbprints the host's HTTPS listeners present, as a client sees them."""
    state = json.loads(xulab("state", "--dir", str(lab), "--host", host))
    return {listener["thumbprint"] for listener in state["service"]["listeners"] if listener.get("thumbprint")}


def issue(lab: pathlib.Path, host: str, out: pathlib.Path, password: str, *names: str) -> str:
    """A PFX from the lab's CA for ``host`` (and ``names`` in its SAN); its thumbprint."""
    password_file = out.with_suffix(".password")
    password_file.write_text(password)
    minted = json.loads(xulab("issue", "--dir", str(lab), "--host", host, "--out", str(out), "--password-file", str(password_file),
                              *(["--san", *names] if names else [])))
    password_file.unlink()
    thumbprint: str = minted["thumbprint"]
    return thumbprint


def vaulted(text: str, password: str) -> Vaulted:
    """``text`` encrypted as ansible-vault does (format 1.1, readable by every ansible-core)."""
    from ansible.parsing.vault import VaultLib, VaultSecret  # noqa: PLC0415  (the main .venv's ansible-core)

    secret = VaultSecret(password.encode())
    return Vaulted(VaultLib([("default", secret)]).encrypt(text, secret).decode())


def install_collection(work: pathlib.Path) -> pathlib.Path:
    """The collection built into its release artifact and installed from it, as AWX installs it when the project syncs."""
    galaxy = str(LAB_PYTHON.parent / "ansible-galaxy")
    dist = work / "dist"
    subprocess.run([galaxy, "collection", "build", str(REPO), "--output-path", str(dist)], check=True, capture_output=True, cwd=work)
    (artifact,) = dist.glob("xtractuniversal-tls-*.tar.gz")
    subprocess.run([galaxy, "collection", "install", str(artifact), "-p", str(work / "collections")], check=True, capture_output=True, cwd=work)
    return work / "collections"


@dataclasses.dataclass
class Scenario:
    name: str
    job: AwxJob
    # Hosts that must serve a new certificate afterwards: the thumbprint it must be, or None for "any but the old one".
    renewed: dict[str, str | None]
    untouched: tuple[str, ...] = ()
    successful: bool = True
    # Lines the job's output must hold.
    output: tuple[str, ...] = ()


def b64(path: pathlib.Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def empty_text_answers() -> dict[str, str]:
    """An empty text answer for every string and list variable of the role (a survey with a question for each, left blank).

    Not the mode (required), nor the credential's variables (the credential sets them); a number or a boolean comes from
    an integer, float or multiple-choice question, which never sends an empty string.
    """
    options = yaml.safe_load((REPO / "roles" / "renew" / "meta" / "argument_specs.yml").read_text(encoding="utf-8"))["argument_specs"]["main"]["options"]
    return {name: "" for name, option in options.items()
            if option.get("type", "str") in ("str", "list") and name != "xu_renew_mode" and not name.startswith("xu_renew_credential_")}


def survey_defaults_reuse_key(lab: pathlib.Path, work: pathlib.Path) -> Scenario:
    """The shipped survey left at its defaults (reuse_key), every other string variable answered empty, the shipped
    credential type holding a password only."""
    return Scenario(
        "survey defaults",
        AwxJob(answers=empty_text_answers(), pfx_credential={"pfx_password": secrets.token_urlsafe(12)}),
        renewed=dict.fromkeys(HOSTS),
    )


def relative_dir_and_vaulted_host_pfx(lab: pathlib.Path, work: pathlib.Path) -> Scenario:
    """replace: xu01's PFX in the project's certs/ (a relative xu_renew_pfx_dir), xu02's a vaulted host variable; the
    credential holds the password and no PFX, so it must not hide xu02's own."""
    password, vault_password = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    xu01, xu02 = work / "xu01.pfx", work / "xu02.pfx"
    minted: dict[str, str | None] = {"xu01": issue(lab, "xu01", xu01, password), "xu02": issue(lab, "xu02", xu02, password)}
    job = AwxJob(
        answers={"xu_renew_mode": "replace", "xu_renew_pfx_dir": "certs", "xu_renew_force": "true"},
        pfx_credential={"pfx_password": password, "pfx_content": ""},
        vault_password=vault_password,
        host_vars={"xu02": {"xu_renew_pfx_content": vaulted(b64(xu02), vault_password)}},
        project_files={"certs/xu01.pfx": b64(xu01)},
    )
    return Scenario("relative dir, vaulted host PFX", job, renewed=minted)


def credential_pfx_with_limit(lab: pathlib.Path, work: pathlib.Path) -> Scenario:
    """replace with the credential's PFX (one certificate for every host) and AWX's Limit: the credential's PFX wins over
    the host's own vaulted one; the host outside the limit is left alone and summed up in one line."""
    password, vault_password = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    shared, own = work / "shared.pfx", work / "own.pfx"
    shared_thumbprint = issue(lab, "xu01", shared, password, "xu01.xulab.test", "xu02.xulab.test")
    issue(lab, "xu01", own, password)
    job = AwxJob(
        answers={"xu_renew_mode": "replace", "xu_renew_force": "true"},
        pfx_credential={"pfx_password": password, "pfx_content": b64(shared)},
        vault_password=vault_password,
        host_vars={"xu01": {"xu_renew_pfx_content": vaulted(b64(own), vault_password)}},
        limit="xu01",
    )
    return Scenario("credential PFX, Limit", job, renewed={"xu01": shared_thumbprint}, untouched=("xu02",),
                    output=("NOT TARGETED  1 host of the group is outside --limit (AWX: Limit)",))


SCENARIOS: tuple[Callable[[pathlib.Path, pathlib.Path], Scenario], ...] = (
    survey_defaults_reuse_key, relative_dir_and_vaulted_host_pfx, credential_pfx_with_limit,
)


def start_lab(directory: pathlib.Path) -> pathlib.Path:
    """Two XU servers whose certificates expire in 10 days (both due), restarting in a fifth of a second."""
    xulab("up", "--dir", str(directory), "--hosts", str(len(HOSTS)), "--scenario", "healthy", "--expiring-in", "10", "--restart-delay", "0.2")
    return directory


def run_job(python: pathlib.Path, job: AwxJob, private: pathlib.Path, lab: pathlib.Path, collections: pathlib.Path) -> JobResult:
    """The job through ansible-runner with ``python`` (a venv with the ansible-core under test and ansible-runner)."""
    private.mkdir(parents=True)
    spec = private.parent / f"{private.name}.json"
    spec.write_text(job.to_json())
    # ansible-runner starts the ansible-playbook it finds on PATH: the one beside ``python``.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")} | {"PATH": f"{python.parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([str(python), str(AWX_JOB), str(spec), str(private), str(lab / "inventory.yml"), str(collections)],
                          capture_output=True, text=True, timeout=JOB_TIMEOUT, check=False, env=env)
    if done.returncode != 0:
        raise AssertionError(f"awx_job.py failed: {done.stdout[-2000:]}{done.stderr[-4000:]}")
    return JobResult(**json.loads(done.stdout))


def run_ids_logged(lab: pathlib.Path, host: str) -> list[str]:
    """The run id of each of the host's Windows event log entries, oldest first."""
    entries = [json.loads(line) for line in xulab("events", "--dir", str(lab), "--host", host, "--type", "eventlog").splitlines()]
    return [line.split(": ", 1)[1] for entry in entries for line in entry["message"].splitlines() if line.startswith("run_id: ")]


def check(scenario: Scenario, result: JobResult, before: dict[str, set[str]], after: dict[str, set[str]],
          logged: dict[str, list[str]] | None = None) -> list[str]:
    """What is wrong with the job's outcome, as the lab and AWX's artifacts show it; empty when it is right. ``logged``: the
    run ids each renewed host's event log gained during the job."""
    problems = []
    # One run id for the whole job, AWX's own: every entry the job left on a host names it.
    problems += [f"{host} logged the run ids {sorted(set(ids))}, not awx-{scenario.job.job_id}"
                 for host, ids in (logged or {}).items() if set(ids) != {f"awx-{scenario.job.job_id}"}]
    if (result.status == "successful") != scenario.successful or (result.rc == 0) != scenario.successful:
        problems.append(f"job {result.status}, rc {result.rc}; failed hosts {result.failed_hosts}")
    for host, thumbprint in scenario.renewed.items():
        if thumbprint is None and after[host] & before[host]:
            problems.append(f"{host} still serves its old certificate")
        if thumbprint is not None and after[host] != {thumbprint}:
            problems.append(f"{host} serves {sorted(after[host])}, not {thumbprint}")
    problems += [f"{host} changed: {sorted(before[host])} -> {sorted(after[host])}" for host in scenario.untouched if after[host] != before[host]]
    results = result.artifacts.get("xu_renew_results", {})
    problems += [f"artifact xu_renew_results[{host}] is {results.get(host)!r}" for host in scenario.renewed if results.get(host) != "renewed"]
    problems += [f"the output lacks {line!r}" for line in scenario.output if line not in result.stdout]
    # The credential's and the vault's secrets never reach the job's output or artifacts.
    shown = result.stdout + json.dumps(result.artifacts)
    secrets_given = [*(scenario.job.pfx_credential or {}).values(), scenario.job.vault_password]
    problems += ["a secret shows in the job's output or artifacts" for secret in secrets_given if secret and secret in shown]
    return problems


def run_scenario(make: Callable[[pathlib.Path, pathlib.Path], Scenario], python: pathlib.Path, lab: pathlib.Path, work: pathlib.Path,
                 collections: pathlib.Path) -> tuple[Scenario, JobResult, list[str]]:
    work.mkdir(parents=True, exist_ok=True)
    scenario = make(lab, work)
    before = {host: served(lab, host) for host in HOSTS}
    logged_before = {host: len(run_ids_logged(lab, host)) for host in scenario.renewed}
    result = run_job(python, scenario.job, work / "private", lab, collections)
    after = {host: served(lab, host) for host in HOSTS}
    logged = {host: run_ids_logged(lab, host)[logged_before[host]:] for host in scenario.renewed}
    return scenario, result, check(scenario, result, before, after, logged)


def error_lines(stdout: str, limit: int = 6) -> list[str]:
    marks = ("fatal:", "FAILED", "ERROR", "[ERROR]", "Traceback", "NOT RENEWED")
    lines = [line.strip()[:300] for line in stdout.splitlines() if any(mark in line for mark in marks)]
    return lines[:limit] or stdout.strip().splitlines()[-limit:]


if __name__ == "__main__":
    print("import this module; run awx_job.py as the script", file=sys.stderr)
    sys.exit(2)
