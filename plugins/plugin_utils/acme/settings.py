# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ACME options, typed once from the role's ``xu_renew_acme_*`` variables. Private to this collection.

Every error names the variable to fix. Secrets are wrapped in ``Secret`` as soon as they are read, so that no
message, repr or result built from the settings can show them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.acme.secrets import Secret
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import XuError

PREFIX = "xu_renew_acme_"
LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETS_ENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
# Keys the controller generates for the certificate. RSA 3072 is what every Windows Server and Schannel take; ECDSA is
# offered for hosts known to accept it (not verified with XU, see docs/acme.md).
KEY_TYPES = ("rsa3072", "rsa4096", "rsa2048", "ecdsa_p256", "ecdsa_p384")
TSIG_ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1")
EAB_ALGORITHMS = ("HS256", "HS384", "HS512")
BUILTIN_DNS_PROVIDER = "rfc2136"
# Every variable the settings read (without the prefix), and those that hold secrets (never logged, masked by AWX).
VARIABLES = (
    "account_key", "account_key_passphrase", "account_uri", "ca_path", "contact", "directory", "dns_nameservers", "dns_port",
    "dns_provider", "dns_provider_options", "dns_server", "dns_ttl", "dns_zone", "eab_algorithm", "eab_hmac_key", "eab_kid", "key_type",
    "max_parallel_orders", "propagation_timeout", "request_timeout", "retry_budget", "terms_agreed", "tsig_algorithm", "tsig_name",
    "tsig_secret", "use_ari", "validation_timeout",
)
SECRET_VARIABLES = ("account_key", "account_key_passphrase", "eab_hmac_key", "tsig_secret", "dns_provider_options")
_ENDPOINT = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\s\[\]]+))(?::(?P<port>\d{1,5}))?$")


class AcmeSettingsError(XuError):
    """A variable with a value that cannot be used; the message names it."""


@dataclass(frozen=True)
class Endpoint:
    """A DNS server: an address or name, and a port."""

    host: str
    port: int = 53

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class DnsSettings:
    """Where and how the DNS-01 records are published."""

    provider: str = BUILTIN_DNS_PROVIDER
    server: Endpoint | None = None
    zone: str = ""
    port: int = 53
    nameservers: tuple[Endpoint, ...] = ()
    tsig_name: str = ""
    tsig_secret: Secret = field(default_factory=lambda: Secret(""))
    tsig_algorithm: str = "hmac-sha256"
    provider_options: Mapping[str, Secret] = field(default_factory=dict)
    ttl: int = 60
    timeout: float = 10.0


@dataclass(frozen=True)
class AcmeSettings:
    """Everything issuance needs besides the host's own names."""

    directory: str
    account_key: Secret
    account_key_passphrase: Secret
    account_uri: str
    contact: tuple[str, ...]
    terms_agreed: bool
    eab_kid: str
    eab_hmac_key: Secret
    eab_algorithm: str
    ca_path: str
    key_type: str
    use_ari: bool
    dns: DnsSettings
    max_parallel_orders: int
    propagation_timeout: float
    validation_timeout: float
    retry_budget: float
    request_timeout: int

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret in clear, for masking wherever a result or a message might carry one."""
        values = [self.account_key, self.account_key_passphrase, self.eab_hmac_key, self.dns.tsig_secret, *self.dns.provider_options.values()]
        return tuple(value.reveal() for value in values if value)


def _get(variables: Mapping[str, Any], name: str, default: Any) -> Any:
    value = variables.get(PREFIX + name, default)
    # An empty answer (an AWX survey's blank, null on ansible-core 2.19+) means the default.
    return default if value is None or (isinstance(value, str) and not value.strip()) else value


def _text(variables: Mapping[str, Any], name: str, default: str = "") -> str:
    value = _get(variables, name, default)
    if not isinstance(value, str):
        raise AcmeSettingsError(f"{PREFIX}{name} must be a string, not {type(value).__name__}")
    return value.strip()


def _secret(variables: Mapping[str, Any], name: str) -> Secret:
    value = _get(variables, name, "")
    if not isinstance(value, str):
        # The value itself is never shown, not even its type's repr of it.
        raise AcmeSettingsError(f"{PREFIX}{name} must be a string")
    return Secret(value.strip())


def _eab_key(variables: Mapping[str, Any]) -> Secret:
    """The EAB MAC key as base64url with its padding: CAs hand it out unpadded, community.crypto decodes it padded."""
    key = _secret(variables, "eab_hmac_key").reveal().replace("+", "-").replace("/", "_").rstrip("=")
    if key and not re.fullmatch(r"[A-Za-z0-9_-]+", key):
        raise AcmeSettingsError(f"{PREFIX}eab_hmac_key must be the base64url text the CA gave")
    return Secret(key + "=" * (-len(key) % 4) if key else "")


def _bool(variables: Mapping[str, Any], name: str, default: bool) -> bool:
    value = _get(variables, name, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0", ""):
        return value.strip().lower() in ("true", "yes", "on", "1")
    raise AcmeSettingsError(f"{PREFIX}{name} must be true or false, not {value!r}")


def _number(variables: Mapping[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = _get(variables, name, default)
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise AcmeSettingsError(f"{PREFIX}{name} must be a number of seconds, not {value!r}") from None
    if isinstance(value, bool) or not low <= number <= high:
        raise AcmeSettingsError(f"{PREFIX}{name} must be between {low:g} and {high:g}, not {value!r}")
    return number


def _list(variables: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = _get(variables, name, [])
    if isinstance(value, str):
        # An AWX survey answer: a comma or newline separated list.
        value = [part for part in re.split(r"[,\s]+", value) if part]
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        raise AcmeSettingsError(f"{PREFIX}{name} must be a list of strings")
    return tuple(item.strip() for item in value if item.strip())


def parse_endpoint(text: str, default_port: int, variable: str) -> Endpoint:
    match = _ENDPOINT.match(text.strip())
    if not match:
        raise AcmeSettingsError(f"{variable} must be a host name or address with an optional :port, not {text!r}")
    port = int(match.group("port") or default_port)
    if not 0 < port < 65536:
        raise AcmeSettingsError(f"{variable} names port {port}, which does not exist")
    return Endpoint(match.group("v6") or match.group("host"), port)


def _dns(variables: Mapping[str, Any]) -> DnsSettings:
    provider = _text(variables, "dns_provider", BUILTIN_DNS_PROVIDER) or BUILTIN_DNS_PROVIDER
    port = int(_number(variables, "dns_port", 53, 1, 65535))
    server_text = _text(variables, "dns_server")
    server = parse_endpoint(server_text, port, f"{PREFIX}dns_server") if server_text else None
    nameservers = tuple(parse_endpoint(item, port, f"{PREFIX}dns_nameservers") for item in _list(variables, "dns_nameservers"))
    algorithm = _text(variables, "tsig_algorithm", "hmac-sha256").lower() or "hmac-sha256"
    if algorithm not in TSIG_ALGORITHMS:
        raise AcmeSettingsError(f"{PREFIX}tsig_algorithm must be one of {', '.join(TSIG_ALGORITHMS)}, not {algorithm!r}")
    options = _get(variables, "dns_provider_options", {})
    if not isinstance(options, Mapping) or not all(isinstance(key, str) for key in options):
        raise AcmeSettingsError(f"{PREFIX}dns_provider_options must be a dictionary")
    zone = _text(variables, "dns_zone").rstrip(".").lower()
    dns = DnsSettings(
        provider=provider,
        server=server,
        zone=zone,
        port=port,
        nameservers=nameservers,
        tsig_name=_text(variables, "tsig_name"),
        tsig_secret=_secret(variables, "tsig_secret"),
        tsig_algorithm=algorithm,
        # Provider options may hold API tokens: every value is treated as a secret.
        provider_options={key: Secret(str(value)) for key, value in options.items()},
        ttl=int(_number(variables, "dns_ttl", 60, 1, 86400)),
    )
    if provider == BUILTIN_DNS_PROVIDER:
        if server is None:
            raise AcmeSettingsError(f"{PREFIX}dns_server must name the zone's primary DNS server, which takes the RFC 2136 updates")
        if not dns.tsig_name or not dns.tsig_secret:
            raise AcmeSettingsError(f"{PREFIX}tsig_name and {PREFIX}tsig_secret must be set: the DNS server takes updates signed with that TSIG key")
    return dns


def settings_from_vars(variables: Mapping[str, Any]) -> AcmeSettings:
    """The settings from the role's variables (``xu_renew_acme_*``); AcmeSettingsError names a wrong one."""
    directory = _text(variables, "directory")
    if not re.match(r"^https://[^\s/]+", directory):
        raise AcmeSettingsError(f"{PREFIX}directory must be the https:// URL of the CA's ACME directory (for example {LETS_ENCRYPT_STAGING})")
    account_key = _secret(variables, "account_key")
    if "PRIVATE KEY-----" not in account_key.reveal():
        raise AcmeSettingsError(f"{PREFIX}account_key must hold the ACME account's private key in PEM (from a vault or an AWX credential)")
    key_type = _text(variables, "key_type", "rsa3072").lower() or "rsa3072"
    if key_type not in KEY_TYPES:
        raise AcmeSettingsError(f"{PREFIX}key_type must be one of {', '.join(KEY_TYPES)}, not {key_type!r}")
    eab_algorithm = _text(variables, "eab_algorithm", "HS256").upper() or "HS256"
    if eab_algorithm not in EAB_ALGORITHMS:
        raise AcmeSettingsError(f"{PREFIX}eab_algorithm must be one of {', '.join(EAB_ALGORITHMS)}, not {eab_algorithm!r}")
    eab_kid, eab_hmac_key = _text(variables, "eab_kid"), _eab_key(variables)
    if bool(eab_kid) != bool(eab_hmac_key):
        raise AcmeSettingsError(f"{PREFIX}eab_kid and {PREFIX}eab_hmac_key go together: the CA gives both for External Account Binding")
    contact = tuple(item if item.startswith("mailto:") else f"mailto:{item}" for item in _list(variables, "contact"))
    ca_path = _text(variables, "ca_path")
    return AcmeSettings(
        directory=directory,
        account_key=account_key,
        account_key_passphrase=_secret(variables, "account_key_passphrase"),
        account_uri=_text(variables, "account_uri"),
        contact=contact,
        terms_agreed=_bool(variables, "terms_agreed", False),
        eab_kid=eab_kid,
        eab_hmac_key=eab_hmac_key,
        eab_algorithm=eab_algorithm,
        ca_path=ca_path,
        key_type=key_type,
        use_ari=_bool(variables, "use_ari", True),
        dns=_dns(variables),
        max_parallel_orders=int(_number(variables, "max_parallel_orders", 10, 1, 1000)),
        propagation_timeout=_number(variables, "propagation_timeout", 300, 1, 3600),
        validation_timeout=_number(variables, "validation_timeout", 300, 1, 3600),
        retry_budget=_number(variables, "retry_budget", 300, 1, 7200),
        request_timeout=int(_number(variables, "request_timeout", 30, 1, 600)),
    )
