# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""xu_tls_restore: put a settings file back from a backup, restart, verify. Private to this collection.

The restore goes through ``_apply.apply_changes`` like every other change: one call restores
the file (``file_restore``, byte for byte), restarts the service and probes its ports; the
controller judges the probes. When they are wrong the restore is undone: the content the
file had before (read in the snapshot) is written back, guarded by the hash of the restored
backup, the service restarted and checked again, and the module fails with ``rolled_back``.
"""

from __future__ import annotations

import re
from typing import Any

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.gate._gate import DEFAULT_GATE_GROUP
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._action_base import ModuleRun
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._agent import Operation
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import RemoteError, XuError
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._eventlog import SETTINGS_RESTORED, EventNote
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._snapshot import Snapshot, read_snapshot, require_complete, require_installed
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._apply import (
    ChangeFailed,
    FileChange,
    RestartPlan,
    apply_changes,
    backup_stamp,
    expectations_for,
    expectations_if_known,
    prune_operations,
    restart_wanted,
)
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._profiles import TLS_SETTINGS_FILE, ProductProfile, resolve_profile
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._settings import SettingsError, SettingsFile, TlsState, read_tls_state

_ABSOLUTE = re.compile(r"^(?:[A-Za-z]:\\|\\\\)")


def _state_restored(snapshot: Snapshot, profile: ProductProfile, target: str, current: SettingsFile, backup_file: SettingsFile) -> TlsState:
    """What the service should serve once the restored file is in force."""
    files = dict(snapshot.files)
    if target == TLS_SETTINGS_FILE or current.full_path.lower() == files[TLS_SETTINGS_FILE].full_path.lower():
        files[TLS_SETTINGS_FILE] = SettingsFile(TLS_SETTINGS_FILE, current.full_path, True, backup_file.content, backup_file.sha256)
    try:
        return read_tls_state(files, profile)
    except SettingsError as e:
        raise XuError(f"The backup is not a settings file this collection can read: {e}") from e


def run_tls_restore(run: ModuleRun) -> dict[str, Any]:
    params = run.params
    backup = params["backup_file"]
    if not _ABSOLUTE.match(backup):
        raise XuError(f"backup_file {backup!r} must be an absolute Windows path, e.g. the backup_file another module returned")
    target = params["path"] or TLS_SETTINGS_FILE
    run_id = run.run_id  # checked before the host is read
    profile = resolve_profile(params)
    journal = run.journal
    snapshot = read_snapshot(
        run.agent, profile, DEFAULT_GATE_GROUP, extra_files=[backup, target], journal_name=journal.name if journal else None,
    )
    require_installed(snapshot)
    require_complete(snapshot)
    backup_file = snapshot.files[backup]
    current = snapshot.files[target]
    if not backup_file.exists:
        raise XuError(f"The backup {backup} does not exist on the host; nothing was changed")
    if snapshot.service is None or snapshot.tls is None:  # for the type checker: require_installed has checked them
        raise XuError("The service or its settings are missing")

    restored_state = _state_restored(snapshot, profile, target, current, backup_file)
    # Refused before anything is changed when the restored settings hold a value that cannot be checked.
    expected = expectations_for(restored_state, profile.settings_map)

    identical = current.exists and current.sha256 == backup_file.sha256
    restart = restart_wanted(params["restart"], not identical)
    result: dict[str, Any] = {
        "changed": not identical or restart,
        "path": current.full_path,
        "backup_file": backup,
        "current_backup_file": None,
        "restored": not identical,
        "restarted": False,
        "restart_required": not identical and not restart,
        "rolled_back": False,
    }
    if run.diff:
        result["diff"] = {"before_header": current.full_path, "after_header": current.full_path,
                          "before": current.content or "", "after": backup_file.content or ""}
    # A run's journal rides in the call: written (its lease) before the restore, and refused when another run holds it.
    writes: list[Operation] = []
    if journal is not None:
        journal.check_owner(snapshot.journal, run_id, run.agent.host_now())
        writes = journal.write_operations(snapshot.journal, run_id, run.agent.host_now())
    if run.check_mode or not result["changed"]:
        return result

    change = FileChange(
        current.full_path, current.content if current.exists else None, backup_file.content or "", current.sha256,
        restore_from=backup, after_sha256=backup_file.sha256, bom=current.bom,
    )
    try:
        outcome = apply_changes(
            run.agent,
            changes=[] if identical else [change],
            pre_ops=writes,
            stamp=backup_stamp(run.agent.host_now()),
            backup=True,  # the file it replaces is kept: an edit made after the backup is never lost
            # Probed by the name the host reported: a server bound to its DNS name answers nothing else.
            restart=RestartPlan(str(snapshot.service["name"]), params["wait_timeout"], expected, snapshot.fqdn) if restart else None,
            # Undoing the restore puts back what was in force before: checked against the settings read.
            previous=expectations_if_known(snapshot.tls, profile.settings_map),
            # The backup restored from is never among the oldest removed.
            prune=[] if identical else prune_operations(current.backups, protected=[backup]),
            event=EventNote(
                module="xu_tls_restore",
                run_id=run_id,
                event_id=SETTINGS_RESTORED,
                summary=f"{current.full_path} restored from {backup}" + ("; the service was restarted" if restart else ""),
                details=(
                    ("web_certificate", restored_state.web_certificate),
                    ("config_server_certificate", restored_state.config_server_certificate),
                    ("previous_web_certificate", snapshot.tls.web_certificate),
                ),
            ),
        )
    except ChangeFailed as e:
        rolled_back = bool(e.fields.get("rolled_back"))
        written = "restored_files" in e.fields or "rollback_error" in e.fields
        e.msg = f"Restoring {current.full_path} from {backup} failed: {e.msg}"
        e.fields.update({**result, "changed": written and not rolled_back, "restarted": restart and written, "rolled_back": rolled_back})
        raise
    except RemoteError as e:
        e.msg += "; whether the file was restored is not known: check the host with xtractuniversal.tls.xu_tls_info"
        e.fields.update(rolled_back=False)
        raise
    for warning in outcome.warnings:
        run.warn(warning)
    result["current_backup_file"] = outcome.backups.get(current.full_path)
    if outcome.restarted:
        result["restarted"] = True
        result["served"] = {name: (p.certificate.thumbprint if p.certificate else None) for name, p in outcome.served.items()}
    return result
