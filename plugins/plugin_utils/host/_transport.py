# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whether a host's connection protects what crosses it, and the refusal to send secrets over one that does not.

Private to this collection. A PFX (the private key) and its password travel in the agent's request. Over
WinRM or PSRP on plain HTTP they are protected only by message encryption, which only some authentication
protocols provide and which can be turned off. The decision is made from the connection plugin's own resolved
options, by the rules of the code that builds the connection:

* ``winrm`` (ansible-core ``plugins/connection/winrm.py``, ``_build_winrm_kwargs``): the scheme is
  ``ansible_winrm_scheme``, else ``http`` when the port is 5985 and ``https`` otherwise (the port defaults to
  5986). Without ``ansible_winrm_transport`` the transport is ``ssl`` over https and ``plaintext`` over http
  (both Basic), except for a user named ``user@REALM``: ``kerberos`` from ansible-core 2.19 on, before that
  ``kerberos`` followed by that Basic fallback when a Kerberos library is installed. Ansible tries each listed
  transport in turn, so every one must protect. ``ansible_winrm_message_encryption`` (default ``auto``)
  reaches pywinrm as an extra argument.
* pywinrm (``winrm/transport.py``, ``Transport.build_session``): only ``ntlm``, ``kerberos`` and ``credssp``
  can encrypt messages (``ntlm`` when requests-ntlm has ``session_security``, ``kerberos`` when the Kerberos
  library has ``authGSSWinRMEncryptMessage``); they do with ``always``, or with ``auto`` when the endpoint is
  not https. ``basic``, ``plaintext``, ``ssl`` and ``certificate`` never do: over http they send everything,
  the Basic credentials included, in clear text.
* ``psrp`` (ansible-core ``plugins/connection/psrp.py``, ``_build_kwargs``; pypsrp ``wsman.py``,
  ``_TransportHTTP``): ``ansible_psrp_protocol``, else ``https`` unless the port is 5985; ``ansible_psrp_auth``
  (default ``negotiate``); over http messages are encrypted unless ``ansible_psrp_message_encryption`` is
  ``never``, and only ``negotiate``, ``ntlm``, ``kerberos`` and ``credssp`` can (pypsrp refuses the others).
* ``ssh``: the SSH channel is always encrypted.

Any other connection plugin is not known to protect anything.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ansible.errors import AnsibleError
from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import OperationError, XuError

# The variable that lets a play send key material over a connection that protects nothing.
ALLOW_VARIABLE = "xu_allow_unprotected_transport"

WINRM_HTTP_PORT = 5985
WINRM_HTTPS_PORT = 5986
_PYWINRM_ENCRYPTING = ("ntlm", "kerberos", "credssp")
_PYPSRP_ENCRYPTING = ("negotiate", "ntlm", "kerberos", "credssp")
_SSH_PLUGINS = ("ssh", "paramiko", "paramiko_ssh")
_WINRM_BASIC = {"plaintext": "basic", "ssl": "basic"}


@dataclass(frozen=True)
class ConnectionProtection:
    """What protects the bytes between the controller and the host, as the connection plugin will set it up."""

    plugin: str
    scheme: str | None = None
    port: int | None = None
    # winrm: the transports Ansible tries, in order; psrp: the one auth protocol.
    auth: tuple[str, ...] = ()
    message_encryption: str | None = None
    # What encrypts every message: "tls" (https), "message_encryption" (NTLM, Kerberos, CredSSP), "ssh".
    encrypted_by: tuple[str, ...] = ()
    # Why not, when nothing does.
    reason: str = ""

    @property
    def protected(self) -> bool:
        return bool(self.encrypted_by)

    def describe(self) -> str:
        """The settings in a few words, as an error or a report names them."""
        if self.scheme is None and not self.auth:
            return self.plugin
        parts = [f"{self.plugin} over {self.scheme}" if self.scheme and self.scheme != self.plugin else self.plugin]
        if self.port is not None:
            parts.append(f"port {self.port}")
        if self.auth:
            parts.append(("transport " if self.plugin == "winrm" else "auth ") + ", then ".join(self.auth))
        if self.message_encryption is not None:
            parts.append(f"message encryption {self.message_encryption}")
        return ", ".join(parts)

    def to_result(self, unprotected_allowed: bool) -> dict[str, Any]:
        return {
            "plugin": self.plugin,
            "scheme": self.scheme,
            "port": self.port,
            "auth": ", ".join(self.auth) or None,
            "message_encryption": self.message_encryption,
            "encrypted_by": list(self.encrypted_by),
            "protected": self.protected,
            "unprotected_allowed": unprotected_allowed,
            "summary": self.describe(),
        }


class UnprotectedTransport(OperationError):
    """Secrets were about to go over a connection that protects nothing: the call was not sent."""

    def __init__(self, op: str, msg: str, transport: dict[str, Any]) -> None:
        super().__init__(op, "UnprotectedTransport", msg, transport=transport)
        # Not "failed on the host": nothing reached it.
        self.msg = msg
        self.args = (msg,)


def _option(connection: Any, name: str) -> Any:
    try:
        return connection.get_option(name)
    except (KeyError, AttributeError, TypeError, ValueError, AnsibleError):
        # An option the plugin does not declare, or _extras that no variable set.
        return None


def _port(value: Any, default: int | None) -> int | None:
    if isinstance(value, bool):
        return default
    try:
        return int(value) if value is not None and str(value).strip() != "" else default
    except (TypeError, ValueError):
        return default


def plugin_name(connection: Any) -> str:
    transport = getattr(connection, "transport", None)
    name = transport if isinstance(transport, str) and transport else type(connection).__name__
    # Some plugins name themselves by their collection's full name.
    return name.rsplit(".", 1)[-1]


def _core_version() -> tuple[int, int]:
    from ansible.release import __version__  # noqa: PLC0415 - only needed for the winrm default

    major, minor = [*__version__.split("."), "0"][:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


def _winrm_kerberos_available(connection: Any) -> bool:
    """HAVE_KERBEROS of the winrm plugin that runs (ansible-core 2.16 to 2.18 fall back to Basic without it)."""
    module = sys.modules.get(type(connection).__module__)
    return bool(getattr(module, "HAVE_KERBEROS", False))


def default_winrm_transports(user: str | None, scheme: str, core: tuple[int, int], have_kerberos: bool) -> tuple[str, ...]:
    """What ansible-core's winrm plugin tries when ansible_winrm_transport is not set."""
    basic = "ssl" if scheme == "https" else "plaintext"
    if user and "@" in user:
        if core >= (2, 19):
            return ("kerberos",)
        return ("kerberos", basic) if have_kerberos else (basic,)
    return (basic,)


def pywinrm_encrypts(auth: str) -> bool:
    """Whether pywinrm, as installed, can encrypt messages with this transport (Transport.build_session)."""
    if auth == "credssp":
        return True
    if auth == "ntlm":
        try:
            from requests_ntlm import HttpNtlmAuth  # noqa: PLC0415 - pywinrm's own dependency
        except ImportError:
            return False
        return hasattr(HttpNtlmAuth("", ""), "session_security")
    if auth == "kerberos":
        try:
            from winrm.vendor.requests_kerberos import kerberos_  # noqa: PLC0415 - pywinrm's own Kerberos glue
        except ImportError:
            return False
        return hasattr(getattr(kerberos_, "kerberos", None), "authGSSWinRMEncryptMessage")
    return False


def winrm_protection(
    *,
    port: int | None,
    scheme: str | None,
    transports: Sequence[str] | None,
    user: str | None,
    message_encryption: Any,
    core: tuple[int, int],
    have_kerberos: bool,
    encrypts: Callable[[str], bool] = pywinrm_encrypts,
) -> ConnectionProtection:
    port = _port(port, WINRM_HTTPS_PORT)
    resolved_scheme = str(scheme).lower() if scheme else ("http" if port == WINRM_HTTP_PORT else "https")
    listed = tuple(str(t).strip().lower() for t in (transports or []) if t is not None and str(t).strip())
    tried = listed or default_winrm_transports(user, resolved_scheme, core, have_kerberos)
    encryption = "auto" if message_encryption is None or str(message_encryption).strip() == "" else str(message_encryption).strip()
    shown = tuple(f"{t} (Basic)" if t in _WINRM_BASIC else t for t in tried)
    if resolved_scheme == "https":
        return ConnectionProtection("winrm", "https", port, shown, encryption, ("tls",))

    def message_encrypted(transport: str) -> bool:
        return transport in _PYWINRM_ENCRYPTING and encryption in ("auto", "always") and encrypts(transport)

    clear = [t for t in tried if not message_encrypted(t)]
    if not clear:
        return ConnectionProtection("winrm", resolved_scheme, port, shown, encryption, ("message_encryption",))
    transport = clear[0]
    if transport in _PYWINRM_ENCRYPTING and encryption not in ("auto", "always"):
        why = f"message encryption is {encryption}"
    elif transport in _PYWINRM_ENCRYPTING:
        why = f"the installed pywinrm libraries cannot encrypt {transport} messages"
    else:
        why = f"{_WINRM_BASIC.get(transport, transport)} authentication never encrypts messages"
    return ConnectionProtection("winrm", resolved_scheme, port, shown, encryption, (), f"plain HTTP, and {why}")


def psrp_protection(*, port: Any, protocol: Any, auth: Any, message_encryption: Any) -> ConnectionProtection:
    given_port = _port(port, None)
    # Without a protocol: http only on port 5985.
    implied = "http" if given_port == WINRM_HTTP_PORT else "https"
    resolved = str(protocol).lower() if protocol else implied
    resolved_port = given_port if given_port is not None else (WINRM_HTTPS_PORT if resolved == "https" else WINRM_HTTP_PORT)
    method = str(auth or "negotiate").lower()
    encryption = str(message_encryption or "auto").lower()
    if resolved == "https":
        return ConnectionProtection("psrp", "https", resolved_port, (method,), encryption, ("tls",))
    if method in _PYPSRP_ENCRYPTING and encryption != "never":
        return ConnectionProtection("psrp", "http", resolved_port, (method,), encryption, ("message_encryption",))
    why = f"message encryption is {encryption}" if method in _PYPSRP_ENCRYPTING else f"{method} authentication never encrypts messages"
    return ConnectionProtection("psrp", "http", resolved_port, (method,), encryption, (), f"plain HTTP, and {why}")


def connection_protection(connection: Any) -> ConnectionProtection:
    """The protection of ``connection`` (a connection plugin whose options are set), by the rules above."""
    name = plugin_name(connection)
    if name == "winrm":
        extras = _option(connection, "_extras")
        return winrm_protection(
            port=_option(connection, "port"),
            scheme=_option(connection, "scheme"),
            transports=_option(connection, "transport"),
            user=_option(connection, "remote_user"),
            message_encryption=extras.get("ansible_winrm_message_encryption") if isinstance(extras, dict) else None,
            core=_core_version(),
            have_kerberos=_winrm_kerberos_available(connection),
        )
    if name == "psrp":
        return psrp_protection(
            port=_option(connection, "port"),
            protocol=_option(connection, "protocol"),
            auth=_option(connection, "auth"),
            message_encryption=_option(connection, "message_encryption"),
        )
    if name in _SSH_PLUGINS:
        return ConnectionProtection(name, "ssh", _port(_option(connection, "port"), None), encrypted_by=("ssh",))
    return ConnectionProtection(name, reason=f"xtractuniversal.tls does not know whether the {name} connection encrypts what it sends")


def allow_unprotected(value: Any) -> bool:
    """The opt-in variable: unset (or an empty survey answer) is false; anything else must be a boolean."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return False
    try:
        return bool(boolean(value.strip() if isinstance(value, str) else value, strict=True))
    except TypeError:
        raise XuError(f"{ALLOW_VARIABLE} must be true or false, not {value!r}") from None


@dataclass
class SecretsGuard:
    """Lets a call that carries secrets go only over a protected connection, or when the play allows it."""

    host: str
    protection: ConnectionProtection
    allowed: bool
    warnings: list[str] = field(default_factory=list)

    def to_result(self) -> dict[str, Any]:
        return self.protection.to_result(self.allowed)

    def before_secrets(self, operations: Sequence[str]) -> None:
        """Called with the secret-carrying operations of a call before it is sent; raises to stop it."""
        if self.protection.protected or not operations:
            return
        what = _what_is_sent(operations)
        settings = self.protection.describe()
        if self.allowed:
            warning = (
                f"{self.host}: {what} went to the host over a connection that neither uses TLS nor encrypts its messages"
                f" ({settings}: {self.protection.reason}), because {ALLOW_VARIABLE} is true"
            )
            if warning not in self.warnings:
                self.warnings.append(warning)
            return
        raise UnprotectedTransport(
            operations[0],
            f"Refusing to send {what} to {self.host}: its connection ({settings}) neither uses TLS nor encrypts its"
            f" messages ({self.protection.reason}), so they would cross the network in clear text. Nothing was sent."
            f" {_remedy(self.protection)}, or set {ALLOW_VARIABLE}: true to send them anyway",
            self.to_result(),
        )


def _what_is_sent(operations: Sequence[str]) -> str:
    if "pfx_import" in operations:
        return "the PFX (its private key) and its password"
    return "secrets (" + ", ".join(operations) + ")"


def _remedy(protection: ConnectionProtection) -> str:
    if protection.plugin == "winrm":
        return (
            "Connect with ansible_winrm_transport ntlm, kerberos or credssp and ansible_winrm_message_encryption auto"
            " (or always), or over HTTPS (ansible_winrm_scheme https, port 5986)"
        )
    if protection.plugin == "psrp":
        return "Connect with ansible_psrp_auth negotiate, ntlm, kerberos or credssp and message encryption auto, or over HTTPS"
    return "Connect with winrm (NTLM, Kerberos or CredSSP, or HTTPS), psrp or ssh"
