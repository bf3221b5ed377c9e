"""Times as the protocol writes them, and the hosts' clocks.

Each host has a clock of its own: the lab machine's real time, plus the fleet-wide advance a test
controls (`xulab clock --advance`), plus the host's own offset (`up --clock-offset`, a skewed host).
Everything on a host that reads "now" reads its clock: the agent's answer, the scheduled tasks,
the event log's stamps. Real durations (a service's restart, a probe's timeout) stay real.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

from .errors import PrimitiveError


def utc_now() -> datetime:
    """The lab machine's real time (whole seconds): for what is not a host's, such as the CA's."""
    return datetime.now(UTC).replace(microsecond=0)


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_utc_ms(moment: datetime) -> str:
    """ISO 8601 UTC with milliseconds, as the agent reports its host's time."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def ceil_second(moment: datetime) -> datetime:
    """Rounded up to the whole second, as the agent sets a task's trigger."""
    return moment if not moment.microsecond else moment.replace(microsecond=0) + timedelta(seconds=1)


def parse_iso_utc(value: object, argument: str) -> datetime:
    """Parse an ISO 8601 time; one without an offset is taken as UTC."""
    if not isinstance(value, str):
        raise PrimitiveError("InvalidArgument", f"{argument} must be an ISO 8601 UTC time.")
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise PrimitiveError("InvalidArgument", f"{argument} is not an ISO 8601 time: {value}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class FleetClock:
    """The part of every host's clock a test controls: how far the fleet has been advanced (seconds, never back)."""

    def __init__(self, real_time: Callable[[], float] = time.time) -> None:
        # The lab machine's time (a unit test may stop it, and move only what it advances).
        self.real_time = real_time
        self.advanced_s = 0.0
        # Called after the clock moved (each host's scheduler, to run what became due).
        self._moved: list[Callable[[], None]] = []

    def on_move(self, callback: Callable[[], None]) -> None:
        self._moved.append(callback)

    def advance(self, seconds: float) -> None:
        """Move every host's clock forward; the tasks that became due have run when this returns."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"the clock only moves forward, by a finite number of seconds, not {seconds!r}")
        self.advanced_s += seconds
        for callback in list(self._moved):
            callback()


class HostClock:
    """One host's clock: real time + the fleet's advance + this host's offset (negative: the host is behind)."""

    def __init__(self, fleet: FleetClock | None = None, offset_s: float = 0.0) -> None:
        self.fleet = fleet or FleetClock()
        self.offset_s = offset_s
        self._pinned: datetime | None = None
        self._moved: list[Callable[[], None]] = []
        self.fleet.on_move(self._notify)

    def now(self) -> datetime:
        if self._pinned is not None:
            return self._pinned
        return datetime.fromtimestamp(self.timestamp_unpinned(), UTC)

    def timestamp(self) -> float:
        return self._pinned.timestamp() if self._pinned is not None else self.timestamp_unpinned()

    def timestamp_unpinned(self) -> float:
        return self.fleet.real_time() + self.fleet.advanced_s + self.offset_s

    def on_move(self, callback: Callable[[], None]) -> None:
        self._moved.append(callback)

    def set_offset(self, offset_s: float) -> None:
        """The host's clock is set (w32tm, an administrator): it may jump either way."""
        if not math.isfinite(offset_s):
            raise ValueError(f"a clock offset is a finite number of seconds, not {offset_s!r}")
        self.offset_s = offset_s
        self._notify()

    @contextlib.contextmanager
    def pinned(self, moment: datetime) -> Iterator[None]:
        """Read as ``moment`` meanwhile: what a task does is stamped with the time it was due."""
        previous, self._pinned = self._pinned, moment
        try:
            yield
        finally:
            self._pinned = previous

    def _notify(self) -> None:
        for callback in list(self._moved):
            callback()
