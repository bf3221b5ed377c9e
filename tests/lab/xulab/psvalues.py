"""How the agent's PowerShell reads loosely typed request values: [string], [int], foreach."""

from __future__ import annotations

from .errors import PrimitiveError


def as_text(value: object) -> str:
    """[string]$value: null is the empty string, booleans are True/False."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def as_items(value: object) -> list[object]:
    """foreach over a value: null is nothing, a scalar is one item."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def as_int(value: object) -> int:
    """[int]$value: numbers round half to even, numeric text is parsed, null is 0."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    try:
        return round(float(as_text(value) or 0))
    except (ValueError, OverflowError) as exc:
        raise PrimitiveError("PSInvalidCastException", f'Cannot convert value "{as_text(value)}" to type "System.Int32".') from exc
