# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Putting a settings file back from a backup, byte for byte, and checking what is served. Private to this collection."""

from __future__ import annotations

import re
from typing import Any

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._action_base import ModuleRun
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._agent import Operation
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._apply import expectations_for
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._errors import XuError
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._gate import DEFAULT_GATE_GROUP
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._profiles import TLS_SETTINGS_FILE, resolve_profile
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._settings import SettingsError, SettingsFile, read_tls_state
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._snapshot import probe_from_result, probe_operation, read_snapshot, require_installed

_ABSOLUTE = re.compile(r"^(?:[A-Za-z]:\\|\\\\)")


def run_tls_restore(run: ModuleRun) -> dict[str, Any]:
    params = run.params
    backup = params["backup_file"]
    if not _ABSOLUTE.match(backup):
        raise XuError(f"backup_file {backup!r} must be an absolute Windows path, e.g. the backup_file another module returned")
    target = params["path"] or TLS_SETTINGS_FILE
    profile = resolve_profile(params)
    snapshot = read_snapshot(run.agent, profile, DEFAULT_GATE_GROUP, extra_files=[backup, target])
    require_installed(snapshot)
    backup_file = snapshot.files[backup]
    current = snapshot.files[target]
    if not backup_file.exists:
        raise XuError(f"The backup {backup} does not exist on the host; nothing was changed")
    if snapshot.service is None:  # for the type checker: require_installed has checked it
        raise XuError("The service is missing")

    # What the service should serve once the restored file is in force.
    files = dict(snapshot.files)
    if target == TLS_SETTINGS_FILE or current.full_path.lower() == files[TLS_SETTINGS_FILE].full_path.lower():
        files[TLS_SETTINGS_FILE] = SettingsFile(TLS_SETTINGS_FILE, current.full_path, True, backup_file.content, backup_file.sha256)
    try:
        restored_state = read_tls_state(files, profile)
    except SettingsError as e:
        raise XuError(f"The backup is not a settings file this collection can read: {e}") from e

    identical = current.exists and current.sha256 == backup_file.sha256
    restart_mode = params["restart"]
    restart = restart_mode == "always" or (restart_mode == "if_changed" and not identical)
    result: dict[str, Any] = {
        "changed": not identical or restart,
        "path": current.full_path,
        "backup_file": backup,
        "restored": not identical,
        "restarted": False,
        "restart_required": not identical and not restart,
    }
    if run.diff:
        result["diff"] = {"before_header": current.full_path, "after_header": current.full_path,
                          "before": current.content or "", "after": backup_file.content or ""}
    if run.check_mode or not result["changed"]:
        return result

    expectations = expectations_for(restored_state)
    operations = []
    if not identical:
        operations.append(Operation("file_restore", {"backup_path": backup, "path": current.full_path}))
    if restart:
        operations.append(Operation("service_restart", {
            "name": snapshot.service["name"], "wait_ports": [e.port for e in expectations], "timeout_s": params["wait_timeout"],
        }))
        operations += [probe_operation(e.port, e.tls, e.http_path) for e in expectations]
    results = run.agent.call(operations, stop_on_error=True)
    if not identical:
        results.pop(0).value()  # a failed restore changed nothing else
    if restart:
        restart_result = results[0].value()
        result["restarted"] = True
        served = {e.name: probe_from_result(r, e.port, e.tls) for e, r in zip(expectations, results[1:], strict=True)}
        result["served"] = {name: (p.certificate.thumbprint if p.certificate else None) for name, p in served.items()}
        problems = [] if restart_result.get("started") else [f"the service did not come back ({restart_result.get('start_error')})"]
        problems += [p for e in expectations if (p := e.judge(served[e.name]))] if not problems else []
        if problems:
            raise XuError(f"Restored {current.full_path} from {backup}, but after the restart: {'; '.join(problems)}", **result)
    return result
