"""Times as the protocol writes them: ISO 8601 UTC with a `Z`, whole seconds."""

from __future__ import annotations

from datetime import UTC, datetime

from .errors import PrimitiveError


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
