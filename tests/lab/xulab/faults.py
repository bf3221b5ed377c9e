"""Faults injected at run time (see the README's table); each one used leaves a `fault` event."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .errors import LabError

# Settings of the host itself (its service's account, its firewall's profiles, ...), applied by the host.
HOST_SETTING_KEYS = (
    "service_account",
    "dependent_service",
    "dependent_stop_hangs",
    "stop_hangs",
    "firewall_profile_off",
    "firewall_local_rules",
    "firewall_service",
    "strict_host_name",
    "journal_dir",
    "kill_certreq",
    "certreq_leftover",
    "enterprise_cas",
    "certreq_language",
)
FAULT_KEYS = ("fail_primitive", "drop_connection", "restart_fails", "restart_delay", "certreq_fails", *HOST_SETTING_KEYS, "clear")

Emit = Callable[..., None]


def _count(key: str, value: str) -> int:
    try:
        count = int(value)
    except ValueError as exc:
        raise LabError(f"{key} takes a count, not {value!r}") from exc
    if count < 0:
        raise LabError(f"{key} takes a count >= 0, not {value!r}")
    return count


class Faults:
    """The faults pending on one host."""

    def __init__(
        self,
        emit: Emit,
        known_ops: Iterable[str],
        set_restart_delay: Callable[[float], None],
        apply_setting: Callable[[str, str], None] | None = None,
    ) -> None:
        self._emit = emit
        self._known_ops = set(known_ops)
        self._set_restart_delay = set_restart_delay
        self._apply_setting = apply_setting
        # [op, occurrences to let pass first]
        self.fail_primitive: list[list[Any]] = []
        self.drop_connection: list[list[Any]] = []
        self.restart_fails = 0
        self.certreq_fails = 0
        # Of `restart_fails=N@K` and `certreq_fails=N@K`: how many of them to let pass before the N that fail.
        self._passes = {"restart_fails": 0, "certreq_fails": 0}

    def set(self, key: str, value: str) -> None:
        if key in ("fail_primitive", "drop_connection"):
            # "op" is its next occurrence, "op@N" its Nth from now (a step's own operation among the same ones before it).
            op, _at, nth = value.partition("@")
            if op not in self._known_ops:
                raise LabError(f"{key}: unknown primitive {op!r}")
            if nth and (not nth.isdigit() or int(nth) < 1):
                raise LabError(f"{key}: {value!r}: the occurrence after @ is a number from 1")
            getattr(self, key).append([op, int(nth or 1) - 1])
        elif key in ("restart_fails", "certreq_fails"):
            # "N": the next N fail; "N@K": N fail from the Kth from now on (a later step's own start or request).
            count, _at, nth = value.partition("@")
            if nth and (not nth.isdigit() or int(nth) < 1):
                raise LabError(f"{key}: {value!r}: the occurrence after @ is a number from 1")
            setattr(self, key, _count(key, count))
            self._passes[key] = int(nth or 1) - 1
        elif key == "restart_delay":
            try:
                delay = float(value)
            except ValueError as exc:
                raise LabError(f"restart_delay takes seconds, not {value!r}") from exc
            if delay < 0:
                raise LabError("restart_delay must not be negative")
            self._set_restart_delay(delay)
        elif key in HOST_SETTING_KEYS and self._apply_setting is not None:
            self._apply_setting(key, value)
        elif key == "clear":
            if value != "all":
                raise LabError("clear takes the value 'all'")
            self.fail_primitive.clear()
            self.drop_connection.clear()
            self.restart_fails = 0
            self.certreq_fails = 0
            self._passes = dict.fromkeys(self._passes, 0)
        else:
            raise LabError(f"unknown fault {key!r}; known: {', '.join(FAULT_KEYS)}")
        self._emit("fault", action="set", key=key, value=value)

    def _take_op(self, key: str, op: str) -> bool:
        pending: list[list[Any]] = getattr(self, key)
        entry = next((e for e in pending if e[0] == op), None)
        if entry is None:
            return False
        if entry[1] > 0:
            entry[1] -= 1
            return False
        pending.remove(entry)
        self._emit("fault", action="consumed", key=key, value=op)
        return True

    def take_fail(self, op: str) -> bool:
        return self._take_op("fail_primitive", op)

    def take_drop(self, op: str) -> bool:
        return self._take_op("drop_connection", op)

    def _take_count(self, key: str) -> bool:
        remaining: int = getattr(self, key)
        if remaining <= 0:
            return False
        if self._passes[key] > 0:
            self._passes[key] -= 1
            return False
        setattr(self, key, remaining - 1)
        self._emit("fault", action="consumed", key=key, remaining=remaining - 1)
        return True

    def take_restart_failure(self) -> bool:
        return self._take_count("restart_fails")

    def take_certreq_failure(self) -> bool:
        return self._take_count("certreq_fails")

    def pending(self) -> dict[str, object]:
        return {
            "fail_primitive": [op for op, _skip in self.fail_primitive],
            "drop_connection": [op for op, _skip in self.drop_connection],
            "restart_fails": self.restart_fails,
            "certreq_fails": self.certreq_fails,
        }
