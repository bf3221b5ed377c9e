# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Product profiles: where each Theobald server product keeps what. Private to this collection.

The values come from the vendor's public documentation. The ones the documentation
does not state (the service key name, the tls.json layout) are assumptions: every
value here can be overridden by module options, and xu_tls_info reports what was used.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

# Where in tls.json each TLS setting lives (dotted JSON path). The layout is not
# documented by the vendor; this is the project's assumption, see docs/assumptions.md.
DEFAULT_SETTINGS_MAP: dict[str, str] = {
    "web_protocol": "WebServer.Protocol",
    "web_certificate": "WebServer.Certificate.Thumbprint",
    "config_server_authentication": "ConfigServer.Authentication",
    "config_server_certificate": "ConfigServer.Certificate.Thumbprint",
}

# Option value -> value stored in tls.json, for the Designer's four web server choices.
WEB_PROTOCOLS: dict[str, str] = {
    "http_unrestricted": "HttpUnrestricted",
    "https_unrestricted": "HttpsUnrestricted",
    "https_ad_users": "HttpsRestrictedAdUsers",
    "https_custom_users": "HttpsRestrictedCustomUsers",
}

CONFIG_SERVER_AUTHENTICATIONS: dict[str, str] = {
    "windows_credentials": "WindowsCredentials",
    "custom_credentials_kerberos": "CustomCredentialsKerberos",
    "custom_credentials_tls": "CustomCredentialsTls",
    "anonymous": "Anonymous",
}

# Port settings: the documentation spells the folder both "server" and "servers".
WEB_PORT_FILES = ("config\\servers\\web\\general.json", "config\\server\\web\\general.json")
CONFIG_PORT_FILES = ("config\\servers\\config\\general.json", "config\\server\\config\\general.json")
TLS_SETTINGS_FILE = "config\\servers\\tls.json"
VERSION_FILE = "config\\version.txt"


@dataclass(frozen=True)
class ProductProfile:
    """Everything the modules need to know about one installation."""

    product: str
    title: str
    install_dir: str
    service_display_name: str
    service_name: str | None
    web_http_port: int
    web_https_port: int
    config_server_port: int | None
    settings_map: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SETTINGS_MAP))
    # False: the install dir is the service executable's folder, install_dir only documents the default.
    install_dir_explicit: bool = False

    @property
    def settings_files(self) -> list[str]:
        """Files read on every discovery, relative to the install dir."""
        return [TLS_SETTINGS_FILE, *WEB_PORT_FILES, *CONFIG_PORT_FILES, VERSION_FILE]

    def ports(self) -> list[int]:
        """The product's network ports: web HTTP, web HTTPS, configuration server."""
        ports = [self.web_http_port, self.web_https_port]
        if self.config_server_port is not None:
            ports.append(self.config_server_port)
        return ports


PROFILES: dict[str, ProductProfile] = {
    "xtract_universal": ProductProfile(
        product="xtract_universal",
        title="Xtract Universal",
        install_dir="C:\\Program Files\\XtractUniversal",
        service_display_name="Xtract Universal",
        service_name=None,
        web_http_port=8065,
        web_https_port=8165,
        config_server_port=8064,
    ),
    "board_connector": ProductProfile(
        product="board_connector",
        title="Board Connector",
        install_dir="C:\\Program Files\\BOARDConnector",
        service_display_name="BOARD Connector",
        service_name=None,
        web_http_port=8097,
        web_https_port=8197,
        config_server_port=8096,
    ),
    "yunio": ProductProfile(
        product="yunio",
        title="yunIO",
        install_dir="C:\\Program Files\\Theobald Software\\yunIO",
        service_display_name="yunio",
        service_name=None,
        web_http_port=8075,
        web_https_port=8175,
        config_server_port=None,
    ),
}

# Module options that override a profile value of the same name.
PROFILE_OVERRIDES = (
    "install_dir",
    "service_display_name",
    "service_name",
    "web_http_port",
    "web_https_port",
    "config_server_port",
)


def resolve_profile(params: dict[str, Any]) -> ProductProfile:
    """The profile named by ``product`` with every override the user gave applied."""
    profile = PROFILES[params.get("product") or "xtract_universal"]
    overrides: dict[str, Any] = {
        name: params[name] for name in PROFILE_OVERRIDES if params.get(name) is not None
    }
    settings_map = dict(DEFAULT_SETTINGS_MAP)
    settings_map.update({k: v for k, v in (params.get("settings_map") or {}).items() if v})
    return replace(profile, settings_map=settings_map, install_dir_explicit="install_dir" in overrides, **overrides)
