# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A renewal's run journal: what a later run needs to complete or undo this one. Private to this collection.

The journal is started on the controller before the first change and handed to each step's
module, which keeps it on the host in the call it makes anyway (the renewal engine's
JournalKeeper). After each step it records the step reached, the new certificate once known and
every backup made (only the first of each file: it holds the settings from before the run, which
a rollback restores). ``as_fact`` is the dict written to the host.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._info import HTTPS_PROTOCOLS, PLAIN_HTTP_PROTOCOL, as_dict, upper
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._plan import Plan

# The journal's own keys; a journal read from the host carries more (its lease), which are kept as they are.
JOURNAL_KEYS = (
    "run_id", "mode", "strategy", "step", "old_thumbprint", "new_thumbprint", "backup_files", "previous_web_protocol",
    "config_tls", "original_sha256", "tls_path", "remove_old", "gate", "started", "web_protocol",
)
STARTED = "started"


@dataclass(frozen=True)
class RunJournal:
    """One run's journal; ``backup_files`` maps each settings file changed to the backup made before the first change."""

    run_id: Any = None
    mode: Any = None
    strategy: Any = None
    step: Any = None
    old_thumbprint: Any = None
    new_thumbprint: Any = None
    backup_files: Mapping[str, str] = field(default_factory=dict)
    previous_web_protocol: Any = None
    config_tls: Any = None
    original_sha256: Any = None
    tls_path: Any = None
    remove_old: Any = None
    gate: Any = None
    started: Any = None
    # The protocol the run leaves; absent (a journal of an earlier version): previous_web_protocol.
    web_protocol: Any = None
    # What else the dict held (the host's copy carries its lease), handed back unchanged.
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def old(self) -> str | None:
        """The previous certificate, as thumbprints are compared."""
        return upper(self.old_thumbprint)

    @property
    def new(self) -> str | None:
        return upper(self.new_thumbprint)

    @property
    def target_protocol(self) -> Any:
        """The web server protocol the run meant to leave."""
        return self.web_protocol or self.previous_web_protocol

    @property
    def enables_tls(self) -> bool:
        """Whether the run turned TLS on for a host that served plain HTTP (no certificate was replaced)."""
        return self.old is None and self.previous_web_protocol == PLAIN_HTTP_PROTOCOL and self.target_protocol in HTTPS_PROTOCOLS

    @property
    def readable(self) -> bool:
        """False for the marker xu_tls_info leaves for a journal whose content it could not parse."""
        return "unreadable" not in self.extra

    def as_fact(self) -> dict[str, Any]:
        fact = dict(self.extra)
        fact.update({key: getattr(self, key) for key in JOURNAL_KEYS})
        fact["backup_files"] = dict(self.backup_files)
        if self.web_protocol is None:
            # A journal of an earlier version, or one that never named it: kept as it was.
            del fact["web_protocol"]
        return fact


def parse_journal(value: Any) -> RunJournal | None:
    """The journal as xu_tls_info read it from the host (or as a run keeps it); None when there is none (empty or not a dict)."""
    fact = as_dict(value)
    if not fact:
        return None
    backups = {str(path): backup for path, backup in as_dict(fact.get("backup_files")).items() if isinstance(backup, str) and backup}
    known = {key: fact.get(key) for key in JOURNAL_KEYS if key != "backup_files"}
    extra = {key: item for key, item in fact.items() if key not in JOURNAL_KEYS}
    return RunJournal(backup_files=backups, extra=extra, **known)


def start_journal(planned: Plan, run_id: str, started: str) -> RunJournal:
    """The journal written before a renewal changes anything."""
    return RunJournal(
        run_id=run_id,
        mode=planned.mode,
        strategy=planned.strategy,
        step=STARTED,
        old_thumbprint=planned.old_thumbprint,
        new_thumbprint=planned.new_thumbprint,
        backup_files={},
        previous_web_protocol=planned.previous_web_protocol,
        config_tls=planned.config_tls,
        original_sha256=planned.original_sha256,
        tls_path=planned.tls_path,
        remove_old=planned.remove_old,
        gate=planned.close_gate,
        started=started,
        web_protocol=planned.web_protocol,
    )


def after_step(
    journal: RunJournal,
    step: str | None = None,
    new_thumbprint: Any = None,
    backup_file: Any = None,
    backup_files: Any = None,
) -> RunJournal:
    """The journal after a step: the step reached, the new thumbprint once known, and every backup made.

    ``backup_file`` is a backup of tls.json (the binding module's answer); values that are None
    (a step that made no backup) change nothing.
    """
    changes: dict[str, Any] = {}
    if step:
        changes["step"] = step
    new = upper(new_thumbprint)
    if new is not None and not journal.new_thumbprint:
        changes["new_thumbprint"] = new
    backups = dict(journal.backup_files)
    made = dict(as_dict(backup_files))
    if isinstance(backup_file, str) and backup_file and journal.tls_path:
        made.setdefault(str(journal.tls_path), backup_file)
    for path, backup in made.items():
        if isinstance(backup, str) and backup and not any(p.lower() == str(path).lower() for p in backups):
            backups[str(path)] = backup
    return replace(journal, backup_files=backups, **changes)


def with_hosts_record(journal: RunJournal, on_host: RunJournal | None) -> RunJournal:
    """The run's journal completed from the copy on the host, when that copy is this run's.

    A step whose answer was lost (a dropped connection) wrote its journal entry, naming the backup
    it made and the new certificate, in the same call: the host knows what the controller missed.
    """
    if on_host is None or not journal.run_id or on_host.run_id != journal.run_id:
        return journal
    return after_step(journal, None, new_thumbprint=on_host.new_thumbprint, backup_files=on_host.backup_files)
