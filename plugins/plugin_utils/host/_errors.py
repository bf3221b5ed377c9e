# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one exception family that modules turn into failed results. Private to this collection."""

from __future__ import annotations

from typing import Any


class XuError(Exception):
    """A failure to report as ``failed: true`` with ``msg`` and any extra result fields."""

    def __init__(self, msg: str, **fields: Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.fields = fields

    def to_result(self) -> dict[str, Any]:
        return {"failed": True, "msg": self.msg, **self.fields}


class RemoteError(XuError):
    """The agent did not run, or answered something that is not its protocol."""

    def __init__(self, msg: str, rc: int, stdout: str, stderr: str) -> None:
        super().__init__(msg, rc=rc, stdout=stdout, stderr=stderr)


class OperationError(XuError):
    """One primitive reported an error on the host.

    ``identity`` is the error as the host reported it (``type``, ``message`` and, from agents that report them,
    ``exception``, ``fqid``, ``category``, ``hresult``, ``native_code``, ``inner``); ``kind`` is the controller's
    judgement of it (``_windows_errors.classify``): ``not_found``, ``access_denied``, ``transient`` or ``other``.
    """

    def __init__(self, op: str, error_type: str, message: str, *, identity: dict[str, Any] | None = None, kind: str = "other",
                 **fields: Any) -> None:
        super().__init__(f"{op} failed on the host: {error_type}: {message}", **fields)
        self.op = op
        self.error_type = error_type
        self.error_message = message
        self.identity = identity or {"type": error_type, "message": message}
        self.kind = kind
