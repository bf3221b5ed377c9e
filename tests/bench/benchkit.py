"""What the benchmark scripts measure alike: a playbook's wall time and its controller's CPU, the lab's CPU and memory,
the machine's load.

CPU is user + sys from the kernel. A playbook's is ``ansible-playbook`` with every worker it forked (its reaped
descendants, from ``wait4``); the lab's is its process and its live worker processes, read from ``/proc``.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import IO

HERE = pathlib.Path(__file__).resolve().parents[2]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Checkout:
    """The code under test: a checkout with its own .venv (``make venv``), its collection, playbooks and lab."""

    root: pathlib.Path

    @property
    def bin(self) -> pathlib.Path:
        return self.root / ".venv" / "bin"

    def env(self, callback: str = "ansible.builtin.default") -> dict[str, str]:
        return dict(os.environ, ANSIBLE_CONFIG=str(self.root / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK=callback)

    def describe(self) -> str:
        commit = subprocess.run(["git", "-C", str(self.root), "log", "-1", "--format=%h %s"], capture_output=True, text=True, check=False)
        return f"{self.root} at {commit.stdout.strip()[:80] or 'an unknown commit'}"


@dataclass(frozen=True)
class PlaybookRun:
    returncode: int
    stdout: str
    stderr: str
    start: float
    end: float
    cpu_s: float

    @property
    def wall_s(self) -> float:
        return self.end - self.start


def run_playbook(command: list[str], env: dict[str, str]) -> PlaybookRun:
    """Run ``command`` (an ansible-playbook command line), its output captured, its CPU counted with its descendants'."""
    start = time.time()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    assert process.stdout is not None and process.stderr is not None
    output: dict[str, str] = {}
    readers = [threading.Thread(target=_read_all, args=(stream, output, name)) for name, stream in (("out", process.stdout), ("err", process.stderr))]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    # Reaped here rather than by Popen.wait(), for its resource usage: its own and every descendant's it reaped.
    _pid, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return PlaybookRun(process.returncode, output["out"], output["err"], start, time.time(), usage.ru_utime + usage.ru_stime)


def _read_all(stream: IO[str], output: dict[str, str], name: str) -> None:
    output[name] = stream.read()


def _processes() -> dict[int, list[str]]:
    """Every process's /proc/PID/stat fields after the command name (which may hold spaces and parentheses)."""
    table = {}
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            table[int(entry.name)] = stat[stat.rindex(")") + 2:].split()
    return table


def _tree(pid: int, table: dict[int, list[str]]) -> set[int]:
    children: dict[int, list[int]] = {}
    for member, fields in table.items():
        children.setdefault(int(fields[1]), []).append(member)
    tree, frontier = {pid}, [pid]
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in tree:
                tree.add(child)
                frontier.append(child)
    return tree


def process_tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and every live descendant, with the children each has reaped (utime, stime, cutime, cstime)."""
    table = _processes()
    return sum(sum(int(value) for value in table[member][11:15]) for member in _tree(pid, table) if member in table) / CLOCK_TICKS


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and its live descendants, MiB."""
    total = 0.0
    for member in _tree(pid, _processes()):
        try:
            status = pathlib.Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        total += sum(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")) / 1024
    return total


def lab_pid(directory: pathlib.Path) -> int:
    return int((directory / "lab.pid").read_text())


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"
