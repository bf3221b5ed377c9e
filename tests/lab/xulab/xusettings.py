"""XU's settings as the service reads them at start: config\\servers\\tls.json and the port files.

The schema of tls.json is the one assumed in tests/lab/README.md. Property names and enum
values are matched case-insensitively, as .NET JSON deserialisers do; a missing file means
the defaults (HTTP, Windows credentials, ports 8065/8165/8064); unreadable JSON stops XU.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .winpath import join_windows_path

if TYPE_CHECKING:
    from .host import Host

SERVICE_NAME = "XtractUniversal Service"
DISPLAY_NAME = "Xtract Universal"
INSTALL_DIR = "C:\\Program Files\\XtractUniversal"
IMAGE_PATH = f'"{INSTALL_DIR}\\XtractService.exe"'
CONFIG_DIR = join_windows_path(INSTALL_DIR, "config")
TLS_SETTINGS = join_windows_path(CONFIG_DIR, "servers\\tls.json")
WEB_SETTINGS = join_windows_path(CONFIG_DIR, "servers\\web\\general.json")
CONFIG_SERVER_SETTINGS = join_windows_path(CONFIG_DIR, "servers\\config\\general.json")
VERSION_FILE = join_windows_path(CONFIG_DIR, "version.txt")

WEB_PROTOCOLS = ("HttpUnrestricted", "HttpsUnrestricted", "HttpsRestrictedAdUsers", "HttpsRestrictedCustomUsers")
CONFIG_AUTHENTICATIONS = ("WindowsCredentials", "CustomCredentialsKerberos", "CustomCredentialsTls", "Anonymous")
DEFAULT_PORTS = {"HttpPort": 8065, "HttpsPort": 8165, "Port": 8064}


class StartFailure(Exception):
    """XU could not start; the message is what it logs."""


@dataclass(frozen=True)
class CertificateReference:
    store_location: str
    store_name: str
    thumbprint: str


@dataclass(frozen=True)
class XuSettings:
    web_protocol: str
    web_certificate: CertificateReference | None
    config_authentication: str
    config_certificate: CertificateReference | None
    http_port: int
    https_port: int
    config_port: int

    @property
    def web_uses_tls(self) -> bool:
        return self.web_protocol != "HttpUnrestricted"

    @property
    def config_uses_tls(self) -> bool:
        return self.config_authentication == "CustomCredentialsTls"

    @property
    def ports(self) -> list[int]:
        return sorted({self.config_port, self.http_port, self.https_port})


def _member(document: dict[str, object], name: str) -> object:
    """Property lookup as .NET JSON deserialisers do it: names are case-insensitive."""
    for key, value in document.items():
        if key.casefold() == name.casefold():
            return value
    return None


def _enum(value: object, choices: tuple[str, ...], default: str, what: str) -> str:
    if value is None:
        return default
    for choice in choices:
        if isinstance(value, str) and value.casefold() == choice.casefold():
            return choice
    raise StartFailure(f"Error converting value {json.dumps(value)} to type '{what}'.")


def _certificate_reference(section: dict[str, object]) -> CertificateReference | None:
    reference = _member(section, "Certificate")
    if not isinstance(reference, dict):
        return None
    thumbprint = _member(reference, "Thumbprint")
    if not isinstance(thumbprint, str) or not thumbprint:
        return None
    location = _member(reference, "StoreLocation")
    name = _member(reference, "StoreName")
    return CertificateReference(
        store_location=location if isinstance(location, str) else "LocalMachine",
        store_name=name if isinstance(name, str) else "My",
        thumbprint=thumbprint,
    )


class SettingsReader:
    """Reads XU's settings files from a host's file system."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def _document(self, windows_path: str) -> dict[str, object] | None:
        path = self.host.fs.resolve(windows_path)
        if not path.is_file():
            return None
        try:
            document = json.loads(path.read_bytes().decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise StartFailure(f"Error reading {windows_path}: {exc}") from exc
        if not isinstance(document, dict):
            raise StartFailure(f"Error reading {windows_path}: the settings are not a JSON object.")
        return document

    def _port(self, windows_path: str, name: str) -> int:
        document = self._document(windows_path) or {}
        value = _member(document, name)
        if value is None:
            return DEFAULT_PORTS[name]
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
            raise StartFailure(f"Error reading {windows_path}: {name} {json.dumps(value)} is not a valid port.")
        return value

    def ports(self) -> list[int]:
        """The configured ports; the defaults where the files cannot be read."""
        try:
            return self.read().ports
        except StartFailure:
            return sorted(DEFAULT_PORTS.values())

    def read(self) -> XuSettings:
        tls = self._document(TLS_SETTINGS) or {}
        web = _member(tls, "WebServer")
        config = _member(tls, "ConfigServer")
        web = web if isinstance(web, dict) else {}
        config = config if isinstance(config, dict) else {}
        return XuSettings(
            web_protocol=_enum(_member(web, "Protocol"), WEB_PROTOCOLS, "HttpUnrestricted", "WebServerProtocol"),
            web_certificate=_certificate_reference(web),
            config_authentication=_enum(
                _member(config, "Authentication"), CONFIG_AUTHENTICATIONS, "WindowsCredentials", "Authentication"
            ),
            config_certificate=_certificate_reference(config),
            http_port=self._port(WEB_SETTINGS, "HttpPort"),
            https_port=self._port(WEB_SETTINGS, "HttpsPort"),
            config_port=self._port(CONFIG_SERVER_SETTINGS, "Port"),
        )
