"""Scheduled tasks: the one-shot task that reopens the firewall if a renewal never finishes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .timefmt import iso_utc

if TYPE_CHECKING:
    from .host import Host


@dataclass
class ScheduledTask:
    name: str
    run_at: datetime
    fw_group_to_remove: str
    description: str | None
    timer: asyncio.TimerHandle | None = None

    def state(self) -> dict[str, object]:
        return {
            "name": self.name,
            "run_at_utc": iso_utc(self.run_at),
            "fw_group_to_remove": self.fw_group_to_remove,
            "description": self.description,
        }


class TaskScheduler:
    """The host's Task Scheduler, holding the tasks in the root folder (names are case-insensitive)."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self._tasks: dict[str, ScheduledTask] = {}

    def get(self, name: str) -> ScheduledTask | None:
        return self._tasks.get(name.casefold())

    def register(self, name: str, run_at: datetime, group: str, description: str | None) -> None:
        """Register (or replace) the task; a start time already past runs it at once (StartWhenAvailable)."""
        self._cancel(self._tasks.pop(name.casefold(), None))
        task = ScheduledTask(name, run_at, group, description)
        delay = max(0.0, (run_at - datetime.now(UTC)).total_seconds())
        task.timer = asyncio.get_running_loop().call_later(delay, self._run, task)
        self._tasks[name.casefold()] = task
        self.host.emit_task("registered", name, run_at_utc=iso_utc(run_at))

    def remove(self, name: str) -> bool:
        task = self._tasks.pop(name.casefold(), None)
        if task is None:
            return False
        self._cancel(task)
        self.host.emit_task("removed", task.name)
        return True

    def cancel_all(self) -> None:
        for task in self._tasks.values():
            self._cancel(task)

    def state(self) -> list[dict[str, object]]:
        return [task.state() for task in self._tasks.values()]

    def __len__(self) -> int:
        return len(self._tasks)

    @staticmethod
    def _cancel(task: ScheduledTask | None) -> None:
        if task is not None and task.timer is not None:
            task.timer.cancel()

    def _run(self, task: ScheduledTask) -> None:
        """Runs as SYSTEM: removes every firewall rule of the group, then unregisters itself."""
        if self._tasks.get(task.name.casefold()) is not task:
            return
        removed = self.host.firewall.remove_group(task.fw_group_to_remove)
        self.host.emit_firewall(task.fw_group_to_remove, removed=removed, added=0, by=f"task {task.name}")
        del self._tasks[task.name.casefold()]
        self.host.emit_task("ran", task.name, removed_rules=removed)
