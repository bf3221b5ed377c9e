"""The Windows accounts a lab host knows: names as NTAccount.Translate writes them, and their SIDs."""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass

from .errors import PrimitiveError

LAB_DOMAIN_NETBIOS = "XULAB"
LAB_ADMIN_USER = "xuadmin"
XU_SERVICE_NAME = "XtractUniversal Service"

SYSTEM = "NT AUTHORITY\\SYSTEM"
ADMINISTRATORS = "BUILTIN\\Administrators"
# How the service's logon account is configured (Win32_Service.StartName) ...
XU_SERVICE_LOGON = f"NT Service\\{XU_SERVICE_NAME}"
# ... and how Windows writes the same account when it translates its SID (in an ACL).
XU_SERVICE_ACCOUNT = f"NT SERVICE\\{XU_SERVICE_NAME}"
LAB_ADMIN = f"{LAB_DOMAIN_NETBIOS}\\{LAB_ADMIN_USER}"
# A domain account XU may run as, and a domain group it belongs to (a key ACL may grant the group).
LAB_SERVICE_USER = f"{LAB_DOMAIN_NETBIOS}\\svc-xu"
KEY_READERS_GROUP = f"{LAB_DOMAIN_NETBIOS}\\XU Key Readers"

_SID_FORM = re.compile(r"^S-1-[0-9-]+$")


def service_sid(service_name: str) -> str:
    """The SID Windows derives for a service's virtual account (SHA-1 of the upper-cased name)."""
    digest = hashlib.sha1(service_name.upper().encode("utf-16-le")).digest()  # noqa: S324 - Windows' derivation
    return "S-1-5-80-" + "-".join(str(part) for part in struct.unpack("<5I", digest))


_ACCOUNTS: dict[str, str] = {
    SYSTEM: "S-1-5-18",
    ADMINISTRATORS: "S-1-5-32-544",
    "BUILTIN\\Users": "S-1-5-32-545",
    "NT AUTHORITY\\LOCAL SERVICE": "S-1-5-19",
    "NT AUTHORITY\\NETWORK SERVICE": "S-1-5-20",
    "NT AUTHORITY\\Authenticated Users": "S-1-5-11",
    "NT AUTHORITY\\SERVICE": "S-1-5-6",
    "Everyone": "S-1-1-0",
    XU_SERVICE_ACCOUNT: service_sid(XU_SERVICE_NAME),
    LAB_ADMIN: "S-1-5-21-3623811015-3361044348-30300820-1104",
    LAB_SERVICE_USER: "S-1-5-21-3623811015-3361044348-30300820-1107",
    "XULAB\\Domain Users": "S-1-5-21-3623811015-3361044348-30300820-513",
    KEY_READERS_GROUP: "S-1-5-21-3623811015-3361044348-30300820-1109",
}
_BY_SID = {sid: name for name, sid in _ACCOUNTS.items()}
_BY_NAME: dict[str, str] = {}
for _name in _ACCOUNTS:
    _BY_NAME[_name.casefold()] = _name
    _BY_NAME[_name.rsplit("\\", 1)[-1].casefold()] = _name
_BY_NAME[f"{LAB_ADMIN_USER}@xulab.test".casefold()] = LAB_ADMIN
_BY_NAME["svc-xu@xulab.test"] = LAB_SERVICE_USER

# The groups in the token of a service logon (virtual account, NetworkService, LocalService, a user).
_SERVICE_LOGON_GROUPS = ("Everyone", "BUILTIN\\Users", "NT AUTHORITY\\Authenticated Users", "NT AUTHORITY\\SERVICE")


@dataclass(frozen=True)
class ServiceLogon:
    """An account the XU service can run as: Win32_Service.StartName's spelling, its SID, its token's groups."""

    start_name: str
    sid: str
    groups: tuple[str, ...]

    @property
    def identities(self) -> frozenset[str]:
        return frozenset((self.sid, *self.groups))


def _logon(start_name: str, account: str, groups: tuple[str, ...]) -> ServiceLogon:
    return ServiceLogon(start_name, _ACCOUNTS[account], tuple(_ACCOUNTS[group] for group in groups))


# `fault --set service_account=KEY`; the StartName spellings are the ones services.msc writes.
SERVICE_LOGONS: dict[str, ServiceLogon] = {
    "virtual": _logon(XU_SERVICE_LOGON, XU_SERVICE_ACCOUNT, _SERVICE_LOGON_GROUPS),
    "networkservice": _logon("NT AUTHORITY\\NetworkService", "NT AUTHORITY\\NETWORK SERVICE", _SERVICE_LOGON_GROUPS),
    "localsystem": _logon(
        "LocalSystem", SYSTEM, (ADMINISTRATORS, "Everyone", "NT AUTHORITY\\Authenticated Users")
    ),
    # By UPN, as a domain account is often entered; its token holds its domain groups.
    "domain": _logon(
        "svc-xu@xulab.test", LAB_SERVICE_USER, (*_SERVICE_LOGON_GROUPS, "XULAB\\Domain Users", KEY_READERS_GROUP)
    ),
}
DEFAULT_SERVICE_LOGON = "virtual"
XU_SERVICE_IDENTITIES = SERVICE_LOGONS[DEFAULT_SERVICE_LOGON].identities


def sid_of(identity: str) -> str:
    """The SID behind an ACL identity (a translated name or an untranslatable SID)."""
    return _ACCOUNTS.get(identity, identity)


def display_name(sid: str) -> str:
    """What an ACL shows for a SID: the account's name, or the SID when it has none here."""
    return _BY_SID.get(sid, sid)


def is_translatable(identity: str) -> bool:
    return identity in _ACCOUNTS


def account_sid(account: str) -> str:
    """A SID string as given, or an account name translated the way NTAccount.Translate does."""
    text = account.strip()
    if text.upper().startswith("S-1-"):
        if not _SID_FORM.match(text.upper()) or text.count("-") < 2:
            raise PrimitiveError("ArgumentException", "Value was invalid. Parameter name: sddlForm")
        return text.upper()
    name = _BY_NAME.get(text.casefold())
    if name is None:
        raise PrimitiveError("IdentityNotMappedException", "Some or all identity references could not be translated.")
    return _ACCOUNTS[name]
