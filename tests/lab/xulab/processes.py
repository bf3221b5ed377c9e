"""Whether a process still runs: the lab's claims, user files and background server are tied to pids."""

from __future__ import annotations

from pathlib import Path


def process_alive(pid: int) -> bool:
    """True for a running process; a zombie (exited, not yet reaped) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"
