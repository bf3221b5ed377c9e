"""The Windows accounts a lab host knows: names as NTAccount.Translate writes them, and their SIDs."""

from __future__ import annotations

import hashlib
import re
import struct

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
}
_BY_SID = {sid: name for name, sid in _ACCOUNTS.items()}
_BY_NAME: dict[str, str] = {}
for _name in _ACCOUNTS:
    _BY_NAME[_name.casefold()] = _name
    _BY_NAME[_name.rsplit("\\", 1)[-1].casefold()] = _name
_BY_NAME[f"{LAB_ADMIN_USER}@xulab.test".casefold()] = LAB_ADMIN

# The identities in the XU service's token: its virtual account and the groups it belongs to.
XU_SERVICE_IDENTITIES = frozenset(
    _ACCOUNTS[name]
    for name in (XU_SERVICE_ACCOUNT, "Everyone", "BUILTIN\\Users", "NT AUTHORITY\\Authenticated Users", "NT AUTHORITY\\SERVICE")
)


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
