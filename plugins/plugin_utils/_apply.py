# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Changing XU's settings safely: write with backups, restart, verify, roll back. Private to this collection.

One ``apply_changes`` is one remote call: optional preparatory operations (import a
certificate, grant key access), the settings writes (each atomic, each guarded by the
hash of what was read, each with a backup), the restart with its wait, probes of what
the ports now serve, and optional follow-up operations that guard themselves (e.g. a
``cert_remove`` with ``require_served``). The controller then judges the probes; when
they are wrong it rolls back in one more call and raises.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._agent import AgentClient, Operation, OperationResult
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._errors import OperationError, XuError
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._settings import TlsState
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._snapshot import Probe, probe_from_result, probe_operation


@dataclass(frozen=True)
class FileChange:
    """A settings file's content before (None: absent) and after."""

    path: str
    before: str | None
    after: str
    before_sha256: str | None

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
        """None when the port serves what it should, else what is wrong."""
        if not probe.connected:
            return f"port {self.port} does not answer ({probe.error or 'no connection'})"
        if self.tls:
            served = probe.certificate.thumbprint if probe.certificate else None
            if served != self.thumbprint:
                return f"port {self.port} serves {served or 'no TLS certificate'}, expected {self.thumbprint}"
        if self.http_path and probe.http_status not in self.http_statuses:
            expected = " or ".join(str(status) for status in self.http_statuses)
            return f"GET {self.http_path} on port {self.port} answered {probe.http_status}, expected {expected}"
        return None


# Whether XU's restricted modes ask for credentials on /version is not documented: an
# authentication challenge there still shows the web server is up (the handshake showed the certificate).
RESTRICTED_WEB_STATUSES = (200, 401, 403)


def expectations_for(state: TlsState) -> list[Expectation]:
    """What a healthy service configured as ``state`` serves: the web server and the configuration server."""
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


def backup_stamp(now: datetime.datetime | None = None) -> str:
    moment = now or datetime.datetime.now(datetime.timezone.utc)
    return moment.strftime("%Y%m%dT%H%M%SZ")


def backup_path_for(path: str, stamp: str) -> str:
    return f"{path}.{stamp}.bak"


@dataclass
class RestartPlan:
    service_name: str
    timeout_s: int
    expectations: list[Expectation]


@dataclass
class ApplyOutcome:
    """What one apply call did."""

    backups: dict[str, str | None] = field(default_factory=dict)
    restarted: bool = False
    restart: dict[str, Any] | None = None
    served: dict[str, Probe] = field(default_factory=dict)
    pre_results: list[OperationResult] = field(default_factory=list)
    post_results: list[OperationResult] = field(default_factory=list)


class ChangeFailed(XuError):
    """The change did not take; the host was put back as it was (``rolled_back``)."""


def _probe_ops(expectations: list[Expectation]) -> list[Operation]:
    return [probe_operation(e.port, e.tls, e.http_path) for e in expectations]


def apply_changes(
    agent: AgentClient,
    *,
    changes: list[FileChange],
    stamp: str,
    backup: bool,
    restart: RestartPlan | None,
    pre_ops: list[Operation] | None = None,
    post_ops: list[Operation] | None = None,
    previous: list[Expectation] | None = None,
) -> ApplyOutcome:
    """Apply in one remote call; on failure roll back (one more call) and raise ChangeFailed.

    ``previous`` is what the service served before, checked again after a rollback.
    """
    pre_ops = pre_ops or []
    post_ops = post_ops or []
    operations = list(pre_ops)
    backups: dict[str, str | None] = {}
    for change in changes:
        backups[change.path] = backup_path_for(change.path, stamp) if backup and change.before is not None else None
        operations.append(Operation("file_write", {
            "path": change.path,
            "content": change.after,
            "backup_path": backups[change.path],
            "expected_sha256": change.before_sha256 if change.before is not None else "absent",
        }))
    if restart is not None:
        operations.append(Operation("service_restart", {
            "name": restart.service_name,
            "wait_ports": [e.port for e in restart.expectations],
            "timeout_s": restart.timeout_s,
        }))
        operations += _probe_ops(restart.expectations)
    operations += post_ops

    results = agent.call(operations, stop_on_error=True)
    outcome = ApplyOutcome(backups=backups, pre_results=results[:len(pre_ops)])
    for result in outcome.pre_results:
        result.value()  # a failed preparation: nothing was written yet
    write_results = results[len(pre_ops):len(pre_ops) + len(changes)]
    written = []
    for change, result in zip(changes, write_results, strict=True):
        if result.ok:
            written.append(_as_written(change, result.result or {}))
            # The host says whether it kept a backup: a file missing at write time has none.
            backups[change.path] = (result.result or {}).get("backup_path")
    failed_write = next((r for r in write_results if not r.ok), None)
    if failed_write is not None:
        error = _error_text(failed_write)
        _roll_back(agent, written=written, backups=backups, restart=None, previous=previous, reason=f"writing the settings failed: {error}")

    if restart is not None:
        index = len(pre_ops) + len(changes)
        restart_result = results[index]
        outcome.restarted = True
        outcome.restart = restart_result.result
        probe_results = results[index + 1:index + 1 + len(restart.expectations)]
        outcome.served = {e.name: probe_from_result(r, e.port, e.tls) for e, r in zip(restart.expectations, probe_results, strict=True)}
        problem = _restart_problem(restart_result, restart.expectations, outcome.served)
        if problem:
            _roll_back(agent, written=written, backups=backups, restart=restart, previous=previous, reason=problem)
    outcome.post_results = results[len(results) - len(post_ops):] if post_ops else []
    return outcome


def _as_written(change: FileChange, result: dict[str, Any]) -> FileChange:
    """The change as the host carried it out: without a previous file, a rollback removes the file."""
    if result.get("previous_sha256") is None and change.before is not None:
        return FileChange(change.path, None, change.after, None)
    return change


def _error_text(result: OperationResult) -> str:
    error = result.error or {}
    return f"{error.get('type', result.status)}: {error.get('message', '')}".strip(": ")


def _restart_problem(result: OperationResult, expectations: list[Expectation], served: dict[str, Probe]) -> str | None:
    if not result.ok:
        return f"restarting the service failed: {_error_text(result)}"
    restart = result.result or {}
    if not restart.get("started"):
        return f"the service did not come back ({restart.get('start_error') or restart.get('state')})"
    problems = [p for e in expectations if (p := e.judge(served[e.name]))]
    return "; ".join(problems) or None


def _roll_back(
    agent: AgentClient,
    *,
    written: list[FileChange],
    backups: dict[str, str | None],
    restart: RestartPlan | None,
    previous: list[Expectation] | None,
    reason: str,
) -> None:
    """Put every written file back, restart if the service was restarted, check, and raise."""
    operations = []
    for change in written:
        backup = backups.get(change.path)
        if backup is not None:
            operations.append(Operation("file_restore", {"backup_path": backup, "path": change.path}))
        elif change.before is None:
            operations.append(Operation("file_remove", {"path": change.path, "backup_path": None}))
        else:
            # No backup was asked for: the content read before is written back.
            operations.append(Operation("file_write", {
                "path": change.path, "content": change.before, "backup_path": None, "expected_sha256": None,
            }))
    checks = previous or []
    if restart is not None:
        operations.append(Operation("service_restart", {
            "name": restart.service_name, "wait_ports": [e.port for e in checks], "timeout_s": restart.timeout_s,
        }))
        operations += _probe_ops(checks)
    if not operations:
        raise ChangeFailed(f"{reason}; nothing had been changed", rolled_back=False)
    try:
        results = agent.call(operations, stop_on_error=False)
    except XuError as e:
        raise ChangeFailed(f"{reason}; the rollback failed too: {e.msg}", rolled_back=False, rollback_error=e.msg) from e
    failures = [f"{r.op}: {_error_text(r)}" for r in results if not r.ok]
    restored = [c.path for c in written]
    if restart is not None and not failures:
        restart_result = results[len(written)]
        served = {e.name: probe_from_result(r, e.port, e.tls) for e, r in zip(checks, results[len(written) + 1:], strict=True)}
        problem = _restart_problem(restart_result, checks, served)
        if problem:
            failures.append(f"after the rollback {problem}")
    if failures:
        raise ChangeFailed(
            f"{reason}; the rollback restored {len(restored)} file(s) but: {'; '.join(failures)}",
            rolled_back=False, restored_files=restored, rollback_problems=failures,
        )
    restarted = ""
    if restart is not None:
        restarted = " and restarted the service" + (", which serves its previous certificates again" if checks else "")
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


def require_ok(result: OperationResult) -> dict[str, Any]:
    """The result of an operation that must have worked."""
    if not result.ok:
        raise OperationError(result.op, str((result.error or {}).get("type", result.status)), str((result.error or {}).get("message", "")))
    return result.result or {}
