"""Helpers of the ACME integration tests: an xulab fleet, pebble and BIND beside it, and the renew playbook in acme mode."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from acmelab import ZONE, AcmeLab, GateDns, new_account_key
from cryptography import x509
from labtools import BIN, REPO, Lab, PlaybookRun

PLAYBOOK = REPO / "playbooks" / "renew.yml"
# The renew role's variables besides the CA's and the DNS server's (as `make demo-acme` gives them).
# The strategy is left to its default, minimal_outage for acme.
ROLE_VARS: dict[str, Any] = {"xu_renew_mode": "acme"}
# The renew role's two tasks: each host's assessment, then its renewal.
ASSESS_TASK = "Assess | Read the server and decide what a renewal does on it"
RENEW_TASK = "Renew | Renew the certificate if it is due, step by step, rolling back a failed step"


def lab_hosts(lab: Lab) -> dict[str, str]:
    return {host["fqdn"].removesuffix("." + ZONE): host["address"] for host in lab.info["hosts"]}


@dataclass
class AcmeRun:
    lab: Lab
    services: AcmeLab
    folder: pathlib.Path
    account_key: str = field(repr=False)
    gate: GateDns | None = None

    @property
    def root(self) -> pathlib.Path:
        path = self.folder / "pebble-root.pem"
        if not path.exists():
            path.write_bytes(self.services.root_pem())
        return path

    def variables(self, **overrides: Any) -> dict[str, Any]:
        return self.services.role_vars(self.account_key, gate=self.gate) | ROLE_VARS | {"xu_renew_ca_path": str(self.root)} | overrides

    def spawn(self, tmp_path: pathlib.Path, **overrides: Any) -> subprocess.Popen[bytes]:
        """The renew playbook in the background, in a process group of its own (to be killed as a whole)."""
        extra = tmp_path / "acme-vars-spawned.json"
        extra.touch(mode=0o600)
        extra.write_text(json.dumps(self.variables(**overrides)))
        command = [str(BIN / "ansible-playbook"), "-i", str(self.lab.inventory), str(PLAYBOOK), "-e", f"@{extra}"]
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
        log = (tmp_path / "spawned.log").open("wb")
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True)

    def wait_published(self, name: str, timeout: float = 120) -> None:
        """Wait until the issuance holds in its propagation check (the gate was asked) with ``name`` published."""
        assert self.gate is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.gate.asked.is_set() and self.services.txt(name):
                return
            time.sleep(0.1)
        raise AssertionError(f"{name} was never published: {self.services.log_tail()}")

    def run(
        self, tmp_path: pathlib.Path, *, check: bool = False, verbosity: int = 0, env: dict[str, str] | None = None, **overrides: Any
    ) -> PlaybookRun:
        """The renew playbook, with every variable in a 0600 file (as a vault would give them), never on the command line."""
        extra = tmp_path / f"acme-vars-{len(list(tmp_path.glob('acme-vars-*')))}.json"
        extra.touch(mode=0o600)
        extra.write_text(json.dumps(self.variables(**overrides)))
        try:
            return self.lab.playbook(
                str(PLAYBOOK), tmp_path=tmp_path, check=check, verbosity=verbosity, env=env, extra_args=("-f", "10", "-e", f"@{extra}"),
            )
        finally:
            extra.unlink()


def start(lab: Lab, folder: pathlib.Path, *, gate: bool = False, **options: Any) -> AcmeRun:
    services = AcmeLab.start(folder / "services", lab_hosts(lab), **options)
    return AcmeRun(lab, services, folder, new_account_key(), GateDns(services.dns_port) if gate else None)


def acme_report(run: PlaybookRun, host: str) -> dict[str, Any]:
    """What xu_renew said about ACME for a host: the CA's assessment, and from the renewal (when the host was due) the
    order (``acme``, None when nothing was ordered) or what --check proved (``dry_run``)."""
    assessment = task_result(run, host, ASSESS_TASK) or {}
    renewed = task_result(run, host, RENEW_TASK) or {}
    acme = renewed.get("acme") or {}
    return {
        "issued": bool(acme.get("order")), "assessment": (assessment.get("acme") or {}).get("assessment"), "acme": acme.get("order"),
        "dry_run": acme.get("dry_run"), "summary": renewed.get("summary") or assessment.get("summary"), "status": renewed.get("_status"),
    }


def task_result(run: PlaybookRun, host: str, task: str) -> dict[str, Any] | None:
    """The last result on ``host`` of the role's task ``task`` (its name as the role gives it, without the role's)."""
    for entry in reversed(run.results):
        if entry["host"] == host and entry["task"].endswith(task):
            return dict(entry["result"]) | {"_status": entry["status"]}
    return None


def presented(address: str, fqdn: str, root: pathlib.Path, port: int = 8165) -> x509.Certificate:
    """The certificate the host presents, verified as a client verifies it: chain to ``root``, name ``fqdn``."""
    context = ssl.create_default_context(cafile=str(root))
    with socket.create_connection((address, port), timeout=10) as raw, context.wrap_socket(raw, server_hostname=fqdn) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def pebble_orders(services: AcmeLab) -> int:
    """How many order requests pebble took so far (its request log; a request refused for its nonce counts too)."""
    return (services.folder / "pebble.log").read_text().count("POST /order-plz")


@dataclass(frozen=True)
class Snapshot:
    state: dict[str, Any]
    events: int


def snapshot(lab: Lab, host: str) -> Snapshot:
    return Snapshot(lab.state(host), len(lab.events(host)))


# What the assessment sends a host: reads only (the CA decides from the certificate the host serves).
READ_OPS = frozenset({"discover", "cert_list", "cert_check", "fw_get", "task_get", "port_probe", "journal_read", "file_check"})


def assert_untouched(lab: Lab, host: str, before: Snapshot) -> None:
    """Nothing changed on the host: only the assessment's reads reached it (no change of any kind in its event log),
    the same certificates and settings."""
    after = lab.state(host)
    events = lab.events(host)[before.events :]
    changes = [event for event in events if event["type"] != "remote_call"]
    assert changes == [], changes
    for call in events:
        assert set(call["ops"]) <= READ_OPS, call["ops"]
    for key in ("service", "certificates", "intermediate_certificates", "files"):
        assert after[key] == before.state[key], key
