"""`make demo` as a new user runs it on Debian 12 or Ubuntu 22.04: a Python older than the development pin's.

The venv gets the newest ansible-core that Python runs (tests/matrix/versions.txt), the demo reports and renews, and
the PFX files and their password live only in a temporary folder that is gone afterwards.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
PYENV_ROOT = pathlib.Path(os.environ.get("PYENV_ROOT", pathlib.Path.home() / ".pyenv"))
DEMO_TIMEOUT = 900


def pyenv_python(version: str) -> pathlib.Path | None:
    found = sorted(PYENV_ROOT.glob(f"versions/{version}.*/bin/python{version}"))
    return found[-1] if found else None


@pytest.mark.parametrize(("version", "core"), [("3.11", "2.19")])
def test_the_demo_runs_on_an_older_python_and_leaves_no_secret_behind(version: str, core: str, tmp_path: pathlib.Path) -> None:
    python = pyenv_python(version)
    assert python is not None, f"no Python {version} under {PYENV_ROOT} (the README asks for pyenv's 3.10, 3.11 and 3.13)"
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "VIRTUAL_ENV"))} | {"TMPDIR": str(temp)}
    # The venv is kept beside the matrix's (make rebuilds it when its requirements change), as a user's .venv would be.
    venv = REPO / ".venv-matrix" / f"demo-{version}"
    done = subprocess.run(["make", "demo", f"PYTHON={python}", f"VENV={venv}"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=DEMO_TIMEOUT, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    installed = subprocess.run([str(venv / "bin" / "python"), "-c", "import ansible; print(ansible.__version__)"], capture_output=True,
                               text=True, check=True).stdout
    assert installed.startswith(f"{core}."), installed
    # The report fails on this fleet, as a scheduled one must; the renewal renews what is due.
    assert "FAILS  3 hosts: xu03, xu04, xu05" in output and "The report failed the run, as it should on this fleet" in output
    assert "TOTAL  5 hosts: 3 renewed, 1 skipped, 1 not_due" in output, output[-5000:]
    # No ACME renewal: the older Python's venv has ansible-core alone, not the community.crypto ACME issuance is tested with.
    assert "The ACME renewal (make demo-acme) needs community.crypto 3.5 or newer" in output, output[-5000:]
    assert "acme/minimal_outage" not in output
    # The PFX files and their password were in a private temporary folder, which is gone; nothing of them in the checkout.
    # The ACME servers' folder (the account key, the TSIG secret) too.
    assert [path.name for path in temp.iterdir() if path.name.startswith(("xu-demo-certs.", "xu-demo-acme."))] == []
    left = [path for path in (REPO / "lab-run" / "demo").rglob("*") if path.suffix == ".pfx" or path.name in ("password", "secrets.yml")]
    assert left == []


def test_the_readme_shows_what_the_demo_prints() -> None:
    """The README's sample output is the demo's: the reason the renewal gives a host with TLS off, and the report's failures."""
    sys.path.insert(0, str(REPO / ".collections"))
    from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._plan import TLS_OFF_REASON  # noqa: PLC0415

    readme = " ".join((REPO / "README.md").read_text().split())
    assert f"xu04 skipped - - - - {TLS_OFF_REASON}" in readme
    assert "does not turn TLS on" not in readme
    assert "FAILS 3 hosts: xu03, xu04, xu05" in readme and "NOT RENEWED" not in readme.split("## What is here", maxsplit=1)[0]
