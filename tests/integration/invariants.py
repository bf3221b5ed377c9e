"""The renew role's safety invariants, checked on a lab host's event log and end state.

Independent of the role: only the lab's view (events.jsonl and `xulab state`) is used.

1. No XU port becomes reachable from outside (exposure ``open``) while it serves plain HTTP.
2. At the end the gate's rule groups hold no rules (or, after a killed controller, the gate
   was reopened by the host's auto-open task by its deadline).
3. At the end the service runs and serves TLS with a certificate in the store whose key it can
   read: the new one (valid now), or the previous one with tls.json byte for byte as before.
4. A certificate leaves the store only while the service serves another one on its TLS ports.
5. Every settings write keeps a backup, and every restore puts back exactly the bytes backed up.
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass, field
from typing import Any

from labtools import Lab

GATE_GROUP = "xtractuniversal.tls gate"
HOLD_GROUP = "xtractuniversal.tls gate http"
GATE_GROUPS = (GATE_GROUP, HOLD_GROUP)
XU_ACCOUNT = "NT SERVICE\\XtractUniversal Service"
TLS_JSON = "c:\\program files\\xtractuniversal\\config\\servers\\tls.json"


@dataclass
class Baseline:
    """A host before a test's runs: when, its files' hashes, its listeners and its exposure."""

    ts: float
    files: dict[str, str]
    tls_json: bytes
    listeners: list[dict[str, Any]]
    exposure: dict[str, str]
    thumbprint: str | None
    events: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def baseline(lab: Lab, host: str) -> Baseline:
    state = lab.state(host)
    files = {path.lower(): digest for path, digest in state["files"].items()}
    tls_path = lab.dir / "hosts" / host / "fs" / "C" / "Program Files" / "XtractUniversal" / "config" / "servers" / "tls.json"
    listeners = state["service"]["listeners"]
    https = [entry["thumbprint"] for entry in listeners if entry["scheme"] == "https"]
    return Baseline(
        ts=max([e["ts"] for e in lab.events(host)] or [0.0]),
        files=files,
        tls_json=tls_path.read_bytes() if tls_path.exists() else b"",
        listeners=listeners,
        exposure=dict(state["firewall"]["exposure"]),
        thumbprint=https[0] if https else None,
        events=len(lab.events(host)),
    )


def _http_exposed(listeners: list[dict[str, Any]], exposure: dict[str, str]) -> list[int]:
    return [entry["port"] for entry in listeners if entry["scheme"] == "http" and exposure.get(str(entry["port"])) == "open"]


def check_exposure(events: list[dict[str, Any]], base: Baseline) -> list[str]:
    """Invariant 1: no event turns a plain HTTP listener reachable from outside."""
    listeners, exposure = list(base.listeners), dict(base.exposure)
    problems = []
    for event in events:
        before = set(_http_exposed(listeners, exposure))
        if event["type"] == "service":
            listeners = event["listeners"]
        elif event["type"] == "firewall":
            exposure = dict(event["exposure"])
        else:
            continue
        newly = set(_http_exposed(listeners, exposure)) - before
        if newly:
            problems.append(f"invariant 1: at {event['ts']:.3f} ({event['type']}) plain HTTP on {sorted(newly)} became reachable from outside")
    return problems


def check_backups(events: list[dict[str, Any]], base: Baseline) -> list[str]:
    """Invariant 5: each file's first write keeps a backup, no backup is overwritten, restores put back exactly what was backed up.

    Later writes of a file may go without a backup: the settings from before the run are kept by
    the first one, which is what a rollback restores.
    """
    current = dict(base.files)
    backed_up: dict[str, str | None] = {}
    written: set[str] = set()
    problems = []
    for event in events:
        path = event.get("file", "").lower()
        if event["type"] == "settings_write":
            backup = (event.get("backup") or "").lower()
            if not backup and path not in written and current.get(path) is not None:
                problems.append(f"invariant 5: {event['file']} was first written without a backup")
            if backup in backed_up:
                problems.append(f"invariant 5: the backup {event['backup']} was overwritten, losing the bytes it held")
            if backup:
                backed_up[backup] = current.get(path)
            written.add(path)
            current[path] = event["sha256"]
        elif event["type"] == "settings_restore":
            backup = (event.get("backup") or "").lower()
            if backup not in backed_up:
                problems.append(f"invariant 5: {event['file']} was restored from {event.get('backup')}, a backup no write of this test made")
            elif backed_up[backup] != event["sha256"]:
                problems.append(f"invariant 5: restoring {event['file']} from {event['backup']} gave {event['sha256']}, not the bytes backed up")
            current[path] = event["sha256"]
        elif event["type"] == "settings_remove":
            if event.get("backup"):
                backed_up[event["backup"].lower()] = current.get(path)
            current.pop(path, None)
    return problems


def check_removals(events: list[dict[str, Any]], base: Baseline) -> list[str]:
    """Invariant 4: a certificate is removed only while the running service serves another one."""
    listeners = list(base.listeners)
    running = bool(listeners)
    problems = []
    for event in events:
        if event["type"] == "service":
            listeners, running = event["listeners"], event["state"] == "Running"
        elif event["type"] == "cert_remove" and event.get("store", "My") == "My":
            # Only LocalMachine\My holds what the service can serve; certreq's request placeholder leaves REQUEST.
            served = {entry["thumbprint"] for entry in listeners if entry["scheme"] in ("https", "tls")}
            if not running or not served or event["thumbprint"] in served:
                problems.append(f"invariant 4: {event['thumbprint']} was removed while the service served {sorted(t for t in served if t) or 'nothing'}")
    return problems


def check_gate(lab: Lab, host: str, events: list[dict[str, Any]], *, killed_deadline: float | None = None) -> list[str]:
    """Invariant 2: the gate's groups are empty at the end; after a killed run, the task opened the gate at its deadline
    (``killed_deadline``, on the host's clock), neither before nor after."""
    problems = []
    rules = [rule for rule in lab.state(host)["firewall"]["rules"] if rule.get("group") in GATE_GROUPS]
    groups = {rule["group"] for rule in rules}
    if killed_deadline is None:
        if groups:
            problems.append(f"invariant 2: rules of {sorted(groups)} are left at the end")
        return problems
    if GATE_GROUP in groups:
        problems.append("invariant 2: the gate is still closed after its deadline")
    opened = [e for e in events if e["type"] == "firewall" and e["group"] == GATE_GROUP and not e["rules"] and "task" in str(e.get("by"))]
    if not opened:
        problems.append("invariant 2: the auto-open task never opened the gate")
    elif opened[0]["ts"] != killed_deadline:
        # The host stamps its event log with its own clock, and its task runs when that clock reaches the deadline.
        early = opened[0]["ts"] < killed_deadline
        problems.append(
            f"invariant 2: the gate opened {abs(opened[0]['ts'] - killed_deadline):.3f} s {'before' if early else 'after'} its deadline"
        )
    return problems


def _key_readable(certificate: dict[str, Any]) -> bool:
    return any(
        entry["identity"].lower() == XU_ACCOUNT.lower() and entry["type"] == "Allow" and entry["rights"] in ("Read", "FullControl")
        for entry in certificate.get("key_acl") or []
    )


def check_served(lab: Lab, host: str, base: Baseline, *, new: str | None = None) -> list[str]:
    """Invariant 3: TLS with a usable certificate, the new one or the previous one byte for byte."""
    state = lab.state(host)
    service = state["service"]
    problems = []
    if service["state"] != "Running":
        return [f"invariant 3: the service is {service['state']} ({service.get('last_start_error')})"]
    served = {entry["thumbprint"] for entry in service["listeners"] if entry["scheme"] in ("https", "tls")}
    if any(entry["scheme"] == "http" for entry in service["listeners"]) or len(served) != 1:
        return [f"invariant 3: the service serves {service['listeners']}, not TLS with one certificate"]
    thumbprint = served.pop()
    certificate = next((c for c in state["certificates"] if c["thumbprint"] == thumbprint and not c["archived"]), None)
    if certificate is None or not certificate["has_private_key"] or not _key_readable(certificate):
        problems.append(f"invariant 3: {thumbprint} is not in the store with a key the service can read")
    tls_path = lab.dir / "hosts" / host / "fs" / "C" / "Program Files" / "XtractUniversal" / "config" / "servers" / "tls.json"
    if thumbprint == base.thumbprint:
        if tls_path.read_bytes() != base.tls_json:
            problems.append("invariant 3: the previous certificate is served, but tls.json is not byte for byte as before")
    elif new is not None and thumbprint != new:
        problems.append(f"invariant 3: the service serves {thumbprint}, neither the previous {base.thumbprint} nor the new {new}")
    elif certificate is not None:
        not_after = datetime.datetime.fromisoformat(certificate["not_after"].replace("Z", "+00:00"))
        if not_after <= datetime.datetime.now(datetime.UTC):
            problems.append(f"invariant 3: the new certificate {thumbprint} is not valid")
    return problems


def check_host(lab: Lab, host: str, base: Baseline, *, new: str | None = None, killed_deadline: float | None = None, end: bool = True) -> list[str]:
    """Every invariant on one host since ``base``; ``end`` false skips the end-state checks (2 and 3)."""
    events = lab.events(host)[base.events:]
    problems = check_exposure(events, base) + check_backups(events, base) + check_removals(events, base)
    if end:
        problems += check_gate(lab, host, events, killed_deadline=killed_deadline)
        problems += check_served(lab, host, base, new=new)
    return problems


def served_thumbprint(lab: Lab, host: str) -> str | None:
    listeners = lab.state(host)["service"]["listeners"]
    return next((entry["thumbprint"] for entry in listeners if entry["scheme"] == "https"), None)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
