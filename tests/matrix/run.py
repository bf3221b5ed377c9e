"""The ansible-core matrix: a smoke set against the lab with every ansible-core release the collection claims.

Each release in tests/matrix/versions.txt gets its own virtualenv, .venv-matrix/<minor>/, made from pyenv's Python
for it, with that ansible-core and the controller requirements pinned in requirements-dev.txt, from PyPI. A venv is
kept while its inputs (Python, the pins, requirements.txt) are unchanged, so a second run only runs the playbooks.
The lab runs from the main .venv; the playbooks run with the matrix venv's ansible-playbook, away from the
checkout's ansible.cfg, with the collection found through ANSIBLE_COLLECTIONS_PATH, as a user's installed copy is.

Smoke set, each step checked in the lab's state: xu_tls_info, the renew playbook in reuse_key mode and in replace
mode, one xu_cert_swap, and xu_tls_info over ssh (each release's ssh connection sends its own command form). Then the
AWX jobs of tests/integration/awx_scenarios.py, on a lab of their own: written as AWX writes them (survey defaults and
empty answers, the credential type's injector with and without a PFX, a vaulted PFX per host, a relative
xu_renew_pfx_dir, AWX's Limit) and run by ansible-runner in the release's venv, with the collection installed from its
release artifact. Prints a table (pass/fail and seconds per step) and the first error lines of each failure.

    .venv/bin/python tests/matrix/run.py [--only 2.16 2.21] [--jobs 2]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import functools
import hashlib
import json
import os
import pathlib
import re
import secrets
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Callable

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))
import awx_scenarios  # noqa: E402  (shared with tests/integration/test_renew_runner.py)

HERE = REPO / "tests" / "matrix"
LAB_PYTHON = REPO / ".venv" / "bin" / "python"
VENVS = REPO / ".venv-matrix"
WORK = REPO / "lab-run" / "matrix"
PYENV_ROOT = pathlib.Path(os.environ.get("PYENV_ROOT", pathlib.Path.home() / ".pyenv"))
SMOKE_STEPS = ("info", "renew reuse_key", "renew replace", "swap", "info ssh")
AWX_STEPS = {f"awx {make.__name__.split('_', maxsplit=1)[0]}": make for make in awx_scenarios.SCENARIOS}
STEPS = (*SMOKE_STEPS, *AWX_STEPS)
RESTART_DELAY = "0.2"
HOSTS = ("xu01", "xu02")
PLAYBOOK_TIMEOUT = 600
ERROR_LINES = 4
MAX_LINE = 300


@dataclasses.dataclass
class Release:
    ansible_core: str
    python: str

    @property
    def minor(self) -> str:
        return ".".join(self.ansible_core.split(".")[:2])

    @property
    def venv(self) -> pathlib.Path:
        return VENVS / self.minor


@dataclasses.dataclass
class Outcome:
    release: Release
    interpreter: str = ""
    venv_s: float = 0.0
    venv_built: bool = False
    steps: dict[str, tuple[bool, float]] = dataclasses.field(default_factory=dict)
    errors: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.errors and len(self.steps) == len(STEPS) and all(ok for ok, _seconds in self.steps.values())


class StepFailed(Exception):
    """A smoke step failed; the message holds the lines that say why."""


def releases(only: list[str]) -> list[Release]:
    found = []
    for line in (HERE / "versions.txt").read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if fields:
            found.append(Release(fields[0], fields[1]))
    return [r for r in found if not only or r.minor in only]


def pyenv_python(version: str) -> pathlib.Path:
    """The newest pyenv install of ``version`` (3.10 finds 3.10.13)."""
    candidates = sorted(PYENV_ROOT.glob(f"versions/{version}.*/bin/python{version}"), key=lambda p: [int(n) for n in p.parts[-3].split(".")])
    if not candidates:
        raise StepFailed(f"no Python {version} under {PYENV_ROOT}/versions (pyenv install {version})")
    return candidates[-1]


def controller_pins() -> list[str]:
    """requirements-dev.txt's pins of the controller requirements (the names requirements.txt lists) and of ansible-runner
    (AWX's way of running a playbook, for the AWX jobs)."""
    names = {re.split(r"[\[<>=!~; ]", line.strip(), maxsplit=1)[0].lower()
             for line in (REPO / "requirements.txt").read_text().splitlines() if line.strip() and not line.startswith(("#", "-"))}
    pins = [line.strip() for line in (REPO / "requirements-dev.txt").read_text().splitlines() if "==" in line]
    return sorted(pin for pin in pins if pin.split("==")[0].lower() in names | {"ansible-runner"})


def pip_isolated_args() -> list[str]:
    """PyPI only: no pip configuration or environment (extra indexes, local wheels); the system's CA bundle."""
    cafile = ssl.get_default_verify_paths().cafile
    return ["--isolated", "--disable-pip-version-check", "--quiet", "--index-url", "https://pypi.org/simple", *(["--cert", cafile] if cafile else [])]


def prepare_venv(release: Release, outcome: Outcome) -> None:
    """Create or reuse the release's venv; rebuilt only when its inputs change."""
    python = pyenv_python(release.python)
    interpreter = subprocess.run([str(python), "-c", "import platform; print(platform.python_version())"], capture_output=True, text=True, check=True)
    outcome.interpreter = interpreter.stdout.strip()
    requirements = [f"ansible-core=={release.ansible_core}", *controller_pins()]
    key = hashlib.sha256(json.dumps([outcome.interpreter, requirements, (REPO / "requirements.txt").read_text()]).encode()).hexdigest()
    stamp = release.venv / ".matrix-key"
    if stamp.exists() and stamp.read_text() == key and (release.venv / "bin" / "ansible-playbook").exists():
        return
    started = time.monotonic()
    shutil.rmtree(release.venv, ignore_errors=True)
    VENVS.mkdir(exist_ok=True)
    (VENVS / ".gitignore").write_text("*\n")  # never part of the checkout's files (sanity, lint, build)
    subprocess.run([str(python), "-m", "venv", str(release.venv)], check=True, capture_output=True)
    install = [str(release.venv / "bin" / "python"), "-m", "pip", "install", *pip_isolated_args(), "-r", str(REPO / "requirements.txt"), *requirements]
    done = subprocess.run(install, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise StepFailed(f"pip install failed:\n{done.stderr[-2000:]}")
    stamp.write_text(key)
    outcome.venv_s = time.monotonic() - started
    outcome.venv_built = True


# -- the lab and the playbooks --------------------------------------------------------------------------------------


def xulab(*args: str) -> str:
    done = subprocess.run([str(LAB_PYTHON), "-m", "xulab", *args], capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise StepFailed(f"xulab {args[0]} failed: {done.stdout}{done.stderr}")
    return done.stdout


def served(lab: pathlib.Path, host: str) -> set[str]:
    """The thumbprints the host's HTTPS listeners present."""
    state = json.loads(xulab("state", "--dir", str(lab), "--host", host))
    return {listener["thumbprint"] for listener in state["service"]["listeners"] if listener.get("thumbprint")}


def issue(lab: pathlib.Path, host: str, out: pathlib.Path, password_file: pathlib.Path) -> str:
    minted: dict[str, str] = json.loads(xulab("issue", "--dir", str(lab), "--host", host, "--out", str(out), "--password-file", str(password_file)))
    return minted["thumbprint"]


def first_errors(text: str) -> list[str]:
    """The lines of ansible-playbook's output that say what failed."""
    marks = ("fatal:", "FAILED!", "ERROR!", "[ERROR]", "Traceback", "Error", "error:")
    lines: list[str] = []
    for raw in text.splitlines():
        # The same failure on every host is one line.
        line = re.sub(r"\[xu\d+\]", "[host]", raw.strip())[:MAX_LINE]
        if any(mark in line for mark in marks) and line not in lines:
            lines.append(line)
    return lines[:ERROR_LINES] or [line[:MAX_LINE] for line in text.strip().splitlines()[-ERROR_LINES:]]


def playbook(release: Release, lab: pathlib.Path, play: str, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env |= {"ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections"), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_RETRY_FILES_ENABLED": "False", "PATH": f"{release.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"}
    command = [str(release.venv / "bin" / "ansible-playbook"), "-i", str(lab / "inventory.yml"), play, *args]
    # The lab's directory as the working directory: no ansible.cfg there, as on a user's controller.
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=lab.parent, timeout=PLAYBOOK_TIMEOUT, check=False)
    if done.returncode != 0:
        raise StepFailed("\n".join([f"rc={done.returncode}", *first_errors(done.stdout + "\n" + done.stderr)]))


def step_info(release: Release, lab: pathlib.Path) -> None:
    playbook(release, lab, str(HERE / "smoke_info.yml"))


def pfx_folder(lab: pathlib.Path, name: str) -> tuple[pathlib.Path, pathlib.Path]:
    """A private folder beside the lab for PFX files, and the file holding their fresh password."""
    certs = lab.parent / name
    certs.mkdir(mode=0o700, exist_ok=True)
    password = certs / "password"
    password.write_text(secrets.token_urlsafe(18))
    return certs, password


def step_renew_reuse_key(release: Release, lab: pathlib.Path) -> None:
    before = {host: served(lab, host) for host in HOSTS}
    playbook(release, lab, "xtractuniversal.tls.renew", "-e", "xu_renew_mode=reuse_key")
    unchanged = [host for host in HOSTS if served(lab, host) & before[host]]
    if unchanged:
        raise StepFailed(f"still serving the old certificate: {unchanged}")


def step_renew_replace(release: Release, lab: pathlib.Path) -> None:
    certs, password = pfx_folder(lab, "certs")
    minted = {host: issue(lab, host, certs / f"{host}.pfx", password) for host in HOSTS}
    variables = certs / "secrets.json"
    variables.write_text(json.dumps({"xu_renew_pfx_password": password.read_text()}))
    # Every host was just renewed by reuse_key (or is still due): force makes the step independent of the one before.
    playbook(release, lab, "xtractuniversal.tls.renew", "-e", "xu_renew_mode=replace", "-e", "xu_renew_force=true",
             "-e", f"xu_renew_pfx_dir={certs}", "-e", f"@{variables}")
    wrong = {host: sorted(served(lab, host)) for host in HOSTS if served(lab, host) != {minted[host]}}
    if wrong:
        raise StepFailed(f"not serving the new certificate: {wrong}")


def step_swap(release: Release, lab: pathlib.Path) -> None:
    certs, password = pfx_folder(lab, "swap")
    new = issue(lab, "xu01", certs / "new.pfx", password)
    old = sorted(served(lab, "xu01"))
    if len(old) != 1:
        raise StepFailed(f"xu01 serves {old}, expected one certificate")
    variables = certs / "vars.json"
    variables.write_text(json.dumps({"xu_matrix_old": old[0], "xu_matrix_pfx": str(certs / "new.pfx"), "xu_matrix_pfx_password": password.read_text()}))
    playbook(release, lab, str(HERE / "smoke_swap.yml"), "-e", f"@{variables}")
    if served(lab, "xu01") != {new}:
        raise StepFailed(f"xu01 serves {sorted(served(lab, 'xu01'))}, not the new {new}")


def step_info_ssh(release: Release, lab: pathlib.Path) -> None:
    """xu_tls_info through a one-host lab's SSH endpoint (Win32-OpenSSH with PowerShell as the shell)."""
    ssh_lab = lab.parent / "lab-ssh"
    xulab("up", "--dir", str(ssh_lab), "--hosts", "1", "--scenario", "healthy", "--connection", "ssh")
    try:
        playbook(release, ssh_lab, str(HERE / "smoke_info.yml"))
        events = (ssh_lab / "hosts" / "xu01" / "events.jsonl").read_text().splitlines()
        endpoints = {json.loads(line).get("via") for line in events if '"remote_call"' in line}
        if endpoints != {"ssh"}:
            raise StepFailed(f"the calls came through {sorted(map(str, endpoints))}, not ssh")
    finally:
        xulab("down", "--dir", str(ssh_lab))


STEP_RUNNERS: dict[str, Callable[[Release, pathlib.Path], None]] = {
    "info": step_info, "renew reuse_key": step_renew_reuse_key, "renew replace": step_renew_replace, "swap": step_swap,
    "info ssh": step_info_ssh,
}


def timed(outcome: Outcome, name: str, step: Callable[[], None]) -> None:
    started = time.monotonic()
    try:
        step()
        outcome.steps[name] = (True, time.monotonic() - started)
    except (StepFailed, AssertionError, subprocess.TimeoutExpired) as failure:
        outcome.steps[name] = (False, time.monotonic() - started)
        outcome.errors[name] = str(failure).splitlines()[:ERROR_LINES * 2]


def awx_step(release: Release, make: Callable[[pathlib.Path, pathlib.Path], awx_scenarios.Scenario], lab: pathlib.Path,
             work: pathlib.Path, collections: pathlib.Path) -> None:
    scenario, result, problems = awx_scenarios.run_scenario(make, release.venv / "bin" / "python", lab, work, collections)
    if problems:
        raise StepFailed("\n".join([f"{scenario.name}: {'; '.join(problems)}", *awx_scenarios.error_lines(result.stdout, ERROR_LINES)]))


def smoke(release: Release, outcome: Outcome, collections: pathlib.Path) -> None:
    work = WORK / release.minor
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    lab = work / "lab"
    xulab("up", "--dir", str(lab), "--hosts", str(len(HOSTS)), "--scenario", "healthy", "--expiring-in", "10", "--restart-delay", RESTART_DELAY)
    try:
        for name in SMOKE_STEPS:
            timed(outcome, name, functools.partial(STEP_RUNNERS[name], release, lab))
    finally:
        xulab("down", "--dir", str(lab))
    # The AWX jobs on a lab of their own, whose hosts are due: the first job renews them as a schedule would.
    awx_lab = awx_scenarios.start_lab(work / "awx-lab")
    try:
        for name, make in AWX_STEPS.items():
            timed(outcome, name, functools.partial(awx_step, release, make, awx_lab, work / name.replace(" ", "-"), collections))
    finally:
        xulab("down", "--dir", str(awx_lab))


def table(outcomes: list[Outcome]) -> str:
    header = ["ANSIBLE-CORE", "PYTHON", "VENV S", *(s.upper() for s in STEPS), "RESULT"]
    rows = [header]
    for o in outcomes:
        venv = f"{o.venv_s:.0f} new" if o.venv_built else "cached"
        cells = [f"{'pass' if ok else 'FAIL'} {seconds:5.1f}" for ok, seconds in (o.steps.get(s, (False, 0.0)) for s in STEPS)]
        rows.append([o.release.ansible_core, o.interpreter or o.release.python, venv, *cells, "pass" if o.passed else "FAIL"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    for o in outcomes:
        for name, error in o.errors.items():
            lines.append(f"{o.release.ansible_core} {name}:")
            lines.extend(f"    {line}" for line in error)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--only", nargs="*", default=[], help="ansible-core minors to test, e.g. 2.16 2.21 (default: all)")
    parser.add_argument("--jobs", type=int, default=3, help="venvs built at once (the builds wait on the network)")
    args = parser.parse_args()
    outcomes = [Outcome(release) for release in releases(args.only)]
    started = time.monotonic()

    def build(outcome: Outcome) -> None:
        try:
            prepare_venv(outcome.release, outcome)
        except (StepFailed, subprocess.CalledProcessError) as failure:
            outcome.errors["venv"] = str(failure).splitlines()[-ERROR_LINES:]

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        list(pool.map(build, outcomes))
    # The AWX jobs install the collection from its release artifact, as a project sync does; built once.
    artifact = WORK / "artifact"
    shutil.rmtree(artifact, ignore_errors=True)
    artifact.mkdir(parents=True)
    collections = awx_scenarios.install_collection(artifact)
    # The playbooks run one release at a time: on two cores, parallel runs only slow each other down.
    for outcome in outcomes:
        if "venv" not in outcome.errors:
            smoke(outcome.release, outcome, collections)
        print(f"ansible-core {outcome.release.ansible_core}: {'pass' if outcome.passed else 'FAIL'}", flush=True)
    print(table(outcomes))
    print(f"matrix: {time.monotonic() - started:.0f} s")
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "results.json").write_text(json.dumps([dataclasses.asdict(o) for o in outcomes], indent=2))
    return 0 if all(o.passed for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
