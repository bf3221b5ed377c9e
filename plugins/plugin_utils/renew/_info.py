# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading xu_tls_info's report for the renew role's decisions. Private to this collection.

The report reaches the role's filters as a plain dict that may be a failed task's result, so
every reader here takes what it is given and answers a safe value for a missing or mistyped key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._profiles import TLS_SETTINGS_FILE, WEB_PROTOCOLS

# The web server protocols that serve TLS, as the modules' options name them.
HTTPS_PROTOCOLS = tuple(name for name in WEB_PROTOCOLS if name.startswith("https_"))
PLAIN_HTTP_PROTOCOL = next(name for name in WEB_PROTOCOLS if not name.startswith("https_"))
# How a path names tls.json, whatever the install dir (compared lower-case).
TLS_FILE_SUFFIX = "\\" + TLS_SETTINGS_FILE.lower()
ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def as_dict(value: Any) -> dict[str, Any]:
    """A copy of ``value`` when it is a mapping, else an empty dict."""
    return dict(value) if isinstance(value, Mapping) else {}


def upper(value: Any) -> str | None:
    """A thumbprint as compared everywhere: stripped and upper-case; None when empty or not a string."""
    return value.strip().upper() if isinstance(value, str) and value.strip() else None


def is_tls_file(path: Any) -> bool:
    return str(path or "").lower().endswith(TLS_FILE_SUFFIX)


def tls_settings_file(info: Mapping[str, Any]) -> dict[str, Any]:
    """The entry of ``tls.json`` in the report's settings files (empty when the report has none)."""
    files = info.get("settings_files")
    for entry in files if isinstance(files, list) else []:
        if is_tls_file(as_dict(entry).get("path")):
            return as_dict(entry)
    return {}


def store_entry(info: Mapping[str, Any], thumbprint: str | None) -> dict[str, Any] | None:
    """A certificate of ``LocalMachine\\My`` as the report lists it, or None when it is not there."""
    wanted = upper(thumbprint)
    if wanted is None:
        return None
    entries = info.get("store_certificates")
    for entry in entries if isinstance(entries, list) else []:
        if upper(as_dict(entry).get("thumbprint")) == wanted:
            return as_dict(entry)
    return None


def usable(info: Mapping[str, Any], thumbprint: str | None) -> bool:
    """Whether the service could start with the certificate: in the store, with a private key.

    An unreadable key is granted on the way (the modules run with grant_key_access), and an
    expired certificate is still served by XU, so neither makes a certificate unusable here.
    """
    entry = store_entry(info, thumbprint)
    return bool(entry and entry.get("has_private_key"))


def served(info: Mapping[str, Any], name: str) -> dict[str, Any]:
    """What the report saw on one of the server's ports (web_http, web_https, config_server)."""
    return as_dict(as_dict(info.get("served")).get(name))


def service_running(info: Mapping[str, Any]) -> bool:
    return as_dict(info.get("service")).get("state") == "Running"
