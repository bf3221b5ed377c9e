# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One read of a host's XU state, shared by every module. Private to this collection.

``read_snapshot`` makes one remote call (two when the settings name ports other than
the profile's, since the probes must go to the ports the service really uses).
"""

from __future__ import annotations

import base64
import binascii
import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._certificate import (
    CertificateFacts,
    ServiceIdentity,
    key_readable_by,
    parse_der,
    utc_now,
)
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.gate._gate import auto_open_task_name, gate_summary, hold_group_name
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._agent import Agent, HostClock, Operation, OperationResult
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import XuError
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._profiles import ProductProfile
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._settings import (
    SettingsError,
    SettingsFile,
    TlsState,
    read_tls_state,
)

PROBE_TIMEOUT_MS = 3000


@dataclass(frozen=True)
class StoreCertificate:
    """A certificate in LocalMachine\\My as the host reported it, parsed here."""

    facts: CertificateFacts
    has_private_key: bool
    friendly_name: str
    key: dict[str, Any] | None

    @property
    def thumbprint(self) -> str:
        return self.facts.thumbprint


@dataclass(frozen=True)
class Probe:
    """What answered on one port, from the host itself."""

    port: int
    tls: bool
    connected: bool
    certificate: CertificateFacts | None
    http_status: int | None
    http_body: str | None
    error: str | None

    def to_result(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "tls": self.tls,
            "answering": self.connected and (self.certificate is not None if self.tls else self.http_status is not None),
            "thumbprint": self.certificate.thumbprint if self.certificate else None,
            "http_status": self.http_status,
            "error": self.error,
        }


@dataclass
class Snapshot:
    profile: ProductProfile
    # The controller's time at the read (certificates are judged by it, as their clients judge them).
    now: datetime.datetime
    computer: dict[str, Any]
    service: dict[str, Any] | None
    install_dir: str | None
    install_dir_exists: bool
    files: dict[str, SettingsFile]
    tls: TlsState | None
    settings_error: str | None
    certificates: dict[str, StoreCertificate]
    gate_rules: list[dict[str, Any]]
    gate_task: dict[str, Any] | None
    # The hold's rules (the gate's second group, which its auto-open task leaves alone).
    hold_rules: list[dict[str, Any]] = field(default_factory=list)
    probes: dict[str, Probe] = field(default_factory=dict)
    read_errors: list[str] = field(default_factory=list)
    # The renewal journal ({exists, content}), when the caller asked for it.
    journal: dict[str, Any] | None = None
    # The host's clock against the controller's (None: no answer said it), and the host's time at the read by it:
    # what the host decides by its clock (a lease, a task's deadline) is judged by this, not by ``now``.
    clock: HostClock | None = None
    host_now: datetime.datetime = field(default_factory=utc_now)

    @property
    def installed(self) -> bool:
        return self.service is not None and self.install_dir_exists

    @property
    def fqdn(self) -> str | None:
        hostname = str(self.computer.get("hostname") or "")
        domain = str(self.computer.get("domain") or "")
        if not hostname:
            return None
        return f"{hostname}.{domain}".lower() if domain and "." not in hostname else hostname.lower()

    @property
    def service_account(self) -> str | None:
        return (self.service or {}).get("account")

    @property
    def service_identity(self) -> ServiceIdentity:
        return ServiceIdentity.from_service(self.service)

    @property
    def version(self) -> str | None:
        version_file = self.files.get("config\\version.txt")
        if version_file and version_file.content:
            return version_file.content.strip() or None
        return None

    def key_readable(self, certificate: StoreCertificate) -> bool | None:
        return key_readable_by(self.service_identity, certificate.key, certificate.has_private_key)

    def gate_summary(self) -> dict[str, Any]:
        return gate_summary(self.gate_rules, self.gate_task)

    def pending_mismatches(self, state: TlsState) -> list[str]:
        """Where the running service serves something else than ``state`` says (a restart pending); [] unless it runs."""
        if (self.service or {}).get("state") != "Running":
            return []
        return settings_mismatches(state, self.probes)


def _decode_der(der_b64: Any) -> bytes | None:
    if not isinstance(der_b64, str) or not der_b64:
        return None
    try:
        return base64.b64decode(der_b64, validate=True)
    except (binascii.Error, ValueError):
        return None


def store_certificate(raw: dict[str, Any]) -> StoreCertificate | None:
    der = _decode_der(raw.get("der_b64"))
    if der is None:
        return None
    try:
        facts = parse_der(der)
    except ValueError:
        return None
    return StoreCertificate(
        facts=facts,
        has_private_key=bool(raw.get("has_private_key")),
        friendly_name=str(raw.get("friendly_name") or ""),
        key=raw.get("key"),
    )


def probe_from_result(raw: OperationResult, port: int, tls: bool) -> Probe:
    if not raw.ok or raw.result is None:
        message = (raw.error or {}).get("message") if raw.error else raw.status
        return Probe(port, tls, False, None, None, None, str(message))
    result = raw.result
    der = _decode_der(result.get("der_b64"))
    certificate = None
    if der is not None:
        try:
            certificate = parse_der(der)
        except ValueError:
            certificate = None
    return Probe(
        port=port,
        tls=tls,
        connected=bool(result.get("connected")),
        certificate=certificate,
        http_status=result.get("http_status"),
        http_body=result.get("http_body"),
        error=result.get("tls_error") or result.get("error"),
    )


def probe_operation(port: int, tls: bool, http_path: str | None, server_name: str | None = None) -> Operation:
    """Probe a local port; ``server_name`` (the host's DNS name, when known) goes in the TLS server name and Host header,
    since XU treats the certificate's name as its own and may answer ``localhost`` differently."""
    return Operation("port_probe", {
        "host": "localhost", "server_name": server_name, "port": port, "tls": tls, "http_path": http_path, "timeout_ms": PROBE_TIMEOUT_MS,
    })


def probe_operations(ports: dict[str, tuple[int, bool, str | None]], server_name: str | None = None) -> list[Operation]:
    return [probe_operation(port, tls, path, server_name) for port, tls, path in ports.values()]


def planned_probes(web_http: int, web_https: int, config: int | None) -> dict[str, tuple[int, bool, str | None]]:
    """Every port the product may serve on, probed whatever the settings say."""
    probes: dict[str, tuple[int, bool, str | None]] = {
        "web_http": (web_http, False, "/version"),
        "web_https": (web_https, True, "/version"),
    }
    if config is not None:
        probes["config_server"] = (config, True, None)
    return probes


def discover_operation(profile: ProductProfile, files: Sequence[str]) -> Operation:
    """Find the service and its install dir, and read ``files`` (relative to the install dir, or absolute)."""
    return Operation("discover", {
        "service_display_name": profile.service_display_name,
        "service_name": profile.service_name,
        "install_dir": profile.install_dir if profile.install_dir_explicit else None,
        "files": list(files),
    })


def settings_files_of(discover: dict[str, Any]) -> dict[str, SettingsFile]:
    """The files a discover answer holds, by the path they were asked for."""
    return {
        str(raw.get("path")): SettingsFile(
            path=str(raw.get("path")),
            full_path=str(raw.get("full_path") or raw.get("path")),
            exists=bool(raw.get("exists")),
            content=raw.get("content"),
            sha256=raw.get("sha256"),
            bom=raw.get("bom") is True,
            # Only bytes that exist can be invalid; an answer without the field (an older agent) had decoded them leniently.
            utf8_valid=not raw.get("exists") or raw.get("utf8_valid") is not False,
            backups=tuple(str(b) for b in raw.get("backups") or [] if isinstance(b, str)),
        )
        for raw in discover.get("files") or []
    }


def read_operations(profile: ProductProfile, gate_group: str, extra_files: Sequence[str] = ()) -> list[Operation]:
    """The read call's operations; ``extra_files`` (relative to the install dir, or absolute) are read too."""
    return [
        discover_operation(profile, [*profile.settings_files, *(f for f in extra_files if f not in profile.settings_files)]),
        Operation("cert_list", {"store": "My", "thumbprints": None}),
        Operation("fw_get", {"group": gate_group}),
        Operation("task_get", {"name": auto_open_task_name(gate_group)}),
        # The hold is read with the gate, so that a carried state answers the gate's own read of both.
        Operation("fw_get", {"group": hold_group_name(gate_group)}),
        Operation("task_get", {"name": auto_open_task_name(hold_group_name(gate_group))}),
    ]


def read_snapshot(
    agent: Agent,
    profile: ProductProfile,
    gate_group: str,
    *,
    probe: bool = True,
    journal_name: str | None = None,
    extra_files: Sequence[str] = (),
    server_name: str | None = None,
) -> Snapshot:
    """Read everything the modules judge from, in one remote call where possible.

    ``server_name`` is the name the probes use for TLS and HTTP (the ``fqdn`` option when given; else localhost).
    """
    operations = read_operations(profile, gate_group, extra_files)
    base = len(operations)
    planned = planned_probes(profile.web_http_port, profile.web_https_port, profile.config_server_port)
    if probe:
        operations += probe_operations(planned, server_name)
    if journal_name is not None:
        operations.append(Operation("journal_read", {"name": journal_name}))
    results = agent.call(operations, stop_on_error=False)
    discover = results[0].value()
    snapshot = _build(profile, discover, results)
    snapshot.clock = agent.clock
    snapshot.host_now = snapshot.now + snapshot.clock.offset if snapshot.clock is not None else snapshot.now
    if journal_name is not None:
        # An unreadable journal is reported, not fatal: the rest of the read is still good.
        if results[-1].ok:
            snapshot.journal = results[-1].result
        else:
            error = results[-1].error or {}
            snapshot.read_errors.append(f"journal_read: {error.get('type')}: {error.get('message')}")
    if probe and snapshot.tls is not None:
        wanted = planned_probes(snapshot.tls.web_http_port, snapshot.tls.web_https_port, snapshot.tls.config_server_port)
        probe_results = results[base:base + len(planned)]
        if wanted != planned:
            probe_results = agent.call(probe_operations(wanted, server_name), stop_on_error=False)
            planned = wanted
        snapshot.probes = {
            name: probe_from_result(raw, port, tls) for (name, (port, tls, _path)), raw in zip(planned.items(), probe_results, strict=True)
        }
    return snapshot


def _build(profile: ProductProfile, discover: dict[str, Any], results: list[OperationResult]) -> Snapshot:
    files = settings_files_of(discover)
    read_errors = [
        f"{r.op}: {(r.error or {}).get('type')}: {(r.error or {}).get('message')}" for r in results[1:6] if not r.ok
    ]
    tls: TlsState | None = None
    settings_error = None
    try:
        tls = read_tls_state(files, profile)
    except SettingsError as e:
        settings_error = str(e)
    certificates: dict[str, StoreCertificate] = {}
    if results[1].ok:
        for raw in (results[1].result or {}).get("certificates") or []:
            certificate = store_certificate(raw)
            if certificate is not None:
                certificates[certificate.thumbprint] = certificate
    return Snapshot(
        profile=profile,
        now=utc_now(),
        computer=discover.get("computer") or {},
        service=discover.get("service"),
        install_dir=discover.get("install_dir"),
        install_dir_exists=bool(discover.get("install_dir_exists")),
        files=files,
        tls=tls,
        settings_error=settings_error,
        certificates=certificates,
        gate_rules=list((results[2].result or {}).get("rules") or []) if results[2].ok else [],
        gate_task=(results[3].result or {}).get("task") if results[3].ok else None,
        hold_rules=list((results[4].result or {}).get("rules") or []) if results[4].ok else [],
        read_errors=read_errors,
    )


def require_installed(snapshot: Snapshot) -> None:
    """XuError unless the product is installed and its settings are readable."""
    if snapshot.service is None:
        raise XuError(
            f"No service with display name {snapshot.profile.service_display_name!r} on the host;"
            " set service_name or service_display_name if the product is installed under another name"
        )
    if not snapshot.install_dir_exists:
        raise XuError(f"The install dir {snapshot.install_dir!r} does not exist on the host; set install_dir")
    if snapshot.settings_error:
        raise XuError(snapshot.settings_error)


def require_complete(snapshot: Snapshot) -> None:
    """XuError when part of the read failed: a change must not be decided on a partial picture.

    (A failed cert_list, for one, would make every certificate look absent.)
    """
    if snapshot.read_errors:
        raise XuError(
            f"Part of the host's state could not be read ({'; '.join(snapshot.read_errors)}), so nothing was changed;"
            " fix the cause (xtractuniversal.tls.xu_tls_info reports it too) and run again"
        )


def serving_mismatch(port: int, tls: bool, thumbprint: str | None, probe: Probe) -> str | None:
    """What differs between the settings and what ``probe`` saw: TLS on or off, and the certificate presented.

    None when the port serves what the settings say. This compares only what the settings control;
    whether the port answers at all, or answers HTTP well, is the health check's business (``Expectation.judge``).
    A probe made without TLS cannot tell, and is not judged.
    """
    if not probe.tls:
        return None
    served = probe.certificate.thumbprint if probe.certificate else None
    if tls and served != thumbprint:
        return f"port {port} serves {served or 'no TLS certificate'}, expected {thumbprint}"
    if not tls and served is not None:
        return f"port {port} serves TLS with {served}, expected no TLS"
    return None


def settings_mismatches(state: TlsState, probes: dict[str, Probe]) -> list[str]:
    """Where the ports serve something else than ``state`` says (a restart pending), one text a port.

    Each server whose TLS setting is known is compared on its TLS port: TLS on with the configured
    certificate, or TLS off. Ports that were not probed are not judged.
    """
    servers = []
    if state.web_protocol is not None:
        servers.append(("the web server", "web_https", state.web_uses_tls, state.web_certificate))
    if state.config_server_authentication is not None and state.config_server_port is not None:
        servers.append(("the configuration server", "config_server", state.config_server_uses_tls, state.config_server_certificate))
    mismatches = []
    for role, name, tls, thumbprint in servers:
        probe = probes.get(name)
        problem = serving_mismatch(probe.port, tls, thumbprint, probe) if probe is not None else None
        if problem:
            mismatches.append(f"{role}: {problem}")
    return mismatches
