# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a Windows error means, judged on the controller from the identity the agent reports. Private to this collection.

The agent never decides what an error means: it reports the error's identity (docs/agent-protocol.md, *Errors a
primitive reports*): ``type`` and ``message`` as always, and ``exception`` (the .NET type's full name), ``fqid``
(PowerShell's FullyQualifiedErrorId), ``category`` (the ErrorRecord's category), ``hresult``, ``native_code`` (a
Win32 or CIM error code) and ``inner`` (the inner exceptions, each with ``exception``, ``hresult`` and
``native_code``). ``classify`` sorts it into one of four kinds from ``ROWS``, the one table of this judgement;
every row says where its shape comes from. Messages are never matched: Windows translates them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

NOT_FOUND = "not_found"
ACCESS_DENIED = "access_denied"
TRANSIENT = "transient"
OTHER = "other"
KINDS = (NOT_FOUND, ACCESS_DENIED, TRANSIENT, OTHER)

CIM_JOB_EXCEPTION = "Microsoft.PowerShell.Cmdletization.Cim.CimJobException"
CIM_EXCEPTION = "Microsoft.Management.Infrastructure.CimException"
WIN32_EXCEPTION = "System.ComponentModel.Win32Exception"

_SYSTEM_ERRORS_0 = "https://learn.microsoft.com/windows/win32/debug/system-error-codes--0-499-"
_SYSTEM_ERRORS_1000 = "https://learn.microsoft.com/windows/win32/debug/system-error-codes--1000-1299-"
_SYSTEM_ERRORS_1700 = "https://learn.microsoft.com/windows/win32/debug/system-error-codes--1700-3999-"
_PS_CIM = "PowerShell/PowerShell src/Microsoft.PowerShell.Commands.Management/cimSupport/cmdletization/cim/"
_REFERENCE_SOURCE = "microsoft/referencesource System.ServiceProcess/"


def hresult(value: int) -> int:
    """An HRESULT as .NET's ``Exception.HResult`` holds it (a signed 32-bit integer): ``hresult(0x80070005) == -2147024891``."""
    return value - (1 << 32) if value >= 1 << 31 else value


@dataclass(frozen=True)
class ErrorRow:
    """One shape of Windows error and its kind. Every field given must match; a missing one matches anything.

    ``exception``, ``hresult`` and ``native_code`` must hold for one and the same exception of the chain (the
    reported one or an inner one); ``fqid`` is a prefix of the FullyQualifiedErrorId's part before its comma
    (PowerShell appends ``,<command>``); ``type`` is the protocol's own error type (``NotFound``, ...).
    """

    kind: str
    source: str
    exception: str | None = None
    fqid: str | None = None
    category: str | None = None
    hresult: int | None = None
    native_code: int | None = None
    type: str | None = None

    def matches(self, error: Mapping[str, Any]) -> bool:
        if self.type is not None and error.get("type") != self.type:
            return False
        if self.fqid is not None and not str(error.get("fqid") or "").split(",", 1)[0].casefold().startswith(self.fqid.casefold()):
            return False
        if self.category is not None and error.get("category") != self.category:
            return False
        if self.exception is None and self.hresult is None and self.native_code is None:
            return True
        return any(self._matches_link(link) for link in exception_chain(error))

    def _matches_link(self, link: Mapping[str, Any]) -> bool:
        return (
            (self.exception is None or link.get("exception") == self.exception)
            and (self.hresult is None or link.get("hresult") == self.hresult)
            and (self.native_code is None or link.get("native_code") == self.native_code)
        )

    def absent_matcher(self) -> dict[str, str] | None:
        """The row as the agent matches it inside a call (``absent_errors``), or None when it uses more than the agent compares."""
        if self.kind != NOT_FOUND or self.type is not None or self.hresult is not None or self.native_code is not None or self.exception is None:
            return None
        return {key: value for key, value in (("exception", self.exception), ("fqid", self.fqid), ("category", self.category)) if value is not None}


# First match wins: the specific shapes come before the broad ones.
ROWS: tuple[ErrorRow, ...] = (
    # -- not found ------------------------------------------------------------------------------------------
    ErrorRow(
        NOT_FOUND, exception=CIM_JOB_EXCEPTION, fqid="CmdletizationQuery_NotFound", category="ObjectNotFound",
        source=f"{_PS_CIM}QueryJobBase.cs (OnCompleted: errorId 'CmdletizationQuery_NotFound' + '_' + the property,"
        " ErrorCategory.ObjectNotFound, CimJobException.CreateWithFullControl): what Get-NetFirewallRule -Group and"
        " Get-ScheduledTask -TaskName report when nothing matches; a transcript: jfishe/battery"
        " docs/Unregister-BatteryMonitor.md (ObjectNotFound, CimJobException, CmdletizationQuery_NotFound_TaskName)",
    ),
    ErrorRow(
        NOT_FOUND, exception=CIM_EXCEPTION, category="ObjectNotFound",
        source=f"{_PS_CIM}CimJobException.cs (ConvertCimNativeErrorCodeToErrorCategory: MI NotFound is"
        " ErrorCategory.ObjectNotFound); a transcript: https://github.com/ennnbeee/IntuneFirewallMigration/issues/18"
        " (Get-NetFirewallApplicationFilter: ObjectNotFound, CimException, 'MI RESULT 6')",
    ),
    ErrorRow(
        NOT_FOUND, exception=CIM_EXCEPTION, fqid="HRESULT 0x80070002",
        source=f"ERROR_FILE_NOT_FOUND (2) as a CIM provider's HRESULT, {_SYSTEM_ERRORS_0}; the MessageId is the"
        f" errorId ({_PS_CIM}CimJobException.cs, InitializeErrorRecord): a task folder the scheduler does not have",
    ),
    ErrorRow(
        NOT_FOUND, exception="System.IO.FileNotFoundException",
        source="https://learn.microsoft.com/dotnet/api/system.io.filenotfoundexception (HRESULT COR_E_FILENOTFOUND 0x80070002)",
    ),
    ErrorRow(
        NOT_FOUND, exception="System.IO.DirectoryNotFoundException",
        source="https://learn.microsoft.com/dotnet/api/system.io.directorynotfoundexception (HRESULT COR_E_DIRECTORYNOTFOUND 0x80070003)",
    ),
    ErrorRow(
        NOT_FOUND, exception=WIN32_EXCEPTION, native_code=1060,
        source=f"ERROR_SERVICE_DOES_NOT_EXIST (1060), {_SYSTEM_ERRORS_1000}; ServiceController reports it as an"
        f" InvalidOperationException around a Win32Exception ({_REFERENCE_SOURCE}ServiceController.cs, GetServiceHandle)",
    ),
    ErrorRow(NOT_FOUND, type="NotFound", source="the protocol's own type (docs/agent-protocol.md, Errors a primitive reports)"),
    # -- access denied --------------------------------------------------------------------------------------
    ErrorRow(
        ACCESS_DENIED, exception="System.UnauthorizedAccessException",
        source="https://learn.microsoft.com/dotnet/api/system.unauthorizedaccessexception (HRESULT COR_E_UNAUTHORIZEDACCESS 0x80070005)",
    ),
    ErrorRow(
        ACCESS_DENIED, exception=CIM_EXCEPTION, category="PermissionDenied",
        source=f"{_PS_CIM}CimJobException.cs (ConvertCimNativeErrorCodeToErrorCategory: MI AccessDenied is"
        " ErrorCategory.PermissionDenied); a transcript: https://github.com/AsBuiltReport/AsBuiltReport.Veeam.VBR/issues/31"
        " (PermissionDenied, CimException, 'HRESULT 0x80070005')",
    ),
    ErrorRow(ACCESS_DENIED, hresult=hresult(0x80070005), source=f"E_ACCESSDENIED, HRESULT_FROM_WIN32(ERROR_ACCESS_DENIED (5)), {_SYSTEM_ERRORS_0}"),
    ErrorRow(ACCESS_DENIED, exception=WIN32_EXCEPTION, native_code=5, source=f"ERROR_ACCESS_DENIED (5), {_SYSTEM_ERRORS_0}"),
    # -- transient: the same call may well work a moment later -------------------------------------------------
    ErrorRow(
        TRANSIENT, exception=WIN32_EXCEPTION, native_code=1061,
        source=f"ERROR_SERVICE_CANNOT_ACCEPT_CTRL (1061), {_SYSTEM_ERRORS_1000}: a service in StartPending or StopPending",
    ),
    ErrorRow(
        TRANSIENT, exception="System.ServiceProcess.TimeoutException",
        source=f"{_REFERENCE_SOURCE}TimeoutException.cs and ServiceController.cs (WaitForStatus): a service that did not reach a state in time",
    ),
    ErrorRow(TRANSIENT, hresult=hresult(0x80070020), source=f"ERROR_SHARING_VIOLATION (32), {_SYSTEM_ERRORS_0}: a file another process holds open"),
    ErrorRow(TRANSIENT, hresult=hresult(0x80070021), source=f"ERROR_LOCK_VIOLATION (33), {_SYSTEM_ERRORS_0}: a locked region of a file"),
    ErrorRow(TRANSIENT, hresult=hresult(0x800706BA), source=f"RPC_S_SERVER_UNAVAILABLE (1722), {_SYSTEM_ERRORS_1700}"),
)


def exception_chain(error: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """The reported exception, then its inner ones."""
    yield error
    inner = error.get("inner")
    if isinstance(inner, list):
        yield from (link for link in inner if isinstance(link, Mapping))


def matching_row(error: Mapping[str, Any] | None) -> ErrorRow | None:
    if not error:
        return None
    return next((row for row in ROWS if row.matches(error)), None)


def classify(error: Mapping[str, Any] | None) -> str:
    """``not_found``, ``access_denied``, ``transient`` or ``other``, for an error as the agent reports it."""
    row = matching_row(error)
    return row.kind if row is not None else OTHER


# Operations that go on past an absent object inside one call, by ``absent_errors`` (the others report and stop).
ABSENT_OPS = frozenset({"fw_set", "task_remove"})


def absent_matchers() -> list[dict[str, str]]:
    """The ``not_found`` rows the agent applies itself (request field ``absent_errors``), where one call must go on past an
    absent object: ``fw_set`` replacing an empty group, ``task_remove`` of a task that is not there."""
    return [matcher for row in ROWS if (matcher := row.absent_matcher()) is not None]


# Reads that report the error of a query beside its result (docs/agent-protocol.md): {op: {field: value when not found}}.
QUERY_FIELDS: dict[str, dict[str, Any]] = {
    "fw_get": {"rules": [], "active_rules": []},
    "task_get": {"task": None},
}


def judge_queries(op: str, result: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A read's result with each query the host reported as failed judged here: ``not_found`` is the empty value, any
    other error fails the operation. Returns the judged result and the error to report (None when there is none)."""
    fields = QUERY_FIELDS.get(op)
    if not fields:
        return result, None
    judged = dict(result)
    for name, empty in fields.items():
        error = judged.pop(f"{name}_error", None)
        if not error:
            continue
        if not isinstance(error, dict) or classify(error) != NOT_FOUND:
            return result, error if isinstance(error, dict) else {"type": "Error", "message": str(error)}
        judged[name] = list(empty) if isinstance(empty, list) else empty
    return judged, None
