"""The Xtract Universal service of one host: settings, start, stop, restart.

On start it reads its settings files the way XU does and opens its listeners. Where XU
cannot start (unreadable settings, a bound certificate missing, without a private key,
or with a key its account may not read) the service ends up Stopped and the reason goes
to the event log. An expired certificate is served; a certificate deleted from the store
keeps being served until the next start, since the running process holds it.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization

from .accounts import XU_SERVICE_ACCOUNT, XU_SERVICE_LOGON
from .errors import PrimitiveError
from .listeners import (
    Listener,
    open_listener,
    serve_config_tcp,
    serve_config_tls,
    serve_web,
    server_tls_context,
)
from .winpath import join_windows_path

if TYPE_CHECKING:
    import ssl

    from .certstore import StoredCertificate
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
SCM_TIMEOUT_REASON = "The service did not respond to the start or control request in a timely fashion."


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


class ServiceStartError(Exception):
    """What ServiceController.Start throws, inner messages joined as the agent reports them."""


class XuService:
    """The Windows service `XtractUniversal Service` and the process it runs.

    Start returns once the service control manager launched the process (StartPending);
    XU then needs `restart_delay` seconds to read its settings and open its listeners,
    after which it is Running, or Stopped with the reason in the event log.
    """

    name = SERVICE_NAME
    display_name = DISPLAY_NAME
    account = XU_SERVICE_LOGON
    image_path = IMAGE_PATH
    start_mode = "Auto"  # Win32_Service.StartMode's word for Automatic

    def __init__(self, host: Host, restart_delay: float) -> None:
        self.host = host
        self.settings = SettingsReader(host)
        self.restart_delay = restart_delay
        self.state = "Stopped"
        self.listeners: list[Listener] = []
        self.last_start_error: str | None = None
        self._starting: asyncio.Task[None] | None = None

    def describe(self) -> dict[str, object]:
        """The service as Win32_Service reports it."""
        return {
            "name": self.name,
            "display_name": self.display_name,
            "state": self.state,
            "start_mode": self.start_mode,
            "account": self.account,
            "image_path": self.image_path,
        }

    def state_json(self) -> dict[str, object]:
        return {
            **self.describe(),
            "listeners": [listener.describe() for listener in self.listeners],
            "last_start_error": self.last_start_error,
            "restart_delay": self.restart_delay,
        }

    async def start(self, delay: float | None = None) -> None:
        """ServiceController.Start; XU takes `delay` (default: the restart delay) to come up."""
        delay = self.restart_delay if delay is None else delay
        if self.state != "Stopped":
            raise ServiceStartError(
                f"Cannot start service {self.name} on computer '.'. An instance of the service is already running."
            )
        if self.host.faults.take_restart_failure():
            # The process never reports to the service control manager, which gives up.
            await asyncio.sleep(delay)
            self._failed(SCM_TIMEOUT_REASON)
            raise ServiceStartError(f"Cannot start service {self.name} on computer '.'. {SCM_TIMEOUT_REASON}")
        self.state = "StartPending"
        self._starting = asyncio.create_task(self._run_start(delay))

    async def start_now(self) -> bool:
        """Start without the start-up delay (a host booting before the lab hands it out)."""
        await self.start(delay=0)
        await self.wait_started()
        return self.state == "Running"

    async def wait_started(self) -> None:
        if self._starting is not None:
            await asyncio.shield(self._starting)

    async def stop(self) -> None:
        """ServiceController.Stop, complete: listeners and open connections are gone."""
        if self.state == "StartPending":
            await self.wait_started()
        if self.state == "Stopped":
            return
        self.state = "StopPending"
        for listener in self.listeners:
            listener.close()
        self.listeners = []
        self.state = "Stopped"
        self.host.emit("service", state="Stopped", reason=None, listeners=[])

    async def _run_start(self, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            self.listeners = await self._open_listeners()
        except StartFailure as failure:
            self._failed(str(failure))
            return
        self.state = "Running"
        self.last_start_error = None
        self.host.emit("service", state="Running", reason=None, listeners=[x.describe() for x in self.listeners])

    def _failed(self, reason: str) -> None:
        self.state = "Stopped"
        self.listeners = []
        self.last_start_error = reason
        self.host.emit("service", state="Stopped", reason=reason, listeners=[])

    def _certificate(self, reference: CertificateReference, role: str) -> StoredCertificate:
        where = f"{reference.store_location}\\{reference.store_name}"
        entry = None
        if reference.store_location.casefold() == "localmachine":
            try:
                entry = self.host.stores.open(reference.store_name).get(reference.thumbprint)
            except PrimitiveError:
                entry = None
        if entry is None:
            raise StartFailure(f"{role}: the certificate with thumbprint {reference.thumbprint} was not found in {where}.")
        if entry.key is None:
            raise StartFailure(f"{role}: the certificate {entry.thumbprint} has no private key.")
        if not entry.key.readable_by_xu_service():
            raise StartFailure(
                f"{role}: Keyset does not exist. {XU_SERVICE_ACCOUNT} cannot read the private key of certificate "
                f"{entry.thumbprint}."
            )
        return entry

    async def _open_listeners(self) -> list[Listener]:
        settings = self.settings.read()
        contexts: dict[str, ssl.SSLContext] = {}

        def tls_for(reference: CertificateReference | None, role: str) -> tuple[ssl.SSLContext, str]:
            if reference is None:
                raise StartFailure(f"{role}: TLS is configured but no certificate is selected.")
            entry = self._certificate(reference, role)
            if entry.thumbprint not in contexts:
                assert entry.key is not None
                cert_pem = entry.certificate.public_bytes(serialization.Encoding.PEM)
                contexts[entry.thumbprint] = server_tls_context(cert_pem, entry.key.private_pem())
            return contexts[entry.thumbprint], entry.thumbprint

        if settings.web_uses_tls:
            web_tls, web_thumbprint = tls_for(settings.web_certificate, "Web server")
            web = Listener(settings.https_port, "https", web_thumbprint)
        else:
            web_tls, web = None, Listener(settings.http_port, "http", None)
        if settings.config_uses_tls:
            config_tls, config_thumbprint = tls_for(settings.config_certificate, "Configuration server")
            config = Listener(settings.config_port, "tls", config_thumbprint)
        else:
            config_tls, config = None, Listener(settings.config_port, "tcp", None)

        opened: list[Listener] = []
        try:
            for listener, handler, tls in (
                (config, serve_config_tls if config_tls else serve_config_tcp, config_tls),
                (web, serve_web, web_tls),
            ):
                port = listener.port
                opened.append(
                    await open_listener(
                        self.host.address, listener, lambda peer, p=port: self.host.admits(peer, p), handler, tls
                    )
                )
        except OSError as exc:
            for listener in opened:
                listener.close()
            raise StartFailure(f"Failed to listen on port {listener.port}: {exc.strerror or exc}") from exc
        return opened
