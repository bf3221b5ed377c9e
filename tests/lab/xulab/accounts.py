"""The Windows accounts a lab host knows, translated the way NTAccount.Translate does."""

from __future__ import annotations

from .errors import PrimitiveError

SYSTEM = "NT AUTHORITY\\SYSTEM"
ADMINISTRATORS = "BUILTIN\\Administrators"
XU_SERVICE_ACCOUNT = "NT Service\\XtractUniversal Service"
LAB_DOMAIN_NETBIOS = "XULAB"
LAB_ADMIN_USER = "xuadmin"

_CANONICAL = [
    SYSTEM,
    ADMINISTRATORS,
    XU_SERVICE_ACCOUNT,
    "BUILTIN\\Users",
    "NT AUTHORITY\\NETWORK SERVICE",
    "NT AUTHORITY\\LOCAL SERVICE",
    "NT AUTHORITY\\Authenticated Users",
    "NT AUTHORITY\\SERVICE",
    "Everyone",
    f"{LAB_DOMAIN_NETBIOS}\\{LAB_ADMIN_USER}",
]
_BY_NAME: dict[str, str] = {}
for _account in _CANONICAL:
    _BY_NAME[_account.casefold()] = _account
    _BY_NAME[_account.rsplit("\\", 1)[-1].casefold()] = _account
_BY_NAME["localsystem"] = SYSTEM

# The identities in the XU service's token: its virtual account and the groups it belongs to.
XU_SERVICE_IDENTITIES = frozenset(
    name.casefold()
    for name in (
        XU_SERVICE_ACCOUNT,
        "Everyone",
        "BUILTIN\\Users",
        "NT AUTHORITY\\Authenticated Users",
        "NT AUTHORITY\\SERVICE",
    )
)


def translate_account(name: str) -> str:
    """The canonical `DOMAIN\\name` of an account, or the error Windows raises for an unknown one."""
    account = _BY_NAME.get(name.strip().casefold()) if isinstance(name, str) else None
    if account is None:
        raise PrimitiveError("IdentityNotMappedException", "Some or all identity references could not be translated.")
    return account
