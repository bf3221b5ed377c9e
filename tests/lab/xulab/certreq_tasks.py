"""The one-shot SYSTEM tasks certreq runs in (the agent's Invoke-XuAsSystem), and what a killed call leaves behind.

Each machine enrolment or renewal registers `xtractuniversal.tls certreq <guid>` in the root task folder, with a
description that says until when the call may still be at work, writes its files (`certreq-<guid>.txt`, and for an
enrolment `enrol-<guid>.inf` and `.req`) into the collection's folder, runs, and removes task and files again. A
call killed meanwhile (Ctrl-C, a cancelled AWX job: `fault --set kill_certreq=N`) ends without that cleanup: the
task ran to its end, as Task Scheduler runs it whatever happens to the caller, and it and its files stay. Before it
registers its own, every call sweeps the leftovers as the agent does: only tasks of that exact name pattern, only
past their time (tasks of agents before the sweep carry none and go once they are not running), with their files;
a file without a task only when a day old.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from .errors import LabError
from .folders import JOURNAL_DIR
from .timefmt import iso_utc, utc_now

if TYPE_CHECKING:
    from .host import Host

TASK_PREFIX = "xtractuniversal.tls certreq "
TASK_NAME = re.compile(r"^xtractuniversal\.tls certreq ([0-9a-f]{32})\Z")
LEFTOVER_FILE = re.compile(r"^(certreq|enrol)-([0-9a-f]{32})\.(txt|inf|req|cer|p7b|rsp)\Z")
# The agent's description: past this time neither the call nor its task (stopped by Task Scheduler at timeout + 60 s) is at work.
GRACE_S = 120
ORPHAN_AGE = timedelta(days=1)
LEFTOVER_KINDS = ("stale", "running", "legacy", "orphan")
T = TypeVar("T")


class CallKilled(Exception):
    """The agent's process ended mid-call (the controller was interrupted): no answer, no cleanup."""


@dataclass
class CertreqTask:
    id: str
    until: datetime | None  # None: registered by an agent before the sweep (no description)
    state: str = "Ready"

    @property
    def name(self) -> str:
        return TASK_PREFIX + self.id

    def state_json(self) -> dict[str, object]:
        return {"name": self.name, "state": self.state, "description": f"xtractuniversal.tls certreq until {iso_utc(self.until)}" if self.until else None}


class CertreqTasks:
    """The host's certreq tasks (beside the gate's tasks in tasks.py, in the same Task Scheduler folder)."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.tasks: dict[str, CertreqTask] = {}
        # `fault --set kill_certreq=N`: the next N machine certreq calls are killed once their task has run.
        self.kills = 0

    def _folder_files(self) -> list[str]:
        folder = self.host.fs.resolve(JOURNAL_DIR)
        return sorted(child.name for child in folder.iterdir() if child.is_file()) if folder.is_dir() else []

    def _remove_file(self, name: str) -> None:
        self.host.fs.resolve(f"{JOURNAL_DIR}\\{name}").unlink(missing_ok=True)

    def sweep(self) -> list[str]:
        """The agent's Remove-XuStaleCertreq; returns the names of the tasks it removed."""
        now = utc_now()
        swept = []
        for task in sorted(self.tasks.values(), key=lambda t: t.name):
            if task.until is None and task.state == "Running":
                continue
            if task.until is not None and task.until > now:
                continue
            del self.tasks[task.id]
            self.host.emit_task("removed", task.name, reason="stale", was=task.state)
            swept.append(task.name)
        folder = self.host.fs.resolve(JOURNAL_DIR)
        for name in self._folder_files():
            match = LEFTOVER_FILE.match(name)
            if match is None or match.group(2) in self.tasks:
                continue
            modified = datetime.fromtimestamp((folder / name).stat().st_mtime, tz=now.tzinfo)
            if TASK_PREFIX + match.group(2) in swept or modified < now - ORPHAN_AGE:
                self._remove_file(name)
                self.host.emit("file_remove", path=f"{JOURNAL_DIR}\\{name}", reason="stale")
        return swept

    def run(self, timeout_s: float, files: dict[str, bytes], work: Callable[[str], T], task_id: str | None = None) -> tuple[T, list[str]]:
        """Sweep, register the task, write its files, run `work(task_id)`, then remove task and files (unless the call is killed)."""
        swept = self.sweep()
        task = CertreqTask(task_id or uuid.uuid4().hex, utc_now() + timedelta(seconds=timeout_s + GRACE_S))
        self.tasks[task.id] = task
        self.host.emit_task("registered", task.name, run_as="SYSTEM")
        folder = self.host.fs.resolve(JOURNAL_DIR)
        for suffix, data in files.items():
            (folder / suffix.replace("<id>", task.id)).write_bytes(data)
        self.host.emit_task("ran", task.name)
        result = work(task.id)
        if self.kills > 0:
            self.kills -= 1
            self.host.emit("fault", action="consumed", key="kill_certreq", remaining=self.kills)
            raise CallKilled(task.name)
        del self.tasks[task.id]
        for suffix in files:
            self._remove_file(suffix.replace("<id>", task.id))
        self.host.emit_task("removed", task.name)
        return result, swept

    def plant(self, kind: str) -> None:
        """`fault --set certreq_leftover=KIND`: what an earlier call left (stale: killed yesterday; running: a call at work now;
        legacy: an older agent's finished task without a time; orphan: a file of a call killed before its task existed)."""
        if kind not in LEFTOVER_KINDS:
            raise LabError(f"certreq_leftover takes {', '.join(LEFTOVER_KINDS)}, not {kind!r}")
        now = utc_now()
        task_id = uuid.uuid4().hex
        age = {"stale": timedelta(days=1), "legacy": timedelta(days=3), "orphan": timedelta(days=2)}.get(kind, timedelta())
        if kind != "orphan":
            until = {"stale": now - timedelta(hours=23), "running": now + timedelta(seconds=300 + GRACE_S), "legacy": None}[kind]
            self.tasks[task_id] = CertreqTask(task_id, until, "Running" if kind == "running" else "Ready")
        folder = self.host.fs.resolve(JOURNAL_DIR)
        folder.mkdir(parents=True, exist_ok=True)
        for name in (f"certreq-{task_id}.txt", f"enrol-{task_id}.inf"):
            path = folder / name
            path.write_bytes("certreq output\r\n".encode("utf-16"))
            stamp = (now - age).timestamp()
            os.utime(path, (stamp, stamp))

    def state(self) -> list[dict[str, object]]:
        return [task.state_json() for task in sorted(self.tasks.values(), key=lambda t: t.name)]
