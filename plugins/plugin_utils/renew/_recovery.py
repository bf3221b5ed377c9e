# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the renew role does with a run's journal after an interruption or a failed step. Private to this collection.

The rule, deterministic: roll back to the previous certificate (from the recorded backups, byte
for byte) while it is usable; complete the run when the previous certificate can no longer be
served (AD CS archived it, or it left the store). A resumed run is also completed when the new
certificate is already bound and served as the run meant it. When neither is in the store any more
(another tool, such as win-acme, replaced both), the run binds the certificate adopt mode would
choose. The renewal engine (_renew_engine.Renewal.recover) carries out a ``Recovery``: the restores,
then the swap, then the rebind, then the check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._certificate import utc_now
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import XuError
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.journal._keeper import RunJournal, parse_journal, with_hosts_record
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._info import (
    HTTPS_PROTOCOLS,
    PLAIN_HTTP_PROTOCOL,
    as_dict,
    is_tls_file,
    store_entry,
    tls_settings_file,
    upper,
    usable,
)
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._verify import verify
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._adopt import adoption_in_report

ROLLBACK = "rollback"
COMPLETE = "complete"
# What a recovery can do: act (roll back, complete), nothing (no journal), or leave it to a person.
ACTIONS = (ROLLBACK, COMPLETE, "none", "manual")
# Restart choices of the modules that recover.
ALWAYS, IF_CHANGED, NEVER = "always", "if_changed", "never"


@dataclass(frozen=True)
class Restore:
    """One backup put back with xu_tls_restore."""

    path: str
    backup_file: str
    restart: str

    def as_fact(self) -> dict[str, Any]:
        return {"path": self.path, "backup_file": self.backup_file, "restart": self.restart}


@dataclass(frozen=True)
class Swap:
    """The new certificate bound with xu_cert_swap, the previous one being gone (found by its key after an AD CS renewal)."""

    old_thumbprint: str
    new_thumbprint: str | None
    renew_reusing_key: bool | None
    restart: str

    def as_fact(self) -> dict[str, Any]:
        return {"old_thumbprint": self.old_thumbprint, "new_thumbprint": self.new_thumbprint,
                "renew_reusing_key": self.renew_reusing_key, "restart": self.restart}


@dataclass(frozen=True)
class Rebind:
    """Values set back with xu_tls_binding (None: left as they are), or only a restart."""

    web_protocol: str | None
    web_certificate: str | None
    config_server_certificate: str | None
    restart: str

    def as_fact(self) -> dict[str, Any]:
        return {"web_protocol": self.web_protocol, "web_certificate": self.web_certificate,
                "config_server_certificate": self.config_server_certificate, "restart": self.restart}


@dataclass(frozen=True)
class Recovery:
    """What to do with a run's journal, and what the server must serve afterwards (``expect``, verified like ``web_protocol``)."""

    action: str
    reason: str
    expect: str | None
    web_protocol: Any
    config_tls: bool
    require_valid: bool
    restores: tuple[Restore, ...] = ()
    swap: Swap | None = None
    rebind: Rebind | None = None
    remove_old: bool = False
    old_thumbprint: str | None = None
    new_thumbprint: str | None = None
    # Keys a caller added to the dict (none today), handed back unchanged.
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def acts(self) -> bool:
        return self.action in (ROLLBACK, COMPLETE)

    def as_fact(self) -> dict[str, Any]:
        return {
            **self.extra,
            "action": self.action,
            "reason": self.reason,
            "expect": self.expect,
            "web_protocol": self.web_protocol,
            "config_tls": self.config_tls,
            "require_valid": self.require_valid,
            "restores": [restore.as_fact() for restore in self.restores],
            "swap": self.swap.as_fact() if self.swap else None,
            "rebind": self.rebind.as_fact() if self.rebind else None,
            "remove_old": self.remove_old,
            "old_thumbprint": self.old_thumbprint,
            "new_thumbprint": self.new_thumbprint,
        }


def _journal_new(journal: RunJournal, info: Mapping[str, Any], old: str | None) -> str | None:
    """The new certificate of the journal's run; from the settings when the run died before recording it."""
    if journal.new is not None:
        return journal.new
    bound = upper(as_dict(info.get("web_server")).get("certificate_thumbprint"))
    return bound if bound is not None and bound != old else None


def missing_backups(journal: RunJournal, info: Mapping[str, Any]) -> list[str]:
    """The journal's backups the host no longer has (deleted by hand, or planned by a write that never ran)."""
    listed: dict[str, set[str]] = {}
    for raw in info.get("settings_files") or []:
        entry = as_dict(raw)
        if isinstance(entry.get("backups"), list):
            listed[str(entry.get("path")).lower()] = {str(b).lower() for b in entry["backups"]}
    return [
        backup for path, backup in journal.backup_files.items()
        if path.lower() in listed and backup.lower() not in listed[path.lower()]
    ]


def _restores(journal: RunJournal, restart: str) -> tuple[Restore, ...]:
    """The backups to put back, tls.json last; only the last one restarts the service."""
    ordered = sorted(journal.backup_files.items(), key=lambda item: is_tls_file(item[0]))
    return tuple(
        Restore(path, backup, restart if index == len(ordered) - 1 else NEVER) for index, (path, backup) in enumerate(ordered)
    )


def _empty(action: str, reason: str, journal: RunJournal | None, expect: str | None) -> Recovery:
    return Recovery(
        action=action,
        reason=reason,
        expect=expect,
        web_protocol=journal.previous_web_protocol if journal else None,
        config_tls=bool(journal.config_tls) if journal else False,
        require_valid=action == COMPLETE,
        old_thumbprint=journal.old if journal else None,
    )


def _rollback(journal: RunJournal, info: Mapping[str, Any], old: str, old_in_force: bool, file_original: bool) -> Recovery:
    recovery = _empty(ROLLBACK, f"the previous certificate {old} is put back", journal, old)
    if old_in_force:
        return replace(recovery, reason=f"the previous settings are in force and the server serves {old}")
    rebind = Rebind(journal.previous_web_protocol, old, old if journal.config_tls else None, ALWAYS)
    if file_original:
        # The settings file holds the bytes from before the run (a write planned with its backup never
        # happened, so that backup may not exist): only a restart is missing; the values match, nothing is written.
        return replace(recovery, rebind=rebind, reason=f"the previous settings are unchanged; the service is restarted to serve {old}")
    missing = missing_backups(journal, info)
    if journal.backup_files and not missing:
        return replace(
            recovery,
            restores=_restores(journal, IF_CHANGED),
            reason=f"the previous settings are restored from {', '.join(journal.backup_files.values())}, serving {old}",
        )
    # The last resort: no copy of the previous bytes is there; the values the journal recorded are set back.
    why = f"the backup {', '.join(missing)} no longer exists" if missing else "no backup was recorded"
    return replace(recovery, rebind=replace(rebind, restart=IF_CHANGED), reason=f"{why}; the previous values are set back, serving {old}")


def _forward(journal: RunJournal, info: Mapping[str, Any], old: str, new: str | None, *, new_in_force: bool, file_original: bool) -> Recovery:
    recovery = replace(
        _empty(COMPLETE, "", journal, new),
        new_thumbprint=new,
        remove_old=bool(journal.remove_old) and store_entry(info, old) is not None,
    )
    renewal = journal.mode == "reuse_key"
    gone = "was archived by the AD CS renewal" if renewal else "is no longer in LocalMachine\\My"
    if new_in_force:
        reason = f"the new certificate {new} is bound and served"
        if not usable(info, old):
            reason = f"the previous certificate {old} {gone}, so it cannot be put back; {reason}"
        return replace(recovery, reason=reason)
    # With the settings file as before the run, there is nothing to restore (a write planned with its backup
    # never happened, so that backup may not exist): the swap rewrites the thumbprints, with a backup of its own.
    backups = bool(journal.backup_files) and not file_original and not missing_backups(journal, info)
    rebind = None
    if not backups and as_dict(info.get("web_server")).get("protocol") != journal.previous_web_protocol:
        rebind = Rebind(journal.previous_web_protocol, None, None, IF_CHANGED)
    what = f"the renewed certificate {new or '(found by its key)'}" if renewal else f"the new certificate {new}"
    return replace(
        recovery,
        # The previous settings first, byte for byte; then only the thumbprints move to the new certificate.
        restores=_restores(journal, NEVER) if backups else (),
        swap=Swap(old, None if renewal else new, True if renewal else None, IF_CHANGED if backups else ALWAYS),
        rebind=rebind,
        reason=f"the previous certificate {old} {gone}, so the previous settings cannot start the service; they are bound to {what}",
        expect=None if renewal and new is None else new,
    )


def _successor(info: Mapping[str, Any], gone: tuple[str | None, ...]) -> str | None:
    """The certificate adopt mode would choose now (of any issuer), or None: what a run binds when the one it chose left
    the store together with the previous one (win-acme renews, then deletes the certificate it replaced)."""
    try:
        chosen = adoption_in_report(info, None, 0, utc_now()).chosen
    except XuError:
        return None
    return chosen.thumbprint if chosen is not None and chosen.thumbprint not in gone else None


def _to_successor(journal: RunJournal, info: Mapping[str, Any], old: str, new: str | None, successor: str, *, file_original: bool) -> Recovery:
    backups = bool(journal.backup_files) and not file_original and not missing_backups(journal, info)
    bound = upper(as_dict(info.get("web_server")).get("certificate_thumbprint"))
    # Restored (or never written), the settings name the previous certificate; else what the failed step wrote.
    named = old if backups or file_original or bound is None else bound
    rebind = None
    if not backups and as_dict(info.get("web_server")).get("protocol") != journal.previous_web_protocol:
        rebind = Rebind(journal.previous_web_protocol, None, None, IF_CHANGED)
    return replace(
        _empty(COMPLETE, "", journal, successor),
        new_thumbprint=successor,
        restores=_restores(journal, NEVER) if backups else (),
        swap=Swap(named, successor, None, IF_CHANGED if backups else ALWAYS),
        rebind=rebind,
        reason=(
            f"neither the previous certificate {old} nor the new one {new or '(not recorded)'} is in LocalMachine\\My with its key"
            f" (another tool replaced them); the settings are bound to {successor}, the certificate adopt mode chooses"
        ),
    )


def _enable_tls_recovery(journal: RunJournal, info: Mapping[str, Any], prefer: str) -> Recovery:
    """A run that turned TLS on: keep TLS on when resuming finds the new certificate served, else back to plain HTTP."""
    new = _journal_new(journal, info, None)
    config_tls = bool(as_dict(info.get("config_server")).get("tls"))
    if prefer == COMPLETE and new is not None and verify(info, new, journal.target_protocol, config_tls).ok:
        return Recovery(action=COMPLETE, reason=f"TLS is on ({journal.target_protocol}) and the server serves the new certificate {new}",
                        expect=new, web_protocol=journal.target_protocol, config_tls=config_tls, require_valid=True, new_thumbprint=new)
    recovery = Recovery(action=ROLLBACK, reason="", expect=None, web_protocol=PLAIN_HTTP_PROTOCOL, config_tls=False, require_valid=False,
                        new_thumbprint=new)
    settings = tls_settings_file(info)
    # original_sha256 is null when tls.json did not exist (XU's defaults: plain HTTP); the binding creates it.
    file_original = (
        settings.get("sha256") == journal.original_sha256 if journal.original_sha256 else bool(settings) and not settings.get("exists")
    )
    if file_original and verify(info, None, PLAIN_HTTP_PROTOCOL).ok:
        # The failed step put its change back itself (a module rolls back a restart that fails).
        return replace(recovery, reason="the previous settings are in force and the server serves plain HTTP as before")
    if file_original:
        # Nothing of the run was written (or it was put back): a restart makes the service serve the settings again.
        return replace(recovery, rebind=Rebind(None, None, None, ALWAYS),
                       reason="the previous settings are unchanged; the service is restarted to serve plain HTTP as before")
    if journal.backup_files and not missing_backups(journal, info):
        return replace(recovery, restores=_restores(journal, IF_CHANGED),
                       reason=f"the previous settings are restored from {', '.join(journal.backup_files.values())}: plain HTTP as before")
    return replace(recovery, rebind=Rebind(PLAIN_HTTP_PROTOCOL, None, None, IF_CHANGED),
                   reason="no backup was recorded; the web server is set back to plain HTTP")


def _unusable(journal: RunJournal, info: Mapping[str, Any]) -> str | None:
    """Why the journal cannot be acted on, or None."""
    if not info or info.get("failed") or not info.get("installed"):
        return f"the server could not be read ({info.get('msg') or 'no answer'}), so nothing was put back; the journal stays for the next run"
    if not journal.readable or not (journal.enables_tls or (journal.old and journal.previous_web_protocol in HTTPS_PROTOCOLS)):
        return "the journal cannot be read as this role's journal; check the host and remove it by hand"
    return None


def recover(journal: RunJournal | None, info: Mapping[str, Any], prefer: str) -> Recovery:
    """What to do with ``journal``, the server being as ``info`` reports it; ``prefer`` is ``complete`` or ``rollback``.

    ``complete`` (resuming an interrupted run) keeps a new certificate that is bound and served;
    ``rollback`` (after a failed step, whose new state is suspect) puts the previous one back
    whenever it is still usable.
    """
    if journal is None:
        return _empty("none", "nothing had been changed", None, None)
    journal = with_hosts_record(journal, parse_journal(info.get("journal")))
    unusable = _unusable(journal, info)
    if unusable is not None:
        return _empty("manual", unusable, journal, None)
    return _enable_tls_recovery(journal, info, prefer) if journal.enables_tls else _replacement_recovery(journal, info, prefer)


def _replacement_recovery(journal: RunJournal, info: Mapping[str, Any], prefer: str) -> Recovery:
    """A run that replaced a bound certificate: roll back while the previous one is usable, else complete."""
    old = str(journal.old)
    protocol = journal.previous_web_protocol
    config_tls = bool(journal.config_tls)
    new = _journal_new(journal, info, old)
    file_original = bool(journal.original_sha256) and tls_settings_file(info).get("sha256") == journal.original_sha256
    new_in_force = new is not None and verify(info, new, protocol, config_tls).ok
    old_in_force = file_original and verify(info, old, protocol, config_tls, require_valid=False).ok
    if prefer == COMPLETE and new_in_force:
        return _forward(journal, info, old, new, new_in_force=True, file_original=file_original)
    if usable(info, old):
        return _rollback(journal, info, old, old_in_force, file_original)
    if usable(info, new) or (new is None and journal.mode == "reuse_key"):
        return _forward(journal, info, old, new, new_in_force=new_in_force, file_original=file_original)
    successor = _successor(info, (old, new))
    if successor is not None:
        return _to_successor(journal, info, old, new, successor, file_original=file_original)
    return _empty(
        "manual",
        f"neither the previous certificate {old} nor a new one is usable in LocalMachine\\My; the settings are left as they are",
        journal,
        None,
    )
