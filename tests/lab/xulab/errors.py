"""The error a primitive reports: a .NET exception type name (or a protocol type) and its message."""

from __future__ import annotations


class PrimitiveError(Exception):
    """Answered as `{"status": "error", "error": {"type": ..., "message": ...}}`."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message

    def as_json(self) -> dict[str, str]:
        return {"type": self.error_type, "message": self.message}


class LabError(Exception):
    """A request to the lab itself (control socket, CLI) that cannot be served."""
