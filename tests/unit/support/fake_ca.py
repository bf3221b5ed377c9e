"""An ACME CA in memory for the renewal engine's unit tests.

``fake_ca`` replaces, for the length of a ``with``, the four calls the engine's ACME source makes into the ACME
package (``client.open_session``, ``issue.assess_host``, ``issue.issue_for_host``, ``issue.dry_run``): the CA's
verdict, the certificate it issues (a PFX for the host's names, under a one-time password) and a failing order are
the test's to choose. The protocol itself is tested against pebble (tests/integration/test_acme_*.py).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.acme import client, issue
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.acme.ari import Verdict
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.acme.certificate import IssuedPfx
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.acme.secrets import Secret
from support.certs import mint
from support.fake_swap import make_pfx

ACCOUNT_KEY = ec.generate_private_key(ec.SECP256R1()).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption(),
).decode()
TSIG_SECRET = "c2VjcmV0LXRzaWcta2V5LW9mLXRoZS11bml0LXRlc3Rz"  # noqa: S105 - a test key
# The serial numbers of every certificate a fake CA issued in this process: the CA's own are not due.
ISSUED: set[int] = set()
# The role's xu_renew_acme_* variables, as the role hands them to xu_renew.
ACME_VARIABLES = {
    "xu_renew_acme_directory": "https://ca.example.test/directory",
    "xu_renew_acme_account_key": ACCOUNT_KEY,
    "xu_renew_acme_dns_server": "192.0.2.53",
    "xu_renew_acme_tsig_name": "xu-acme.",
    "xu_renew_acme_tsig_secret": TSIG_SECRET,
}


@dataclass
class FakeCa:
    """What the CA says and does. ``due`` None: it offers no renewal information; ``refuse`` fails the order."""

    due: bool | None = True
    refuse: str | None = None
    sessions: list[bool] = field(default_factory=list)  # each session's check_mode
    asked_about: list[bytes | None] = field(default_factory=list)
    orders: list[tuple[tuple[str, ...], str | None]] = field(default_factory=list)
    passwords: list[str] = field(default_factory=list)
    dry_runs: int = 0

    def open_session(self, settings: Any, *, check_mode: bool, budget: Any = None, allow_creation: bool = True) -> Any:
        del settings, budget, allow_creation
        self.sessions.append(check_mode)
        return SimpleNamespace(account_uri="https://ca.example.test/acct/1", has_ari=self.due is not None, notes=[])

    def assess_host(self, settings: Any, request: issue.HostRequest, session: Any, now: Any) -> issue.Assessment:
        del settings, session, now
        self.asked_about.append(None if request.served is None else request.served.public_bytes(serialization.Encoding.DER))
        if self.due is None:
            return issue.Assessment(request.names, "aki.serial", None, None, "the CA offers no renewal information", request.left_out)
        # A certificate it issued is not due yet; ``due`` is its word on any other.
        own = request.served is not None and request.served.serial_number in ISSUED
        due = bool(self.due) and not own
        reason = "the CA's renewal window is open" if due else "the CA suggests renewing from 2027-01-20T00:00:00Z"
        return issue.Assessment(request.names, "aki.serial", Verdict(due, reason, "ari"), None, left_out=request.left_out)

    def issue_for_host(self, settings: Any, request: issue.HostRequest, *, session: Any = None, replaces: Any = None, log: Any = None,
                       clock: Any = None) -> issue.IssueOutcome:
        del settings, session, clock
        if self.refuse:
            raise client.AcmeError(self.refuse, step="order", problem="rejectedIdentifier")
        names = request.names
        self.orders.append((names, replaces))
        password = secrets.token_urlsafe(24)
        self.passwords.append(password)
        cert, key = mint(names[0], sans=names, days_left=90, valid_from_days_ago=0)
        ISSUED.add(cert.serial_number)
        if log is not None:
            log(f"order for {', '.join(names)}")
        return issue.IssueOutcome(
            IssuedPfx(make_pfx(cert, key, password), Secret(password), cert, ()), names, "https://ca.example.test/order/1", replaces,
            {"account": 0.1, "order_to_certificate": 1.5}, [f"_acme-challenge.{names[0]}"],
        )

    def dry_run(self, settings: Any, request: issue.HostRequest, *, log: Any = None) -> dict[str, Any]:
        del settings, log
        self.dry_runs += 1
        return {"account": "https://ca.example.test/acct/1", "names": list(request.names)}


@contextlib.contextmanager
def fake_ca(ca: FakeCa) -> Iterator[FakeCa]:
    """The engine talks to ``ca`` inside the ``with``."""
    replaced = [(client, "open_session", ca.open_session), (issue, "assess_host", ca.assess_host),
                (issue, "issue_for_host", ca.issue_for_host), (issue, "dry_run", ca.dry_run)]
    saved = [(module, name, getattr(module, name)) for module, name, _fake in replaced]
    for module, name, fake in replaced:
        setattr(module, name, fake)
    try:
        yield ca
    finally:
        for module, name, original in saved:
            setattr(module, name, original)
