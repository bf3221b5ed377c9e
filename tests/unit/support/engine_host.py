"""A host for the renewal engine's unit tests: XU, its store, firewall and tasks in memory, and faults at any primitive.

``EngineHost`` keeps everything a renewal touches (settings files that a restart reads, certificates with keys, AD CS
renewal with the same key, PFX import, the gate's rule groups and tasks, the journals with their hash guards). A
``Fault`` makes one primitive of one remote call fail as Windows reports an error, or lets the call run and then
drops the connection before its answer arrives, as a network or controller failure does.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from ansible.errors import AnsibleConnectionFailure

from support.certs import mint
from support.fake_changes import TLS_FILE
from support.fake_firewall import FirewallFakeHost
from support.fake_swap import FQDN, SwapFakeHost, make_pfx, swap_host

FAULT = {"type": "IOException", "message": "injected fault"}


@dataclass
class Fault:
    """One fault in the act phase's call ``call`` (0 is its first): the primitive at ``op`` fails (``error``); or the call
    runs and its answer is lost (``drop``); or it runs and the host is gone from then on (``lost``)."""

    call: int
    op: int | None = None
    kind: str = "error"


@dataclass
class EngineHost(FirewallFakeHost, SwapFakeHost):
    """SwapFakeHost with the firewall and tasks of FirewallFakeHost; a fault armed for the calls counted from ``arm``."""

    fault: Fault | None = None
    counted: int | None = None
    recorded: list[list[str]] = field(default_factory=list)

    def arm(self, fault: Fault | None) -> None:
        """Count the calls from now on; ``fault`` strikes the one it names."""
        self.fault, self.counted, self.recorded = fault, 0, []

    def transport(self, command: str, stdin: bytes) -> tuple[int, str, str]:
        index = self.counted
        if index is not None and self.fault is not None and self.fault.kind == "lost" and index > self.fault.call:
            raise AnsibleConnectionFailure("the host cannot be reached (injected)")
        fault = self.fault if index is not None and self.fault is not None and self.fault.call == index else None
        if index is not None:
            self.counted = index + 1
        if fault is not None and fault.kind == "error":
            self.fail_at = fault.op
        answer = super().transport(command, stdin)
        if index is not None:
            self.recorded.append([op["op"] for op in self.calls[-1]])
        if fault is not None and fault.kind != "error":
            raise AnsibleConnectionFailure("the connection to the host was lost (injected)")
        return answer


def engine_host(*, old_days_left: float = 10) -> tuple[EngineHost, str]:
    """A healthy XU due for renewal (one certificate for both servers) and the old certificate's thumbprint."""
    template, old, _cert = swap_host(old_days_left=old_days_left)
    host = EngineHost(files=dict(template.files), certificates=list(template.certificates), keys=dict(template.keys))
    assert host.start_service(), host.start_error
    return host, old


def pfx_for_the_host(password: str = "pfx-password") -> str:  # noqa: S107 - a test PFX's password
    """A new certificate for the host as a base64 PFX."""
    cert, key = mint(FQDN, sans=(FQDN, "xu01"), days_left=365)
    return base64.b64encode(make_pfx(cert, key, password)).decode()


def tls_file(host: EngineHost) -> str:
    return host.files[TLS_FILE]
