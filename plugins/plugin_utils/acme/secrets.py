# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A secret that cannot be printed by accident. Private to this collection."""

from __future__ import annotations

import secrets as _random
from typing import Any


class Secret:
    """A secret value: ``reveal()`` gives it, ``str``, ``repr`` and formatting never do.

    An exception message, a debug line or a dataclass repr that includes one shows ``<secret>``.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return "<secret>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and _random.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(("Secret", len(self._value)))

    def __reduce__(self) -> Any:
        # A secret never travels between processes by pickling (Ansible's forks would log a failed pickle's repr).
        raise TypeError("a Secret cannot be pickled")


def new_password() -> Secret:
    """A password for a PFX that exists only for the way from this process to the host."""
    return Secret(_random.token_urlsafe(24))
