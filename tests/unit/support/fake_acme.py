"""A small ACME directory over HTTPS for unit tests: the shapes of RFC 8555 and RFC 9773's examples, nothing more.

It does not check signatures; it records what it was sent (the JWS payloads, decoded) and answers as scripted:
``renewal_info`` maps a certificate ID to (status, body, headers); ``order_answers`` is a list of (status, body,
headers) consumed one per newOrder request before the normal answer.
"""

from __future__ import annotations

import base64
import datetime
import http.server
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

Answer = tuple[int, dict[str, Any], dict[str, str]]


@dataclass
class Script:
    renewal_info: dict[str, Answer] = field(default_factory=dict)
    order_answers: list[Answer] = field(default_factory=list)
    with_ari: bool = True
    received: list[tuple[str, Any]] = field(default_factory=list)


def _b64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


class _Handler(http.server.BaseHTTPRequestHandler):
    script: Script
    base: str

    def log_message(self, format: str, *args: Any) -> None:
        del format, args

    def _send(self, status: int, body: dict[str, Any] | None, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Replay-Nonce", "nonce-" + str(len(self.script.received)))
        content = json.dumps(body).encode() if body is not None else b""
        self.send_header("Content-Type", "application/problem+json" if status >= 400 else "application/json")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def do_HEAD(self) -> None:
        self._send(200, None)

    def do_GET(self) -> None:
        if self.path == "/dir":
            directory = {"newNonce": f"{self.base}/nonce", "newAccount": f"{self.base}/account", "newOrder": f"{self.base}/order", "meta": {}}
            if self.script.with_ari:
                directory["renewalInfo"] = f"{self.base}/renewal-info"
            self._send(200, directory)
            return
        if self.path.startswith("/renewal-info/"):
            cert_id = self.path.removeprefix("/renewal-info/")
            self.script.received.append(("renewalInfo", cert_id))
            status, body, headers = self.script.renewal_info.get(cert_id, (404, {"type": "urn:ietf:params:acme:error:malformed"}, {}))
            self._send(status, body, headers)
            return
        self._send(404, {"type": "urn:ietf:params:acme:error:malformed"})

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        payload: dict[str, Any] = json.loads(_b64(request["payload"])) if request["payload"] else {}
        self.script.received.append((self.path, payload))
        if self.path == "/account":
            self._send(200, {"status": "valid", "contact": []}, {"Location": f"{self.base}/account/1"})
        elif self.path == "/order":
            if self.script.order_answers:
                self._send(*self.script.order_answers.pop(0))
                return
            order = {"status": "pending", "identifiers": payload["identifiers"], "authorizations": [], "finalize": f"{self.base}/finalize/1"}
            if "replaces" in payload:
                order["replaces"] = payload["replaces"]
            self._send(201, order, {"Location": f"{self.base}/order/1"})
        else:
            self._send(404, {"type": "urn:ietf:params:acme:error:malformed"})


def _tls(folder: Path) -> tuple[Path, ssl.SSLContext]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake acme")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(1)
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(hours=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "fake-acme.pem", folder / "fake-acme.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return cert_path, context


@contextmanager
def fake_acme(folder: Path, script: Script) -> Iterator[tuple[str, Path]]:
    """The directory URL and the CA bundle that trusts the server."""
    ca_path, context = _tls(folder)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    base = f"https://127.0.0.1:{server.server_address[1]}"
    server.RequestHandlerClass = type("Handler", (_Handler,), {"script": script, "base": base})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{base}/dir", ca_path
    finally:
        server.shutdown()
        server.server_close()
