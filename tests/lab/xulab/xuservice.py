"""The Xtract Universal service of one host: settings, start, stop, restart.

On start it reads its settings files the way XU does and opens its listeners. Where XU
cannot start (unreadable settings, a bound certificate missing, without a private key,
or with a key its account may not read) the service ends up Stopped and the reason goes
to the event log. An expired certificate is served; a certificate deleted from the store
keeps being served until the next start, since the running process holds it.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization

from .accounts import DEFAULT_SERVICE_LOGON, SERVICE_LOGONS, ServiceLogon
from .errors import PrimitiveError
from .listeners import (
    Listener,
    open_listener,
    serve_config_tcp,
    serve_config_tls,
    serve_web,
    server_tls_context,
)
from .xusettings import DISPLAY_NAME, IMAGE_PATH, SERVICE_NAME, CertificateReference, SettingsReader, StartFailure

if TYPE_CHECKING:
    import ssl

    from .certstore import StoredCertificate
    from .host import Host

SCM_TIMEOUT_REASON = "The service did not respond to the start or control request in a timely fashion."
CANNOT_ACCEPT_CONTROL = "The service cannot accept control messages at this time."
# ServiceController.Stop() waits this long for each running dependent it stops, whatever its caller planned
# (microsoft/referencesource System.ServiceProcess/ServiceController.cs, Stop: WaitForStatus(Stopped, 30 s)).
DOTNET_DEPENDENT_WAIT_S = 30.0
# What WaitForStatus throws then (System.ServiceProcess.TimeoutException, .NET Framework's text).
WAIT_TIMED_OUT = "Time out has expired and the operation has not been completed."


class ServiceStartError(Exception):
    """What ServiceController.Start throws, inner messages joined as the agent reports them."""


class ServiceStopError(Exception):
    """What ServiceController.Stop throws, inner messages joined as the agent reports them."""


@dataclass
class DependentService:
    """A service that depends on XU (`fault --set dependent_service=NAME`): stopping XU stops it, nothing starts it.

    With `hangs` (`fault --set dependent_stop_hangs=NAME`) a stop leaves it in StopPending for good."""

    name: str
    state: str = "Running"
    hangs: bool = False


class XuService:
    """The Windows service `XtractUniversal Service` and the process it runs.

    Start returns once the service control manager launched the process (StartPending);
    XU then needs `restart_delay` seconds to read its settings and open its listeners,
    after which it is Running, or Stopped with the reason in the event log.
    """

    name = SERVICE_NAME
    display_name = DISPLAY_NAME
    image_path = IMAGE_PATH
    start_mode = "Auto"  # Win32_Service.StartMode's word for Automatic

    def __init__(self, host: Host, restart_delay: float) -> None:
        self.host = host
        self.settings = SettingsReader(host)
        self.restart_delay = restart_delay
        self.state = "Stopped"
        self.listeners: list[Listener] = []
        self.last_start_error: str | None = None
        self.logon: ServiceLogon = SERVICE_LOGONS[DEFAULT_SERVICE_LOGON]
        self.dependents: list[DependentService] = []
        # `fault --set stop_hangs=N`: the next N stops leave the service in StopPending for good.
        self.stop_hangs = 0
        self._starting: asyncio.Task[None] | None = None

    @property
    def account(self) -> str:
        return self.logon.start_name

    def describe(self) -> dict[str, object]:
        """The service as Win32_Service reports it, with what the agent adds (SIDs, dependents)."""
        return {
            "name": self.name,
            "display_name": self.display_name,
            "state": self.state,
            "start_mode": self.start_mode,
            "account": self.account,
            "account_sid": self.logon.sid,
            "account_groups": list(self.logon.groups),
            "image_path": self.image_path,
            "dependents": [dependent.name for dependent in self.dependents],
        }

    def state_json(self) -> dict[str, object]:
        return {
            **self.describe(),
            "dependent_states": {dependent.name: dependent.state for dependent in self.dependents},
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
        self.state = "StartPending"
        if self.host.faults.take_restart_failure():
            # The process never reports to the service control manager, which gives up; Start() throws.
            self._starting = asyncio.create_task(self._fail_after(delay, SCM_TIMEOUT_REASON))
            await self.wait_started()
            raise ServiceStartError(f"Cannot start service {self.name} on computer '.'. {SCM_TIMEOUT_REASON}")
        self._starting = asyncio.create_task(self._run_start(delay))

    async def start_now(self) -> bool:
        """Start without the start-up delay (a host booting before the lab hands it out)."""
        await self.start(delay=0)
        await self.wait_started()
        return self.state == "Running"

    def halt(self) -> None:
        """The machine goes down: a start in progress never finishes."""
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
        self._starting = None

    async def wait_started(self) -> None:
        if self._starting is not None:
            await asyncio.shield(self._starting)

    async def stop(self) -> None:
        """ServiceController.Stop: its dependents first, then XU; listeners and open connections are gone.

        As .NET Framework does it: each dependent that is not stopped gets the stop control and is waited for up to
        30 s; one that does not stop makes Stop() throw (TimeoutException) before XU gets the stop control, and the
        dependents it stopped stay stopped. A service in StartPending or StopPending does not accept the stop control.
        """
        if self.state in ("StartPending", "StopPending"):
            raise ServiceStopError(f"Cannot stop {self.name} service on computer '.'. {CANNOT_ACCEPT_CONTROL}")
        if self.state == "Stopped":
            return
        for dependent in self.dependents:
            if dependent.state == "Stopped":
                continue
            self.stop_dependent(dependent.name)
            if dependent.state != "Stopped":
                await asyncio.sleep(DOTNET_DEPENDENT_WAIT_S)
            if dependent.state != "Stopped":
                raise ServiceStopError(WAIT_TIMED_OUT)
        self.state = "StopPending"
        for listener in self.listeners:
            listener.close()
        self.listeners = []
        if self.stop_hangs > 0:
            self.stop_hangs -= 1
            self.host.emit("service", state="StopPending", reason="the service does not finish stopping", listeners=[])
            return
        self.state = "Stopped"
        self.host.emit("service", state="Stopped", reason=None, listeners=[])

    def stop_dependent(self, name: str) -> None:
        """ServiceController.Stop of a dependent service (it has none of its own); a hanging one stays in StopPending."""
        dependent = next(d for d in self.dependents if d.name.casefold() == name.casefold())
        if dependent.state in ("StartPending", "StopPending"):
            raise ServiceStopError(f"Cannot stop {dependent.name} service on computer '.'. {CANNOT_ACCEPT_CONTROL}")
        if dependent.state == "Stopped":
            raise ServiceStopError(f"Cannot stop {dependent.name} service on computer '.'. The service has not been started.")
        dependent.state = "StopPending" if dependent.hangs else "Stopped"
        reason = "the service does not finish stopping" if dependent.hangs else f"{self.name} is stopping"
        self.host.emit("service", name=dependent.name, state=dependent.state, reason=reason, listeners=[])

    def start_dependent(self, name: str) -> None:
        """ServiceController.Start of a dependent service: it needs XU running."""
        dependent = next(d for d in self.dependents if d.name.casefold() == name.casefold())
        if dependent.state != "Stopped":
            raise ServiceStartError(
                f"Cannot start service {dependent.name} on computer '.'. An instance of the service is already running."
            )
        if self.state != "Running":
            raise ServiceStartError(
                f"Cannot start service {dependent.name} on computer '.'. The dependency service or group failed to start."
            )
        dependent.state = "Running"
        self.host.emit("service", name=dependent.name, state="Running", reason=None, listeners=[])

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

    async def _fail_after(self, delay: float, reason: str) -> None:
        await asyncio.sleep(delay)
        self._failed(reason)

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
        if not entry.key.readable_by(self.logon.identities):
            raise StartFailure(
                f"{role}: Keyset does not exist. {self.account} cannot read the private key of certificate "
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
                # The leaf, then the intermediates Windows finds in LocalMachine\CA (Schannel sends the chain, not the root).
                chain = [entry.certificate, *self.host.stores.intermediates_for(entry.certificate)]
                cert_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
                contexts[entry.thumbprint] = server_tls_context(cert_pem, entry.key.private_pem(), self.host.accepts_server_name)
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
                (web, functools.partial(serve_web, accepts_name=self.host.accepts_server_name), web_tls),
            ):
                admits = functools.partial(self.host.admits, port=listener.port)
                opened.append(await open_listener(self.host.address, listener, admits, handler, tls))
        except OSError as exc:
            for listener in opened:
                listener.close()
            raise StartFailure(f"Failed to listen on port {listener.port}: {exc.strerror or exc}") from exc
        return opened
