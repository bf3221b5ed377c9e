# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""XU settings files: parsing, finding thumbprint references, reading the TLS state.

Private to this collection. Paths into JSON documents are written as dotted keys with
``[n]`` for list items, e.g. ``WebServer.Certificate.Thumbprint`` or ``Bindings[0].Hash``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._thumbprint import ThumbprintError, clean_thumbprint
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._profiles import (
    CONFIG_PORT_FILES,
    CONFIG_SERVER_AUTHENTICATIONS,
    TLS_SETTINGS_FILE,
    WEB_PORT_FILES,
    WEB_PROTOCOLS,
    ProductProfile,
)

_PATH_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


class SettingsError(ValueError):
    """A settings file that cannot be understood."""


@dataclass(frozen=True)
class SettingsFile:
    """One settings file as read from the host."""

    path: str
    full_path: str
    exists: bool
    content: str | None
    sha256: str | None
    # The bytes start with a UTF-8 BOM: a rewrite keeps it.
    bom: bool = False
    # False: the bytes are not UTF-8 (content is None); such a file is never rewritten.
    utf8_valid: bool = True
    # The backups beside it (<name>.<time>.bak), full paths, oldest first.
    backups: tuple[str, ...] = ()

    def document(self) -> Any:
        """The parsed JSON, None for a missing file; SettingsError when it is not UTF-8 JSON."""
        if self.exists and not self.utf8_valid:
            raise SettingsError(
                f"{self.full_path} is not valid UTF-8, so it cannot be read as JSON and is left as it is; save it as UTF-8"
            )
        if not self.exists or self.content is None:
            return None
        try:
            return json.loads(self.content)
        except ValueError as e:
            raise SettingsError(f"Unable to parse {self.full_path} as JSON: {e}") from e
        except RecursionError as e:
            raise SettingsError(f"Unable to parse {self.full_path} as JSON: it is nested too deeply to be a settings file") from e


@dataclass(frozen=True)
class ThumbprintReference:
    file: str
    path: str
    value: str
    thumbprint: str

    def to_result(self) -> dict[str, str]:
        return {"file": self.file, "path": self.path, "value": self.value, "thumbprint": self.thumbprint}


def split_path(path: str) -> list[str | int]:
    """``A.B[2].C`` -> ``["A", "B", 2, "C"]``."""
    tokens: list[str | int] = []
    position = 0
    for match in _PATH_TOKEN.finditer(path):
        between = path[position:match.start()]
        key, index = match.groups()
        # A key follows a dot (or starts the path); an index follows anything directly.
        expected = "" if index is not None or not tokens else "."
        if between != expected:
            raise SettingsError(f"Invalid settings path {path!r}")
        tokens.append(int(index) if index is not None else key)
        position = match.end()
    if not tokens or path[position:]:
        raise SettingsError(f"Invalid settings path {path!r}")
    return tokens


def join_path(tokens: list[str | int]) -> str:
    out = ""
    for token in tokens:
        if isinstance(token, int):
            out += f"[{token}]"
        else:
            out += ("." if out else "") + token
    return out


def get_path(document: Any, path: str) -> Any:
    """The value at ``path``, None when any step is missing."""
    node = document
    for token in split_path(path):
        if isinstance(token, int):
            if not isinstance(node, list) or token >= len(node):
                return None
            node = node[token]
        else:
            if not isinstance(node, dict):
                return None
            existing = find_key(node, token)
            node = node[existing] if existing is not None else None
    return node


def find_key(node: dict[str, Any], key: str) -> str | None:
    """The existing spelling of ``key``: .NET's JSON readers match property names case-insensitively, so do we."""
    if key in node:
        return key
    lowered = key.lower()
    return next((existing for existing in node if existing.lower() == lowered), None)


def walk_strings(node: Any, prefix: list[str | int] | None = None) -> Iterator[tuple[list[str | int], str]]:
    """Every string value in a JSON document with its path."""
    prefix = prefix or []
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk_strings(value, [*prefix, key])
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk_strings(value, [*prefix, index])
    elif isinstance(node, str):
        yield prefix, node


def find_thumbprint_references(files: list[SettingsFile]) -> list[ThumbprintReference]:
    """Every string value in the JSON settings files that is a certificate thumbprint."""
    references = []
    for settings_file in files:
        if not settings_file.full_path.lower().endswith(".json"):
            continue
        try:
            document = settings_file.document()
        except SettingsError:
            continue
        for tokens, value in walk_strings(document):
            try:
                thumbprint = clean_thumbprint(value)
            except ThumbprintError:
                continue
            references.append(ThumbprintReference(settings_file.full_path, join_path(tokens), value, thumbprint))
    return references


def _reverse(mapping: dict[str, str], stored: Any) -> str | None:
    if not isinstance(stored, str):
        return None
    for option, value in mapping.items():
        if value.lower() == stored.lower():
            return option
    return None


@dataclass(frozen=True)
class TlsState:
    """The TLS configuration as the settings files describe it."""

    tls_file_exists: bool
    web_protocol: str | None
    web_protocol_raw: Any
    web_certificate: str | None
    config_server_authentication: str | None
    config_server_authentication_raw: Any
    config_server_certificate: str | None
    web_http_port: int
    web_https_port: int
    config_server_port: int | None

    @property
    def web_uses_tls(self) -> bool:
        return self.web_protocol is not None and self.web_protocol != "http_unrestricted"

    @property
    def config_server_uses_tls(self) -> bool:
        return self.config_server_authentication == "custom_credentials_tls"


def thumbprint_or_none(value: Any) -> str | None:
    """The clean thumbprint ``value`` is, None when it is none."""
    try:
        return clean_thumbprint(value)
    except ThumbprintError:
        return None


def _port(files: dict[str, SettingsFile], candidates: tuple[str, ...], key: str, default: int | None) -> int | None:
    for name in candidates:
        settings_file = files.get(name)
        if settings_file is None or not settings_file.exists:
            continue
        value = get_path(settings_file.document(), key)
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536:
            return value
    return default


def read_tls_state(files: dict[str, SettingsFile], profile: ProductProfile) -> TlsState:
    """Interpret tls.json and the port files through the profile's settings map.

    A missing tls.json is XU's default: plain HTTP and Windows credentials.
    """
    tls_file = files.get(TLS_SETTINGS_FILE)
    document = tls_file.document() if tls_file is not None else None
    exists = tls_file is not None and tls_file.exists
    if tls_file is not None and tls_file.exists and not isinstance(document, dict):
        # null, [] or a bare value: not XU's defaults (those come with a missing file), a file XU cannot start with.
        raise SettingsError(
            f"{tls_file.full_path} holds {json.dumps(document)[:40]}, not a JSON object: the service cannot start with it;"
            " restore it from a backup (xu_tls_restore) or delete it to fall back to plain HTTP"
        )
    settings_map = profile.settings_map
    if exists:
        web_raw = get_path(document, settings_map["web_protocol"])
        auth_raw = get_path(document, settings_map["config_server_authentication"])
        # A setting missing from the file is XU's default for it.
        web_protocol = "http_unrestricted" if web_raw is None else _reverse(WEB_PROTOCOLS, web_raw)
        authentication = "windows_credentials" if auth_raw is None else _reverse(CONFIG_SERVER_AUTHENTICATIONS, auth_raw)
        web_certificate = thumbprint_or_none(get_path(document, settings_map["web_certificate"]))
        config_certificate = thumbprint_or_none(get_path(document, settings_map["config_server_certificate"]))
    else:
        web_raw = auth_raw = None
        web_protocol, authentication = "http_unrestricted", "windows_credentials"
        web_certificate = config_certificate = None
    return TlsState(
        tls_file_exists=exists,
        web_protocol=web_protocol,
        web_protocol_raw=web_raw,
        web_certificate=web_certificate,
        config_server_authentication=authentication,
        config_server_authentication_raw=auth_raw,
        config_server_certificate=config_certificate,
        web_http_port=_port(files, WEB_PORT_FILES, "HttpPort", profile.web_http_port) or profile.web_http_port,
        web_https_port=_port(files, WEB_PORT_FILES, "HttpsPort", profile.web_https_port) or profile.web_https_port,
        config_server_port=_port(files, CONFIG_PORT_FILES, "Port", profile.config_server_port),
    )
