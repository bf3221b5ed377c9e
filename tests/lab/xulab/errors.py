"""The error a primitive reports, with the identity Windows gives it (docs/agent-protocol.md, Errors a primitive reports).

The agent reports what PowerShell's error record says (exception type, FullyQualifiedErrorId, category, HResult,
native code, inner exceptions), and the controller judges it from its own table. So the lab answers with the
records Windows produces for the same situation, not with shapes of its own: a controller whose table does not
know a real shape fails here as it would on a server. Where a shape is not known for sure it is marked unverified.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# The protocol's own error types (Stop-Xu in the agent): no Windows identity.
PROTOCOL_TYPES = frozenset({
    "UnknownOperation", "NotFound", "HashMismatch", "InvalidArgument", "CertreqFailed", "EnrollPending", "PreconditionFailed",
    "UntrustedFolder", "LabInternalError",
})

CIM_JOB_EXCEPTION = "Microsoft.PowerShell.Cmdletization.Cim.CimJobException"
CIM_EXCEPTION = "Microsoft.Management.Infrastructure.CimException"
WIN32_EXCEPTION = "System.ComponentModel.Win32Exception"


def hresult(value: int) -> int:
    """An HRESULT as .NET's Exception.HResult holds it (signed 32-bit)."""
    return value - (1 << 32) if value >= 1 << 31 else value


# .NET Framework's full names and the HResult each exception carries when nothing more specific set it (the
# HRESULT named in each type's documentation, e.g. COR_E_IO for IOException).
DOTNET_TYPES: dict[str, tuple[str, int]] = {
    "IOException": ("System.IO.IOException", hresult(0x80131620)),
    "FileNotFoundException": ("System.IO.FileNotFoundException", hresult(0x80070002)),
    "DirectoryNotFoundException": ("System.IO.DirectoryNotFoundException", hresult(0x80070003)),
    "UnauthorizedAccessException": ("System.UnauthorizedAccessException", hresult(0x80070005)),
    "ArgumentException": ("System.ArgumentException", hresult(0x80070057)),
    "FormatException": ("System.FormatException", hresult(0x80131537)),
    "NotSupportedException": ("System.NotSupportedException", hresult(0x80131515)),
    "InvalidOperationException": ("System.InvalidOperationException", hresult(0x80131509)),
    "CryptographicException": ("System.Security.Cryptography.CryptographicException", hresult(0x80131430)),
    "IdentityNotMappedException": ("System.Security.Principal.IdentityNotMappedException", hresult(0x80131501)),
    "PSInvalidCastException": ("System.Management.Automation.PSInvalidCastException", hresult(0x80004002)),
    "CimException": (CIM_EXCEPTION, hresult(0x80131500)),
    "CimJobException": (CIM_JOB_EXCEPTION, hresult(0x80131501)),
    "Win32Exception": (WIN32_EXCEPTION, hresult(0x80004005)),
    "TimeoutException": ("System.ServiceProcess.TimeoutException", hresult(0x80131501)),
}


@dataclass(frozen=True)
class InnerException:
    """One exception inside another (ServiceController's InvalidOperationException holds a Win32Exception)."""

    type: str
    hresult: int | None = None
    native_code: int | None = None

    def as_json(self) -> dict[str, object]:
        full, default = DOTNET_TYPES.get(self.type, (f"System.{self.type}", hresult(0x80131500)))
        return {"exception": full, "hresult": default if self.hresult is None else self.hresult, "native_code": self.native_code}


class PrimitiveError(Exception):
    """Answered as ``{"status": "error", "error": {"type", "message", "exception", "fqid", "category", "hresult", ...}}``.

    A .NET exception thrown by a method reaches the agent as PowerShell's MethodInvocationException, whose record has the
    inner exception's type name as FullyQualifiedErrorId and category NotSpecified; those are the defaults here.
    """

    def __init__(
        self,
        error_type: str,
        message: str,
        *,
        hresult: int | None = None,
        fqid: str | None = None,
        category: str | None = None,
        native_code: int | None = None,
        inner: Iterable[InnerException] = (),
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.hresult = hresult
        self.fqid = fqid
        self.category = category
        self.native_code = native_code
        self.inner = tuple(inner)

    def as_json(self) -> dict[str, object]:
        if self.error_type in PROTOCOL_TYPES:
            identity: dict[str, object] = {"exception": None, "fqid": None, "category": None, "hresult": None, "native_code": None, "inner": []}
        else:
            full, default = DOTNET_TYPES.get(self.error_type, (f"System.{self.error_type}", hresult(0x80131500)))
            identity = {
                "exception": full,
                "fqid": self.fqid or self.error_type,
                "category": self.category or "NotSpecified",
                "hresult": default if self.hresult is None else self.hresult,
                "native_code": self.native_code,
                "inner": [link.as_json() for link in self.inner],
            }
        return {"type": self.error_type, "message": self.message, **identity}


def cim_query_not_found(cmdlet: str, cim_class: str, prop: str, value: str) -> PrimitiveError:
    """What a CIM cmdlet's query reports when nothing matches (PowerShell's QueryJobBase.OnCompleted): a CimJobException,
    FullyQualifiedErrorId ``CmdletizationQuery_NotFound_<property>,<cmdlet>``, category ObjectNotFound, and the text of
    CmdletizationResources' CimJob_NotFound_SimpleGranularCase_Equality."""
    message = f"No {cim_class} objects found with property '{prop}' equal to '{value}'.  Verify the value of the property and retry."
    return PrimitiveError("CimJobException", message, fqid=f"CmdletizationQuery_NotFound_{prop},{cmdlet}", category="ObjectNotFound")


def cim_windows_error(cmdlet: str, message: str, code: int, category: str) -> PrimitiveError:
    """A CIM provider's failure with a Win32 error code, as the NetSecurity cmdlets report it: a CimException whose
    FullyQualifiedErrorId is ``Windows System Error <code>,<cmdlet>`` (e.g. ``Windows System Error 5,New-NetFirewallRule``,
    PermissionDenied, in public transcripts)."""
    return PrimitiveError("CimException", message, fqid=f"Windows System Error {code},{cmdlet}", category=category, native_code=1)


# The not-found shapes the controller sent with the request (`absent_errors`), for the primitives that go on past an
# absent object inside one call. Set by the shell for the duration of one request.
ABSENT_ERRORS: contextvars.ContextVar[tuple[Mapping[str, object], ...]] = contextvars.ContextVar("absent_errors", default=())


def is_absent(error: PrimitiveError) -> bool:
    """The agent's Test-XuAbsent: does the error match one of the request's absent_errors (exception, fqid prefix, category)?"""
    identity = error.as_json()
    inner = identity.get("inner")
    types = [identity.get("exception"), *(link.get("exception") for link in inner if isinstance(link, dict))] if isinstance(inner, list) else []
    fqid = str(identity.get("fqid") or "").split(",", 1)[0].casefold()
    for matcher in ABSENT_ERRORS.get():
        wanted_type, wanted_fqid, wanted_category = matcher.get("exception"), matcher.get("fqid"), matcher.get("category")
        if wanted_type and wanted_type not in types:
            continue
        if wanted_fqid and not fqid.startswith(str(wanted_fqid).casefold()):
            continue
        if wanted_category and wanted_category != identity.get("category"):
            continue
        return True
    return False


class LabError(Exception):
    """A request to the lab itself (control socket, CLI) that cannot be served."""
