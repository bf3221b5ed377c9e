# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Issuance for one host, as the renewal engine calls it in its own process. Private to this collection.

``assess_host`` asks the CA's renewal information (RFC 9773) for the served certificate; ``issue_for_host`` orders,
answers DNS-01, finalises with a key generated here and returns the PFX in memory; ``dry_run`` checks the account,
the DNS credentials and the names without ordering (``--check``). Every outcome removes the challenge records it
published; the ledger in DNS lets the next run remove what a killed run left (``ledger.py``).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
except ImportError as e:
    CRYPTOGRAPHY_IMPORT_ERROR: ImportError | None = e
else:
    CRYPTOGRAPHY_IMPORT_ERROR = None

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.acme import client as acme
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.acme.ari import RenewalWindow, Verdict, ari_verdict
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.acme.certificate import IssuedPfx, build_pfx, csr_der, generate_key
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.acme.dns import (
    DNSPYTHON_IMPORT_ERROR,
    DnsError,
    DnsProvider,
    load_provider,
    wait_until_served,
)
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.acme.ledger import Ledger, LedgerEntry
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.acme.names import order_names
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.acme.settings import AcmeSettings
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.acme.slots import order_slot, slots_dir
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import XuError

Log = Callable[[str], None]


def _quiet(message: str) -> None:
    del message


def missing_requirements() -> str | None:
    """What the controller lacks for ACME issuance, as a message naming the fix; None when nothing."""
    missing = [
        f"{name} ({error})"
        for name, error in (
            ("cryptography", CRYPTOGRAPHY_IMPORT_ERROR),
            ("dnspython", DNSPYTHON_IMPORT_ERROR),
            ("the collection community.crypto 3.x", acme.COMMUNITY_CRYPTO_IMPORT_ERROR),
        )
        if error is not None
    ]
    if not missing:
        return None
    return "ACME issuance needs on the controller: " + "; ".join(missing) + ". Install the collection's requirements.txt and its dependencies"


def _require() -> None:
    problem = missing_requirements()
    if problem:
        raise XuError(problem)


class Interrupted(BaseException):
    """The process was asked to terminate (SIGTERM, as AWX cancels a job) while records were published."""


@dataclass(frozen=True)
class HostRequest:
    """One host's side of an order: its name, the names given for it, and the certificate it serves now."""

    host: str
    fqdn: str
    given_names: tuple[str, ...] = ()
    served: x509.Certificate | None = None

    @property
    def served_names(self) -> tuple[str, ...]:
        if self.served is None:
            return ()
        try:
            san = self.served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return ()
        return tuple(san.get_values_for_type(x509.DNSName))

    @property
    def names(self) -> tuple[str, ...]:
        return order_names(self.fqdn, self.served_names, self.given_names)[0]

    @property
    def left_out(self) -> tuple[str, ...]:
        """Names of the served certificate that no CA issues for (short names, addresses): the new one lacks them."""
        return order_names(self.fqdn, self.served_names, self.given_names)[1]


@dataclass(frozen=True)
class Assessment:
    """The CA's word on the served certificate: ``verdict`` None leaves the decision to the engine's own rule."""

    names: tuple[str, ...]
    cert_id: str | None
    verdict: Verdict | None
    window: RenewalWindow | None
    note: str = ""
    left_out: tuple[str, ...] = ()

    def to_result(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "left_out": list(self.left_out),
            "cert_id": self.cert_id,
            "ari": self.window.to_result() if self.window else None,
            "due": None if self.verdict is None else self.verdict.due,
            "reason": self.verdict.reason if self.verdict else self.note,
        }


@dataclass
class IssueOutcome:
    """A certificate issued for a host: the PFX (memory only) and what to report, which never holds a secret."""

    pfx: IssuedPfx
    names: tuple[str, ...]
    order_url: str
    replaced: str | None
    timings: dict[str, float]
    records: list[str]
    notes: list[str] = field(default_factory=list)

    def to_result(self) -> dict[str, Any]:
        leaf = self.pfx.certificate
        issuer = self.pfx.chain[0].subject.rfc4514_string() if self.pfx.chain else leaf.issuer.rfc4514_string()
        return {
            "names": list(self.names),
            "order": self.order_url,
            "replaces": self.replaced,
            "serial_number": f"{leaf.serial_number:X}",
            "not_after": leaf.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "issuer": issuer,
            "challenge_records": self.records,
            "seconds": {key: round(value, 3) for key, value in self.timings.items()},
            "notes": list(self.notes),
        }


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _why_no_ari(settings: AcmeSettings, session: acme.AcmeSession, cert_id: str | None) -> str | None:
    if not settings.use_ari:
        return "renewal information not asked (xu_renew_acme_use_ari is false)"
    if not session.has_ari:
        return "the CA offers no renewal information"
    if cert_id is None:
        return "the served certificate has no Authority Key Identifier, so the CA cannot be asked about it"
    return None


def assess_host(settings: AcmeSettings, request: HostRequest, session: acme.AcmeSession, now: datetime.datetime) -> Assessment:
    """Ask the CA whether the served certificate is due (RFC 9773), where the CA and the certificate allow it."""
    names, left_out = request.names, request.left_out
    if request.served is None:
        return Assessment(names, None, Verdict(True, "the host serves no certificate", "served"), None)
    cert_id = acme.cert_id_of(session, _pem(request.served))
    reason = _why_no_ari(settings, session, cert_id)
    if reason is not None or cert_id is None:
        return Assessment(names, cert_id, None, None, reason or "", left_out)
    try:
        data, retry_after = acme.renewal_info(session, cert_id)
        window = RenewalWindow.parse(data, retry_after)
    except acme.AcmeError as e:
        # A certificate of another CA is unknown to this one (404): the engine's own rule decides.
        return Assessment(names, cert_id, None, None, f"no renewal information for the served certificate: {e.msg}", left_out)
    except ValueError as e:
        return Assessment(names, cert_id, None, None, f"the CA's renewal information was ignored: {e}", left_out)
    return Assessment(names, cert_id, ari_verdict(window, cert_id, now), window, left_out=left_out)


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGINT raise Interrupted inside the block, once, so that the records are removed before the process
    ends; later signals are ignored until the block ends.

    ansible-playbook forwards the signal it gets (Ctrl-C, a cancelled AWX job) to each worker, whose own handler ends the
    process at once (ansible-core's WorkerProcess._term, os._exit), and then sends SIGTERM to the workers still alive.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = False

    def interrupt(signum: int, frame: Any) -> None:
        nonlocal raised
        del frame
        if not raised:
            raised = True
            raise Interrupted(f"{signal.Signals(signum).name} while DNS-01 records were published")

    previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@dataclass
class _Clock:
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


def _poll_wait(retry_after: float | None, attempt: int) -> float:
    """How long to wait before the next look: the CA's Retry-After (RFC 8555 7.5.1), else 1 s growing to 5 s."""
    if retry_after is not None:
        return min(max(retry_after, 1.0), 60.0)
    return min(1.0 + attempt, 5.0)


def _account_public_key(settings: AcmeSettings) -> bytes:
    key = serialization.load_pem_private_key(
        settings.account_key.reveal().encode("utf-8"), (settings.account_key_passphrase.reveal() or "").encode("utf-8") or None
    )
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass
class _Published:
    """The challenge records one order published, each with its ledger."""

    provider: DnsProvider
    entries: list[tuple[Ledger, LedgerEntry]] = field(default_factory=list)
    ledgers: dict[str, Ledger] = field(default_factory=dict)

    def ledger(self, zone: str, log: Log) -> Ledger:
        if zone not in self.ledgers:
            self.ledgers[zone] = Ledger(self.provider, zone)
            removed, errors = self.ledgers[zone].sweep()
            for entry in removed:
                log(f"removed {entry.record}, left by an earlier run")
            for error in errors:
                log(f"could not remove a record an earlier run left: {error}")
        return self.ledgers[zone]

    def withdraw_all(self, log: Log) -> None:
        problems: list[str] = []
        for ledger, entry in reversed(self.entries):
            try:
                ledger.withdraw(entry)
            except DnsError as e:
                problems.append(e.msg)
        if problems:
            log("; ".join(problems) + " (the ledger keeps them for the next run to remove)")


def _validate(
    settings: AcmeSettings, session: acme.AcmeSession, provider: DnsProvider, authorizations: list[Any], *, records: list[str], log: Log, clock: _Clock
) -> dict[str, float]:
    """Publish, wait until served, ask the CA to look, wait for its verdict; the records removed in every outcome."""
    timings: dict[str, float] = {}
    published = _Published(provider)
    hold = settings.propagation_timeout + settings.validation_timeout + 120
    started = clock.monotonic()
    # The handler stays while the records are withdrawn: a second signal (ansible-playbook sends SIGTERM after SIGINT)
    # must not cut that short.
    with _terminate_as_interrupt():
        try:
            wanted = [_challenge_record(session, authorization) for authorization in authorizations]
            for _identifier, name, value in wanted:
                ledger = published.ledger(provider.zone_for(name), log)
                published.entries.append((ledger, ledger.publish(name, value, hold, settings.dns.ttl)))
                records.append(name)
                log(f"published the TXT record {name}")
            timings["publish"] = clock.monotonic() - started
            mark = clock.monotonic()
            servers_of: dict[str, Any] = {}
            for ledger, entry in published.entries:
                servers = servers_of.setdefault(ledger.zone, provider.authoritative_servers(ledger.zone))
                remaining = max(0.1, settings.propagation_timeout - (clock.monotonic() - mark))
                wait_until_served(
                    servers, entry.record, entry.value, timeout=remaining, query_timeout=settings.dns.timeout, clock=clock.monotonic, sleep=clock.sleep
                )
            timings["propagation"] = clock.monotonic() - mark
            mark = clock.monotonic()
            for authorization in authorizations:
                acme.answer_challenge(session, authorization)
            _wait_for_authorizations(settings, session, authorizations, clock)
            timings["validation"] = clock.monotonic() - mark
        finally:
            published.withdraw_all(log)
    return timings


def _challenge_record(session: acme.AcmeSession, authorization: Any) -> tuple[str, str, str]:
    record = acme.dns01_record(session, authorization)
    if record is None:
        raise acme.AcmeError(f"The CA offers no dns-01 challenge for {authorization.identifier}", step="publish")
    identifier, name, value = record
    return identifier, name.lower(), value


def _wait_for_authorizations(settings: AcmeSettings, session: acme.AcmeSession, authorizations: list[Any], clock: _Clock) -> None:
    deadline = clock.monotonic() + settings.validation_timeout
    pending = list(authorizations)
    attempt = 0
    while pending:
        retry_after: float | None = None
        for authorization in list(pending):
            data, retry = session.step("validate", functools.partial(session.get, authorization.url))
            current = acme.authorization_from(session, authorization.url, data)
            retry_after = retry if retry is not None else retry_after
            if current.status == "valid":
                pending.remove(authorization)
            elif current.status not in ("pending", "processing"):
                details = current.get_error_details() or f"status {current.status}"
                raise acme.AcmeError(f"The CA did not validate {current.combined_identifier}: {details}", step="validate", problem="invalid")
        if not pending:
            return
        wait = _poll_wait(retry_after, attempt)
        if clock.monotonic() + wait > deadline:
            for authorization in pending:
                acme.deactivate(session, authorization)
            names = ", ".join(str(a.identifier) for a in pending)
            raise acme.AcmeError(
                f"The CA left the authorization of {names} pending for {settings.validation_timeout:g} s"
                " (xu_renew_acme_validation_timeout); it was deactivated",
                step="validate",
                problem="pending",
            )
        clock.sleep(wait)
        attempt += 1


def _wait_for_certificate(settings: AcmeSettings, session: acme.AcmeSession, order: Any, clock: _Clock) -> Any:
    deadline = clock.monotonic() + settings.validation_timeout
    attempt = 0
    while True:
        data, retry_after = session.step("finalize", functools.partial(session.get, order.url))
        order = acme.order_from(session, order.url, data)
        if order.status == "valid" and order.certificate_uri:
            return order
        if order.status == "invalid":
            raise acme.AcmeError(f"The CA refused to issue the certificate: {data.get('error') or 'order invalid'}", step="finalize", problem="invalid")
        wait = _poll_wait(retry_after, attempt)
        if clock.monotonic() + wait > deadline:
            raise acme.AcmeError(f"The CA did not issue the certificate within {settings.validation_timeout:g} s", step="finalize", problem="pending")
        clock.sleep(wait)
        attempt += 1


def issue_for_host(
    settings: AcmeSettings,
    request: HostRequest,
    *,
    session: acme.AcmeSession | None = None,
    replaces: str | None = None,
    log: Log | None = None,
    clock: _Clock | None = None,
) -> IssueOutcome:
    """Order a certificate for the host's names and return it as a PFX in memory.

    ``replaces`` is the served certificate's ARI identifier (``Assessment.cert_id``), sent only when the CA offers
    renewal information. Raises ``AcmeError`` / ``DnsError`` (both ``XuError``) naming the step; the host has not
    been touched then, and no challenge record is left behind.
    """
    _require()
    log = log or _quiet
    clock = clock or _Clock()
    names = request.names
    timings: dict[str, float] = {}
    started = clock.monotonic()
    session = session or acme.open_session(settings, check_mode=False)
    timings["account"] = clock.monotonic() - started
    provider = load_provider(settings.dns)
    records: list[str] = []
    slots = slots_dir(settings.directory, _account_public_key(settings))
    with order_slot(slots, settings.max_parallel_orders, settings.validation_timeout + settings.propagation_timeout) as slot:
        timings["queued"] = clock.monotonic() - started - timings["account"]
        ordered = clock.monotonic()
        order = acme.create_order(session, names, replaces if session.has_ari else None)
        log(f"order {order.url} for {', '.join(names)} (slot {slot})")
        authorizations = []
        for url in order.authorization_uris:
            data, _retry = session.step("authorization", functools.partial(session.get, url))
            authorizations.append(acme.authorization_from(session, url, data))
        invalid = [a for a in authorizations if a.status not in ("pending", "valid")]
        if invalid:
            raise acme.AcmeError(f"The CA's authorization of {invalid[0].identifier} is {invalid[0].status}", step="authorization", problem="invalid")
        pending = [a for a in authorizations if a.status == "pending"]
        if pending:
            timings |= _validate(settings, session, provider, pending, records=records, log=log, clock=clock)
        key = generate_key(settings.key_type)
        mark = clock.monotonic()
        acme.finalize(session, order, csr_der(key, names))
        order = _wait_for_certificate(settings, session, order, clock)
        chain = acme.download_chain(session, order.certificate_uri)
        timings["finalize"] = clock.monotonic() - mark
        timings["order_to_certificate"] = clock.monotonic() - ordered
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    pfx = build_pfx(key, chain, f"{names[0]} ACME {stamp}")
    del key
    return IssueOutcome(pfx, names, str(order.url), replaces if session.has_ari else None, timings, records, list(session.notes))


def dry_run(settings: AcmeSettings, request: HostRequest, *, log: Log | None = None) -> dict[str, Any]:
    """What ``--check`` verifies without ordering: the account, the names, and the DNS credentials (a throw-away
    value added to and removed from the first name's challenge record, through the ledger)."""
    _require()
    log = log or _quiet
    names = request.names
    session = acme.open_session(settings, check_mode=True, allow_creation=False)
    provider = load_provider(settings.dns)
    zones = {name: provider.zone_for(f"_acme-challenge.{name.removeprefix('*.')}") for name in names}
    first = f"_acme-challenge.{names[0].removeprefix('*.')}"
    ledger = Ledger(provider, zones[names[0]])
    stale = [entry.record for entry in ledger.entries() if entry.until < time.time()]
    entry = ledger.publish(first, f"xu-acme-check-{secrets.token_hex(8)}", 120, settings.dns.ttl)
    try:
        servers = provider.authoritative_servers(ledger.zone)
    finally:
        ledger.withdraw(entry)
    log(f"the DNS credentials may change {first}; removed the test value again")
    return {
        "account": session.account_uri or None,
        "account_exists": bool(session.account_uri),
        "terms_of_service": session.terms_of_service or None,
        "renewal_information": session.has_ari,
        "names": list(names),
        "left_out": list(request.left_out),
        "zones": sorted(set(zones.values())),
        "authoritative_servers": [str(server) for server in servers],
        "stale_records": stale,
        "notes": list(session.notes),
    }


__all__ = ["Assessment", "HostRequest", "Interrupted", "IssueOutcome", "XuError", "assess_host", "dry_run", "issue_for_host", "missing_requirements"]
