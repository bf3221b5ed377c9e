"""Scheduled tasks: the one-shot task that reopens the firewall if a renewal never finishes.

A task runs when its host's clock (timefmt.HostClock) reaches its trigger: by a timer while real time
passes, or at once when the clock is advanced or set past it, in trigger order, before the advance
returns. What it does is stamped with its trigger time, as a punctual Task Scheduler would run it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from .timefmt import iso_utc, iso_utc_ms

if TYPE_CHECKING:
    from .host import Host


@dataclass
class ScheduledTask:
    name: str
    run_at: datetime
    fw_group_to_remove: str
    description: str | None
    # The host's time at registration: a task whose start time had passed by then runs at once, stamped so.
    registered_at: datetime
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
        host.clock.on_move(self.run_due)

    def get(self, name: str) -> ScheduledTask | None:
        return self._tasks.get(name.casefold())

    def register(self, name: str, run_at: datetime, group: str, description: str | None) -> None:
        """Register (or replace) the task; a start time already past runs it at once (StartWhenAvailable)."""
        self._cancel(self._tasks.pop(name.casefold(), None))
        task = ScheduledTask(name, run_at, group, description, self.host.clock.now())
        self._tasks[name.casefold()] = task
        self.host.emit_task("registered", name, run_at_utc=iso_utc(run_at), host_time=iso_utc_ms(task.registered_at))
        self._arm(task)

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

    def run_due(self) -> None:
        """The clock moved: run every task it passed, earliest trigger first; the others wait for their new time."""
        now = self.host.clock.now()
        for task in sorted(self._tasks.values(), key=lambda t: t.run_at):
            if task.run_at <= now:
                self._run(task)
            else:
                self._arm(task)

    def _arm(self, task: ScheduledTask) -> None:
        """A timer for the task's trigger; one already due starts as soon as the scheduler gets to it (after the
        registering call's next steps, as Task Scheduler starts a task's process of its own)."""
        self._cancel(task)
        delay = (task.run_at - self.host.clock.now()).total_seconds()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a unit test's host): the clock's moves run it
            if delay <= 0:
                self._run(task)
            return
        task.timer = loop.call_later(max(delay, 0.0), self._timer_fired, task)

    def _timer_fired(self, task: ScheduledTask) -> None:
        # Real time reached the trigger, unless the host's clock was set back meanwhile: then it waits on.
        if self._tasks.get(task.name.casefold()) is not task:
            return
        if task.run_at <= self.host.clock.now():
            self._run(task)
        else:
            self._arm(task)

    @staticmethod
    def _cancel(task: ScheduledTask | None) -> None:
        if task is not None and task.timer is not None:
            task.timer.cancel()
            task.timer = None

    def _run(self, task: ScheduledTask) -> None:
        """Runs as SYSTEM: removes every firewall rule of the group, then unregisters itself."""
        if self._tasks.get(task.name.casefold()) is not task:
            return
        self._cancel(task)
        del self._tasks[task.name.casefold()]
        # Stamped with its trigger (or its registration, for one whose start time had passed by then).
        with self.host.clock.pinned(max(task.run_at, task.registered_at)):
            removed = self.host.firewall.remove_group(task.fw_group_to_remove)
            self.host.emit_firewall(task.fw_group_to_remove, removed=removed, added=0, by=f"task {task.name}")
            self.host.emit_task("ran", task.name, removed_rules=removed)
