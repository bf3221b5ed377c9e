"""The chaos suite's quick mode: two overlapping renew runs on one host, for each mode and strategy (tests/chaos/run.py)."""

from __future__ import annotations

import subprocess

import pytest
from labtools import BIN, REPO


@pytest.mark.lab
def test_two_overlapping_runs_never_hurt_each_other() -> None:
    done = subprocess.run(
        [str(BIN / "python"), str(REPO / "tests" / "chaos" / "run.py"), "--quick"],
        capture_output=True, text=True, cwd=REPO, timeout=600, check=False,
    )
    output = done.stdout + "\n" + done.stderr
    assert done.returncode == 0 and "failures: 0" in done.stdout, output
