"""An ACME CA and the lab zone's DNS servers on loopback, for the tests and the demo: Debian's pebble and BIND 9.

``AcmeLab.start(folder, ...)`` starts two BIND servers (the primary of the lab's zone, which takes TSIG-signed RFC 2136
updates, and a secondary fed by NOTIFY and zone transfer), and pebble resolving through the secondary, each on a free
port. Everything they need (configuration, the TSIG key, pebble's TLS key, the zone) is written into ``folder`` with
mode 0600 and removed by ``stop()``: no secret is left behind. ``python -m acmelab up|down --dir D`` does the same for
``make demo-acme`` and writes the role's ``xu_renew_acme_*`` variables into ``D/acme-vars.yml`` (0600).

Faults are pebble's own switches (``PEBBLE_WFE_NONCEREJECT``, ``PEBBLE_VA_SLEEPTIME``), a DNS server for pebble
that does not know the zone (``pebble-challtestsrv``), and a server of the zone that the test holds shut
(``GateDns``), which stops an issuance between publishing its records and asking the CA to validate.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.zone
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ZONE = "xulab.test"
TSIG_NAME = "xu-acme."
EAB_KID = "xu-lab-eab"
# BIND listens only on addresses of an interface, so both servers share 127.0.0.1, on ports of their own; the
# zone's NS records cannot say a port, so the role is given the two servers (xu_renew_acme_dns_nameservers).
PRIMARY_ADDRESS = "127.0.0.1"
SECONDARY_ADDRESS = "127.0.0.1"
PEBBLE_ADDRESS = "127.0.0.1"
STATE_FILE = "acmelab.json"


def _private(path: Path, text: str) -> None:
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)


def free_port(*addresses: str) -> int:
    """A port free for TCP and UDP on every address (DNS needs both)."""
    for _attempt in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((addresses[0], 0))
            port = int(probe.getsockname()[1])
        try:
            for address in addresses:
                for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    with socket.socket(socket.AF_INET, kind) as s:
                        s.bind((address, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")


def _tls_material(folder: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a certificate for pebble's HTTPS (127.0.0.1 and localhost)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acmelab HTTPS CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2)).add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])).issuer_name(ca_name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(PEBBLE_ADDRESS))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = folder / "https-ca.pem", folder / "https-cert.pem", folder / "https-key.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _private(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode())
    return ca_path, cert_path, key_path


def _zone_text(hosts: dict[str, str]) -> str:
    lines = [
        "$TTL 60",
        f"@ IN SOA ns1.{ZONE}. hostmaster.{ZONE}. 1 60 30 3600 30",
        f"@ IN NS ns1.{ZONE}.",
        f"@ IN NS ns2.{ZONE}.",
        f"ns1 IN A {PRIMARY_ADDRESS}",
        f"ns2 IN A {SECONDARY_ADDRESS}",
    ]
    lines += [f"{name} IN A {address}" for name, address in sorted(hosts.items())]
    return "\n".join(lines) + "\n"


def _named_conf(folder: Path, address: str, port: int, body: str) -> str:
    return f"""options {{
  directory "{folder}";
  pid-file none;
  session-keyfile none;
  listen-on port {port} {{ {address}; }};
  listen-on-v6 {{ none; }};
  recursion no;
  dnssec-validation no;
  notify explicit;
  notify-delay 0;
  allow-transfer {{ 127.0.0.0/8; }};
  max-cache-size 2m;
}};
controls {{ }};
{body}
"""


@dataclass
class AcmeLab:
    """The running services, and what a client needs to use them."""

    folder: Path
    dns_port: int
    secondary_port: int
    acme_port: int
    management_port: int
    tsig_secret: str = field(repr=False)
    eab_hmac_key: str = field(repr=False)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def directory_url(self) -> str:
        return f"https://{PEBBLE_ADDRESS}:{self.acme_port}/dir"

    @property
    def https_ca(self) -> Path:
        return self.folder / "https-ca.pem"

    @property
    def primary(self) -> str:
        return f"{PRIMARY_ADDRESS}:{self.dns_port}"

    @property
    def secondary(self) -> str:
        return f"{SECONDARY_ADDRESS}:{self.secondary_port}"

    # -- lifecycle -------------------------------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        folder: Path,
        hosts: dict[str, str],
        *,
        pebble_env: dict[str, str] | None = None,
        pebble_resolves_through: str = "secondary",
        eab_required: bool = True,
    ) -> AcmeLab:
        """Start BIND (primary and secondary) and pebble; ``pebble_resolves_through`` is ``secondary`` or ``nowhere``
        (a pebble-challtestsrv that knows nothing of the zone, so every DNS-01 validation fails)."""
        for program in ("named", "pebble"):
            if shutil.which(program) is None and not Path(f"/usr/sbin/{program}").exists():
                raise RuntimeError(f"{program} is not installed: run `make acme-services` (Debian packages bind9 and pebble)")
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        lab = cls(
            folder=folder,
            dns_port=free_port(PRIMARY_ADDRESS),
            secondary_port=free_port(SECONDARY_ADDRESS),
            acme_port=free_port(PEBBLE_ADDRESS),
            management_port=free_port(PEBBLE_ADDRESS),
            tsig_secret=base64.b64encode(secrets.token_bytes(32)).decode(),
            eab_hmac_key=base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("="),
        )
        try:
            lab._start_dns(hosts)
            lab._start_pebble(pebble_env or {}, pebble_resolves_through, eab_required)
        except BaseException:
            lab.stop()
            raise
        lab._write_state()
        return lab

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = (self.folder / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, start_new_session=True
        )

    def _start_dns(self, hosts: dict[str, str]) -> None:
        primary_dir, secondary_dir = self.folder / "primary", self.folder / "secondary"
        for directory in (primary_dir, secondary_dir):
            directory.mkdir(mode=0o700, exist_ok=True)
        (primary_dir / f"{ZONE}.zone").write_text(_zone_text(hosts))
        key = f'key "{TSIG_NAME}" {{ algorithm hmac-sha256; secret "{self.tsig_secret}"; }};'
        primary_zone = (
            f'zone "{ZONE}" {{ type primary; file "{ZONE}.zone"; also-notify {{ {SECONDARY_ADDRESS} port {self.secondary_port}; }};'
            f" notify explicit; update-policy {{ grant {TSIG_NAME} zonesub TXT; }}; }};"
        )
        secondary_zone = f'zone "{ZONE}" {{ type secondary; primaries {{ {PRIMARY_ADDRESS} port {self.dns_port}; }}; file "{ZONE}.zone"; }};'
        _private(primary_dir / "named.conf", _named_conf(primary_dir, PRIMARY_ADDRESS, self.dns_port, key + "\n" + primary_zone))
        _private(secondary_dir / "named.conf", _named_conf(secondary_dir, SECONDARY_ADDRESS, self.secondary_port, secondary_zone))
        named = shutil.which("named") or "/usr/sbin/named"
        self._spawn("primary", [named, "-g", "-n", "1", "-c", str(primary_dir / "named.conf")])
        self._wait_for_soa(PRIMARY_ADDRESS, self.dns_port)
        self._spawn("secondary", [named, "-g", "-n", "1", "-c", str(secondary_dir / "named.conf")])
        self._wait_for_soa(SECONDARY_ADDRESS, self.secondary_port)

    def _wait_for_soa(self, address: str, port: int) -> None:

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                answer = dns.query.udp(dns.message.make_query(ZONE, "SOA"), address, port=port, timeout=1)
                if answer.rcode() == dns.rcode.NOERROR and answer.answer:
                    return
            except Exception:  # noqa: S110 - not up yet
                pass
            time.sleep(0.1)
        raise RuntimeError(f"BIND on {address}:{port} did not serve {ZONE}: {self.log_tail()}")

    def _start_pebble(self, env: dict[str, str], resolves_through: str, eab_required: bool) -> None:
        _ca, cert, key = _tls_material(self.folder)
        config = {
            "pebble": {
                "listenAddress": f"{PEBBLE_ADDRESS}:{self.acme_port}",
                "managementListenAddress": f"{PEBBLE_ADDRESS}:{self.management_port}",
                "certificate": str(cert),
                "privateKey": str(key),
                "httpPort": free_port(PEBBLE_ADDRESS),
                "tlsPort": free_port(PEBBLE_ADDRESS),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": eab_required,
                "externalAccountMACKeys": {EAB_KID: self.eab_hmac_key},
            }
        }
        _private(self.folder / "pebble.json", json.dumps(config))
        dns_server = self.secondary
        if resolves_through == "nowhere":
            port = free_port("127.0.0.1")
            self._spawn(
                "challtestsrv",
                ["pebble-challtestsrv", "-dns01", f"127.0.0.1:{port}", "-http01", "", "-https01", "", "-tlsalpn01", "",
                 "-management", f"127.0.0.1:{free_port('127.0.0.1')}"],
            )
            dns_server = f"127.0.0.1:{port}"
        # No random sleep before a validation unless a test asks for one (PEBBLE_VA_SLEEPTIME).
        speed = {} if "PEBBLE_VA_SLEEPTIME" in env else {"PEBBLE_VA_NOSLEEP": "1"}
        self._spawn("pebble", ["pebble", "-config", str(self.folder / "pebble.json"), "-dnsserver", dns_server], {**speed, **env})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.fetch(self.directory_url)
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"pebble did not answer: {self.log_tail()}")

    def _write_state(self) -> None:
        state = {"pids": {name: p.pid for name, p in self.processes.items()}, "folder": str(self.folder)}
        (self.folder / STATE_FILE).write_text(json.dumps(state))

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()
        shutil.rmtree(self.folder, ignore_errors=True)

    def log_tail(self) -> str:
        return "\n".join(f"{p.name}: {p.read_text(errors='replace')[-1500:]}" for p in sorted(self.folder.glob("*.log")))

    # -- clients ---------------------------------------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.https_ca))

    def fetch(self, url: str) -> bytes:
        with urllib.request.urlopen(url, context=self.ssl_context(), timeout=5) as response:  # noqa: S310 - https to loopback
            body: bytes = response.read()
            return body

    def root_pem(self) -> bytes:
        """The root pebble issues under (its management interface, as its README describes)."""
        return self.fetch(f"https://{PEBBLE_ADDRESS}:{self.management_port}/roots/0")

    def txt(self, name: str, server: str = "primary") -> list[str]:
        """The TXT values at ``name`` as a server of the zone answers now."""

        address, port = (PRIMARY_ADDRESS, self.dns_port) if server == "primary" else (SECONDARY_ADDRESS, self.secondary_port)
        answer = dns.query.tcp(dns.message.make_query(name, "TXT"), address, port=port, timeout=5)
        return [b"".join(r.strings).decode() for rrset in answer.answer if rrset.rdtype == dns.rdatatype.TXT for r in rrset]

    def zone_txt_names(self) -> list[str]:
        """Every owner name in the zone with a TXT record (a zone transfer from the primary)."""

        zone = dns.zone.from_xfr(dns.query.xfr(PRIMARY_ADDRESS, ZONE, port=self.dns_port, timeout=5))
        return sorted(str(name) for name, node in zone.nodes.items() if node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.TXT) is not None)

    def role_vars(self, account_key_pem: str, *, gate: GateDns | None = None) -> dict[str, Any]:
        """The role's ``xu_renew_acme_*`` variables for this CA and zone."""
        return {
            "xu_renew_acme_directory": self.directory_url,
            "xu_renew_acme_ca_path": str(self.https_ca),
            "xu_renew_acme_account_key": account_key_pem,
            "xu_renew_acme_terms_agreed": True,
            "xu_renew_acme_contact": ["admin@xulab.test"],
            "xu_renew_acme_eab_kid": EAB_KID,
            "xu_renew_acme_eab_hmac_key": self.eab_hmac_key,
            "xu_renew_acme_dns_server": self.primary,
            "xu_renew_acme_dns_nameservers": [self.primary, self.secondary, *([gate.endpoint] if gate else [])],
            "xu_renew_acme_tsig_name": TSIG_NAME,
            "xu_renew_acme_tsig_secret": self.tsig_secret,
        }


def new_account_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


class GateDns:
    """A DNS server the test holds shut: until ``release()`` it answers every query authoritatively with no record;
    after, it relays queries to the zone's primary. Named among the zone's servers (``xu_renew_acme_dns_nameservers``),
    it keeps an issuance waiting in its propagation check, after the records are published and before the CA is
    asked to validate, for as long as the test needs to act there (kill the controller, stop the CA)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._released = threading.Event()
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port = int(self._socket.getsockname()[1])
        self.asked = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def release(self) -> None:
        self._released.set()

    def close(self) -> None:
        self._socket.close()

    def _serve(self) -> None:
        while True:
            try:
                wire, peer = self._socket.recvfrom(65535)
            except OSError:
                return
            try:
                question = dns.message.from_wire(wire)
                if self._released.is_set():
                    answer = dns.query.udp(question, PRIMARY_ADDRESS, port=self.upstream_port, timeout=5)
                else:
                    self.asked.set()
                    answer = dns.message.make_response(question)
                    answer.flags |= dns.flags.AA
                self._socket.sendto(answer.to_wire(), peer)
            except Exception:  # noqa: S112 - a malformed query gets no answer, as from a real server
                continue


@contextlib.contextmanager
def running(folder: Path, hosts: dict[str, str], **options: Any) -> Iterator[AcmeLab]:
    lab = AcmeLab.start(folder, hosts, **options)
    try:
        yield lab
    finally:
        lab.stop()


def _lab_hosts(lab_dir: Path) -> dict[str, str]:
    info = json.loads((lab_dir / "lab.json").read_text())
    return {host["fqdn"].removesuffix("." + ZONE): host["address"] for host in info["hosts"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="acmelab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start pebble and BIND for an xulab fleet, write DIR/acme-vars.yml")
    up.add_argument("--dir", type=Path, required=True)
    up.add_argument("--lab", type=Path, required=True, help="the running xulab's folder (its hosts get A records)")
    down = sub.add_parser("down", help="stop them and remove DIR")
    down.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args(argv)
    args.dir = args.dir.resolve()
    if args.command == "up":
        lab = AcmeLab.start(args.dir, _lab_hosts(args.lab))
        for process in lab.processes.values():
            process.returncode = 0  # detach: `down` stops them by their process group
        variables = lab.role_vars(new_account_key())
        variables["xu_renew_ca_path"] = str(args.dir / "pebble-root.pem")
        (args.dir / "pebble-root.pem").write_bytes(lab.root_pem())
        _private(args.dir / "acme-vars.yml", json.dumps(variables, indent=2) + "\n")
        print(f"pebble {lab.directory_url}, BIND {lab.primary} and {lab.secondary}; variables in {args.dir / 'acme-vars.yml'}")
        return 0
    state_file = args.dir / STATE_FILE
    if state_file.exists():
        for pid in json.loads(state_file.read_text())["pids"].values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
        time.sleep(0.5)
    shutil.rmtree(args.dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
