"""The chaos suite's quick mode (tests/chaos/run.py --quick): two overlapping renew runs on a host per mode and strategy;
and a failure at each primitive a renewal sends that changes something, with a settings file a JSON library would
rewrite; each scenario on a host of a shared lab."""

from __future__ import annotations

import subprocess

import pytest
from labtools import BIN, REPO


@pytest.mark.lab
def test_overlapping_runs_and_failed_primitives_never_hurt_a_host() -> None:
    done = subprocess.run(
        [str(BIN / "python"), str(REPO / "tests" / "chaos" / "run.py"), "--quick"],
        capture_output=True, text=True, cwd=REPO, timeout=900, check=False,
    )
    output = done.stdout + "\n" + done.stderr
    assert done.returncode == 0 and "failures: 0" in done.stdout, output
