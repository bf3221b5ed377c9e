# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""xu_tls_verify: what a client sees, checked from the controller against a CA bundle. Private to this collection."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from typing import Any

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._certificate import iso, parse_der
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._thumbprint import ThumbprintError, clean_thumbprint
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._action_base import ModuleRun
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import XuError

MAX_ANSWER = 4096


@dataclass(frozen=True)
class PortCheck:
    name: str
    port: int
    http_path: str | None


def _presented(address: str, port: int, fqdn: str, timeout: float) -> bytes | None:
    """The leaf certificate the port presents, whoever signed it (None: no TLS handshake)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((address, port), timeout=timeout) as raw, context.wrap_socket(raw, server_hostname=fqdn) as tls:
        return tls.getpeercert(binary_form=True)


def _status_line(answer: bytes) -> int | None:
    parts = answer.split(b"\r\n", 1)[0].split()
    return int(parts[1]) if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit() else None


def _trusted(address: str, check: PortCheck, fqdn: str, ca_path: str, timeout: float) -> int | None:
    """A verified handshake (chain to ca_path, name fqdn), then the HTTP request; the HTTP status or None."""
    context = ssl.create_default_context(cafile=ca_path)
    with socket.create_connection((address, check.port), timeout=timeout) as raw, context.wrap_socket(raw, server_hostname=fqdn) as tls:
        if check.http_path is None:
            return None
        tls.sendall(f"GET {check.http_path} HTTP/1.1\r\nHost: {fqdn}:{check.port}\r\nConnection: close\r\n\r\n".encode("ascii"))
        answer = b""
        while len(answer) < MAX_ANSWER and b"\r\n" not in answer:
            chunk = tls.recv(MAX_ANSWER)
            if not chunk:
                break
            answer += chunk
        return _status_line(answer)


def check_port(address: str, check: PortCheck, *, fqdn: str, ca_path: str, timeout: float, expected: str | None) -> tuple[dict[str, Any], list[str]]:
    """What one port presents and every problem with it."""
    result: dict[str, Any] = {"name": check.name, "port": check.port, "thumbprint": None, "not_after": None,
                              "trusted": False, "error": None, "http_status": None}
    where = f"{address}:{check.port} ({check.name})"
    try:
        der = _presented(address, check.port, fqdn, timeout)
    except (OSError, ssl.SSLError) as e:
        result["error"] = str(e)
        return result, [f"{where} does not complete a TLS handshake: {e}"]
    problems = []
    if der:
        facts = parse_der(der)
        result.update(thumbprint=facts.thumbprint, not_after=iso(facts.not_after))
        if expected is not None and facts.thumbprint != expected:
            problems.append(f"{where} presents {facts.thumbprint}, not {expected}")
    try:
        result["http_status"] = _trusted(address, check, fqdn, ca_path, timeout)
        result["trusted"] = True
    except ssl.SSLCertVerificationError as e:
        result["error"] = e.verify_message or str(e)
        problems.append(f"{where} presents a certificate clients reject for {fqdn}: {result['error']}")
    except (OSError, ssl.SSLError) as e:
        result["error"] = str(e)
        problems.append(f"{where}: {e}")
    if result["trusted"] and check.http_path is not None and result["http_status"] != 200:
        problems.append(f"GET {check.http_path} on {where} answered {result['http_status']}, not 200")
    return result, problems


def run_tls_verify(run: ModuleRun, *, ca_path: str, address: str, fqdn: str) -> dict[str, Any]:
    params = run.params
    expected = None
    if params.get("expected_thumbprint"):
        try:
            expected = clean_thumbprint(params["expected_thumbprint"], "expected_thumbprint")
        except ThumbprintError as e:
            raise XuError(str(e)) from e
    if params["timeout"] <= 0:
        raise XuError(f"timeout must be a positive number of seconds, not {params['timeout']}")
    checks = [PortCheck("web_https", params["web_https_port"], params["http_path"] or None)]
    if params.get("config_server_port"):
        checks.append(PortCheck("config_server", params["config_server_port"], None))
    ports, problems = [], []
    for check in checks:
        port, found = check_port(address, check, fqdn=fqdn, ca_path=ca_path, timeout=params["timeout"], expected=expected)
        ports.append(port)
        problems += found
    result: dict[str, Any] = {"changed": False, "ports": ports, "problems": problems}
    if problems:
        raise XuError("; ".join(problems), ports=ports, problems=problems)
    return result
