# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Changing XU's settings safely: write with backups, restart, verify, roll back. Private to this collection.

One ``apply_changes`` is one remote call: optional preparatory operations (import a
certificate, grant key access), the settings changes (each write atomic, guarded by the
hash of what was read, with a backup; or a restore from a backup), the restart with its
wait, and probes of what the ports now serve. The controller then judges the probes
(``restart_verdict``); when they are wrong it rolls back in one more call and raises.

Whatever cannot be undone (removing a certificate) belongs in a call of its own, made
only once the verdict was good: operations in the apply call run before the controller
has judged anything.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._certificate import utc_now
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._agent import Agent, Operation, OperationResult
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import XuError
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._eventlog import EventNote
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._host_state import StaleState
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._snapshot import Probe, probe_from_result, probe_operation, serving_mismatch
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._profiles import (
    CONFIG_SERVER_AUTHENTICATIONS,
    DEFAULT_SETTINGS_MAP,
    WEB_PROTOCOLS,
)
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._settings import TlsState


@dataclass(frozen=True)
class FileChange:
    """A settings file's content before (None: absent) and after.

    With ``restore_from`` the host copies that backup over the file, byte for byte, instead of
    writing ``after`` (``file_restore`` takes no hash, so that copy is not guarded);
    ``after_sha256`` is then what the file hashes to once restored, and guards writing
    ``before`` back in a rollback.
    """

    path: str
    before: str | None
    after: str
    before_sha256: str | None
    restore_from: str | None = None
    after_sha256: str | None = None
    # The file starts with a UTF-8 BOM, which every write (and a rollback's write) keeps.
    bom: bool = False

    def diff(self) -> dict[str, str]:
        return {"before_header": self.path, "after_header": self.path, "before": self.before or "", "after": self.after}


@dataclass(frozen=True)
class Expectation:
    """What one port must serve once the service is back."""

    name: str
    port: int
    tls: bool
    thumbprint: str | None  # the certificate a TLS port must present
    http_path: str | None = None
    http_statuses: tuple[int, ...] = (200,)  # answers to GET http_path that show the server works

    def judge(self, probe: Probe) -> str | None:
        """None when the port answers, serves what the settings say and answers HTTP well; else what is wrong."""
        if not probe.connected:
            return f"port {self.port} does not answer ({probe.error or 'no connection'})"
        mismatch = serving_mismatch(self.port, self.tls, self.thumbprint, probe)
        if mismatch:
            return mismatch
        if self.http_path and probe.http_status not in self.http_statuses:
            expected = " or ".join(str(status) for status in self.http_statuses)
            return f"GET {self.http_path} on port {self.port} answered {probe.http_status}, expected {expected}"
        return None


# Whether XU's restricted modes ask for credentials on /version is not documented: an
# authentication challenge there still shows the web server is up (the handshake showed the certificate).
RESTRICTED_WEB_STATUSES = (200, 401, 403)


def check_known(state: TlsState, settings_map: Mapping[str, str] | None = None) -> None:
    """XuError when a setting holds a value this collection does not know: what XU serves then cannot be told or checked."""
    settings_map = settings_map or DEFAULT_SETTINGS_MAP
    if state.web_protocol is None:
        raise XuError(
            f"tls.json's {settings_map['web_protocol']} is {json.dumps(state.web_protocol_raw)}, not one of"
            f" {', '.join(WEB_PROTOCOLS.values())}, so what the web server serves cannot be checked;"
            " set web_protocol, or check settings_map.web_protocol"
        )
    if state.config_server_authentication is None:
        raise XuError(
            f"tls.json's {settings_map['config_server_authentication']} is {json.dumps(state.config_server_authentication_raw)},"
            f" not one of {', '.join(CONFIG_SERVER_AUTHENTICATIONS.values())}, so what the configuration server serves cannot be"
            " checked; check settings_map.config_server_authentication"
        )


def expectations_for(state: TlsState, settings_map: Mapping[str, str] | None = None) -> list[Expectation]:
    """What a healthy service configured as ``state`` serves: the web server and the configuration server.

    XuError (naming the value and the settings_map entry) when a setting holds a value this collection does not know.
    """
    check_known(state, settings_map)
    expected = []
    if state.web_uses_tls:
        statuses = (200,) if state.web_protocol == "https_unrestricted" else RESTRICTED_WEB_STATUSES
        expected.append(Expectation("web_https", state.web_https_port, True, state.web_certificate, "/version", statuses))
    else:
        expected.append(Expectation("web_http", state.web_http_port, False, None, "/version"))
    if state.config_server_port is not None:
        if state.config_server_uses_tls:
            expected.append(Expectation("config_server", state.config_server_port, True, state.config_server_certificate))
        else:
            expected.append(Expectation("config_server", state.config_server_port, False, None))
    return expected


def expectations_if_known(state: TlsState, settings_map: Mapping[str, str] | None = None) -> list[Expectation] | None:
    """``expectations_for(state)``, or None when a setting is unknown: what was served before a change, checked after a rollback."""
    try:
        return expectations_for(state, settings_map)
    except XuError:
        return None


def restart_wanted(mode: str, changed: bool) -> bool:
    """The modules' ``restart`` option: ``always``, ``if_changed`` (when ``changed``) or ``never``."""
    return mode == "always" or (mode == "if_changed" and changed)


def backup_stamp(now: datetime.datetime | None = None) -> str:
    """The time in a backup's name, to the microsecond: two backed-up writes within one second must not share (and
    overwrite) a backup. The names order a file's backups on the host (the oldest are pruned), so the modules pass the
    host's time (``Agent.host_now``): runs from controllers whose clocks differ keep them in order."""
    return (now or utc_now()).strftime("%Y%m%dT%H%M%S%fZ")


def backup_path_for(path: str, stamp: str) -> str:
    return f"{path}.{stamp}.bak"


# Backups kept per settings file: the newest ones, and any a run's journal names.
KEEP_BACKUPS = 10


def prune_operations(backups: Sequence[str], keep: int = KEEP_BACKUPS, protected: Iterable[str] = ()) -> list[Operation]:
    """Remove a file's oldest backups beyond ``keep`` (one more is about to be made); never one in ``protected``.

    Backup names carry their UTC time in a fixed-width form, so their order is their age. Copies the agent
    keeps during an atomic write (``*.xutls.bak``) are not backups of a run and are left alone, and so is any
    file whose name only starts its extension with ``bak``: Windows matches ``*.bak`` to ``x.bakup`` too.
    """
    kept = {b.lower() for b in protected}
    candidates = sorted((b for b in backups if b.lower().endswith(".bak") and not b.lower().endswith(".xutls.bak")), key=str.lower)
    surplus = candidates[:max(0, len(candidates) - (keep - 1))]
    return [Operation("file_remove", {"path": b, "backup_path": None}) for b in surplus if b.lower() not in kept]


@dataclass
class RestartPlan:
    service_name: str
    timeout_s: int
    expectations: list[Expectation]
    # The name the probes use as TLS server name and Host header: the fqdn option when given (None: localhost).
    server_name: str | None = None


def error_text(result: OperationResult) -> str:
    """A failed (or skipped) operation's error as one line: ``Type: message``."""
    error = result.error or {}
    return f"{error.get('type', result.status)}: {error.get('message', '')}".strip(": ")


def restart_operations(plan: RestartPlan) -> list[Operation]:
    """Restart the service, wait for the expected ports, then probe each of them."""
    restart = Operation("service_restart", {
        "name": plan.service_name, "wait_ports": [e.port for e in plan.expectations], "timeout_s": plan.timeout_s,
    })
    return [restart, *(probe_operation(e.port, e.tls, e.http_path, plan.server_name) for e in plan.expectations)]


@dataclass
class RestartVerdict:
    """The controller's judgement of a restart and its probes."""

    restart: dict[str, Any] | None
    served: dict[str, Probe]
    problem: str | None  # None: the service came back and serves what it should
    # What the restart left behind that is not the service's own: dependent services that did not start again.
    warnings: list[str] = field(default_factory=list)


def restart_verdict(plan: RestartPlan, results: Sequence[OperationResult]) -> RestartVerdict:
    """Judge the answers to ``restart_operations(plan)`` (``results`` starts with the restart)."""
    restart, probes = results[0], results[1:1 + len(plan.expectations)]
    served = {e.name: probe_from_result(r, e.port, e.tls) for e, r in zip(plan.expectations, probes, strict=True)}
    answer = restart.result or {}
    problem: str | None
    if not restart.ok:
        problem = f"restarting the service failed: {error_text(restart)}"
    elif not answer.get("started"):
        problem = f"the service did not come back ({answer.get('start_error') or answer.get('state')})"
    else:
        problem = "; ".join(p for e in plan.expectations if (p := e.judge(served[e.name]))) or None
    return RestartVerdict(restart.result, served, problem, dependent_warnings(answer))


def dependent_warnings(answer: dict[str, Any]) -> list[str]:
    """Stopping the service stopped the services that depend on it; the host started them again. Any that is not running is named."""
    return [
        f"the dependent service {d.get('name')} was running before the restart and is {d.get('state') or 'in an unknown state'} now;"
        f" start it (Start-Service '{d.get('name')}')"
        for d in answer.get("dependents") or []
        if d.get("state") != "Running"
    ]


@dataclass
class ApplyOutcome:
    """What one apply call did."""

    backups: dict[str, str | None] = field(default_factory=dict)
    restarted: bool = False
    restart: dict[str, Any] | None = None
    served: dict[str, Probe] = field(default_factory=dict)
    pre_results: list[OperationResult] = field(default_factory=list)
    post_results: list[OperationResult] = field(default_factory=list)
    # What was wrong after the restart, when the caller asked for no rollback (else ChangeFailed is raised).
    problem: str | None = None
    warnings: list[str] = field(default_factory=list)


class ChangeFailed(XuError):
    """The change did not take; the host was put back as it was (``rolled_back``)."""


def served_requirement(expectations: Sequence[Expectation], server_name: str | None) -> list[dict[str, Any]]:
    """What the host checks itself (``require_served``) before a removal: each TLS port presents its certificate and answers HTTP well."""
    named = {"server_name": server_name} if server_name else {}
    return [
        {
            "port": e.port, "thumbprint": e.thumbprint, **named,
            **({"http_path": e.http_path, "http_statuses": list(e.http_statuses)} if e.http_path else {}),
        }
        for e in expectations
        if e.tls and e.thumbprint
    ]


def served_check(expectations: Sequence[Expectation], server_name: str | None) -> list[Operation]:
    """A guard for what follows in the same call: the host itself sees the ports serve as expected (nothing when no TLS port is)."""
    required = served_requirement(expectations, server_name)
    return [Operation("served_check", {"require_served": required})] if required else []


def certificates_present(thumbprints: Sequence[str | None]) -> list[Operation]:
    """A guard for what follows in the same call: each certificate the settings are about to name is still in the store,
    with its key. Another tool (win-acme renewing) may delete one between the read and the write, and a service whose
    settings name a missing certificate does not start."""
    return [Operation("cert_check", {"thumbprint": thumbprint}) for thumbprint in dict.fromkeys(t for t in thumbprints if t)]


def _guard_refusal(results: Sequence[OperationResult]) -> OperationResult | None:
    return next((r for r in results if r.status == "error" and (r.error or {}).get("type") == "HashMismatch"), None)


def _change_operation(change: FileChange, backup_path: str | None) -> Operation:
    if change.restore_from is not None:
        return Operation("file_restore", {"backup_path": change.restore_from, "path": change.path, "keep_current_path": backup_path})
    return Operation("file_write", {
        "path": change.path,
        "content": change.after,
        "bom": change.bom,
        "backup_path": backup_path,
        "expected_sha256": change.before_sha256 if change.before is not None else "absent",
    })


def apply_changes(
    agent: Agent,
    *,
    changes: list[FileChange],
    stamp: str,
    backup: bool,
    restart: RestartPlan | None,
    pre_ops: list[Operation] | None = None,
    post_ops: list[Operation] | None = None,
    previous: list[Expectation] | None = None,
    roll_back_restart: bool = True,
    event: EventNote | None = None,
    prune: Sequence[Operation] = (),
) -> ApplyOutcome:
    """Apply in one remote call; on failure roll back (one more call) and raise ChangeFailed.

    ``previous`` is what the service served before, checked again after a rollback.
    ``post_ops`` run in the same call after the event log entry, before the controller has judged the restart:
    only operations that guard themselves on the host (``served_check``, ``require_served``, a journal's hash).
    With ``roll_back_restart`` false a bad restart is not rolled back (the settings could not
    start either, e.g. their certificate is gone): the outcome's ``problem`` says what is wrong.
    ``event`` is written to the host's event log last, in the same call (and a rollback's entry
    in the rollback's call); an entry that cannot be written is a warning, never a failure.
    ``prune`` (``prune_operations``) goes last: the oldest backups, once everything else is done.
    No operation at all makes no call.
    """
    pre_ops = pre_ops or []
    post_ops = post_ops or []
    operations = list(pre_ops)
    backups: dict[str, str | None] = {}
    for change in changes:
        # A restore keeps the file it replaces too: a hand edit made after the backup is never lost.
        keep = backup and change.before is not None
        backups[change.path] = backup_path_for(change.path, stamp) if keep else None
        operations.append(_change_operation(change, backups[change.path]))
    if restart is not None:
        operations += restart_operations(restart)
    if not operations and not post_ops:
        return ApplyOutcome()
    # The entry says what the change did, before what only follows a good change (a guard and what it guards):
    # a refused guard must not take the change's entry with it.
    if event is not None:
        operations.append(event.operation())
    operations += post_ops
    operations += prune

    results = agent.call(operations, stop_on_error=True)
    outcome = ApplyOutcome(backups=backups, pre_results=results[:len(pre_ops)])
    write_results = results[len(pre_ops):len(pre_ops) + len(changes)]
    refused = _guard_refusal(results[:len(pre_ops) + len(changes)])
    if refused is not None and not any(r.ok for r in write_results):
        # The host changed since it was read (a journal or a settings file): nothing of the change was written.
        what = "writing the settings" if refused.op == "file_write" else "writing the run's journal"
        # The preparations before the refused write may have run (an import): the caller reports what they did.
        prepared = [r.op for r in results[:len(pre_ops)] if r.ok]
        raise StaleState(f"{what} failed: {error_text(refused)}; nothing had been changed", rolled_back=False, prepared=prepared)
    for result in outcome.pre_results:
        result.value()  # a failed preparation: nothing was written yet
    written = []
    for change, result in zip(changes, write_results, strict=True):
        if result.ok:
            written.append(_as_written(change, result.result or {}))
            # The host says whether it kept a backup: a file missing at write time has none.
            answer = result.result or {}
            backups[change.path] = answer.get("kept_current_path") if change.restore_from is not None else answer.get("backup_path")
    failed_write = next((r for r in write_results if not r.ok), None)
    if failed_write is not None:
        reason = f"writing the settings failed: {error_text(failed_write)}"
        _roll_back(agent, written=written, backups=backups, restart=None, previous=previous, reason=reason, event=event)

    if restart is not None:
        verdict = restart_verdict(restart, results[len(pre_ops) + len(changes):])
        outcome.restarted = True
        outcome.restart = verdict.restart
        outcome.served = verdict.served
        outcome.warnings = verdict.warnings
        if verdict.problem and roll_back_restart:
            _roll_back(agent, written=written, backups=backups, restart=restart, previous=previous, reason=verdict.problem, event=event)
        outcome.problem = verdict.problem
    first_post = len(operations) - len(post_ops) - len(prune)
    outcome.post_results = results[first_post:first_post + len(post_ops)]
    if event is not None:
        outcome.warnings += event_warnings(results[first_post - 1:first_post])
    outcome.warnings += [f"an old backup was not removed: {error_text(r)}" for r in results[first_post + len(post_ops):] if r.status == "error"]
    return outcome


def event_warnings(results: Sequence[OperationResult]) -> list[str]:
    """An event log entry the host refused is worth a warning (one skipped after a failure has a rollback's entry instead)."""
    return [
        f"the host's event log entry was not written ({error_text(result)})"
        for result in results
        if result.op == "event_write" and result.status == "error"
    ]


def _as_written(change: FileChange, result: dict[str, Any]) -> FileChange:
    """The change as the host carried it out: without a previous file, a rollback removes the file."""
    if change.restore_from is None and result.get("previous_sha256") is None and change.before is not None:
        return FileChange(change.path, None, change.after, None, bom=change.bom)
    return change


def _restore_operations(written: list[FileChange], backups: dict[str, str | None]) -> list[Operation]:
    """What puts each written file back: its backup, its removal (it did not exist), or the text read before."""
    operations = []
    for change in written:
        backup = backups.get(change.path)
        # A restore is undone by writing the text read before, guarded by the restored file's hash (a file edited
        # meanwhile is not overwritten); the text was strictly UTF-8 and its BOM is kept, so the bytes are the same.
        if backup is not None and change.restore_from is None:
            operations.append(Operation("file_restore", {"backup_path": backup, "path": change.path}))
        elif change.before is None:
            operations.append(Operation("file_remove", {"path": change.path, "backup_path": None}))
        else:
            # No backup was kept: the content read before is written back.
            operations.append(Operation("file_write", {
                "path": change.path, "content": change.before, "bom": change.bom, "backup_path": None, "expected_sha256": change.after_sha256,
            }))
    return operations


def _roll_back(
    agent: Agent,
    *,
    written: list[FileChange],
    backups: dict[str, str | None],
    restart: RestartPlan | None,
    previous: list[Expectation] | None,
    reason: str,
    event: EventNote | None = None,
) -> None:
    """Put every written file back, restart if the service was restarted, check, and raise."""
    operations = _restore_operations(written, backups)
    checks = RestartPlan(restart.service_name, restart.timeout_s, previous or [], restart.server_name) if restart is not None else None
    if checks is not None:
        operations += restart_operations(checks)
    if not operations:
        raise ChangeFailed(f"{reason}; nothing had been changed", rolled_back=False)
    entry = [event.rolled_back(reason)] if event is not None else []
    try:
        # The entry goes last; whether it was written does not change what the rollback did.
        results = agent.call(operations + entry, stop_on_error=False)[:len(operations)]
    except XuError as e:
        raise ChangeFailed(f"{reason}; the rollback failed too: {e.msg}", rolled_back=False, rollback_error=e.msg) from e
    failures = [f"{r.op}: {error_text(r)}" for r in results if not r.ok]
    restored = [c.path for c in written]
    if checks is not None and not failures:
        problem = restart_verdict(checks, results[len(written):]).problem
        if problem:
            failures.append(f"after the rollback {problem}")
    if failures:
        raise ChangeFailed(
            f"{reason}; the rollback restored {len(restored)} file(s) but: {'; '.join(failures)}",
            rolled_back=False, restored_files=restored, rollback_problems=failures,
        )
    restarted = ""
    if checks is not None:
        restarted = " and restarted the service" + (", which serves its previous certificates again" if checks.expectations else "")
    raise ChangeFailed(f"{reason}; rolled back: restored {', '.join(restored) or 'nothing'}{restarted}", rolled_back=True, restored_files=restored)


def settings_text(document: Any, original: str | None) -> str:
    """Serialise a settings document, keeping the original's indentation and final newline."""
    indent: int | str = 2
    if original:
        for line in original.splitlines()[1:]:
            stripped = line.lstrip(" \t")
            if stripped and len(stripped) < len(line):
                prefix = line[:len(line) - len(stripped)]
                indent = "\t" if prefix.startswith("\t") else len(prefix)
                break
    text = json.dumps(document, indent=indent, ensure_ascii=False)
    newline = "\r\n" if original and "\r\n" in original else "\n"
    text = text.replace("\n", newline)
    if original is None or original.endswith(("\n", "\r\n")):
        text += newline
    return text
