"""Who owns the collection's folder in C:\\ProgramData and who may use it (the agent's Assert-XuJournalDir).

Every user may create folders in ProgramData (its DACL gives Users "create folders / append data" and the creator
owns what it creates), so the folder the agent keeps its journals, certreq's request and certreq's output in may
have been made by someone else before the first run. The lab keeps the folder's owner, whether its DACL is
protected, which SIDs it allows, whether it is a link, and the owner of each file another user put there; the
agent's checks (docs/agent-protocol.md, Journals) run against that, with the agent's own messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import LabError, PrimitiveError

if TYPE_CHECKING:
    from .host import Host

JOURNAL_DIR = "C:\\ProgramData\\xtractuniversal.tls"
SYSTEM_SID = "S-1-5-18"
ADMINISTRATORS_SID = "S-1-5-32-544"
USERS_SID = "S-1-5-32-545"
CREATOR_OWNER_SID = "S-1-3-0"
TRUSTED_SIDS = (SYSTEM_SID, ADMINISTRATORS_SID)
# A local user of every lab host (XU01\operator): the one who gets there first.
LOCAL_USER_SID = "S-1-5-21-1004336348-1177238915-682003330-1001"
REFUSED = "Nothing was read or written there; remove it (an administrator can), then run again"
# `fault --set journal_dir=...`: how the folder came to be there before the collection's first run.
JOURNAL_DIR_ORIGINS = ("user", "open", "open_planted", "link")
PLANTED_FILE = "xu-renew.json"


@dataclass
class FolderSecurity:
    """A folder's owner and DACL as the agent reads them (GetOwner, AreAccessRulesProtected, the Allow entries' SIDs)."""

    owner: str
    protected: bool
    allowed: tuple[str, ...]
    reparse_point: bool = False
    # Files another account put there: {name: owner SID}. Every other file is the agent's (SYSTEM or Administrators).
    foreign_files: dict[str, str] = field(default_factory=dict)

    @classmethod
    def agents(cls) -> FolderSecurity:
        """What Initialize-XuJournalDir creates: owned by Administrators, SYSTEM and Administrators only, nothing inherited."""
        return cls(ADMINISTRATORS_SID, True, TRUSTED_SIDS)

    @classmethod
    def made_before(cls, origin: str) -> FolderSecurity:
        """A folder that was there before the collection's first run."""
        inherited = (SYSTEM_SID, ADMINISTRATORS_SID, CREATOR_OWNER_SID, USERS_SID)
        if origin == "user":
            # A local user made it: they own it, and ProgramData's inherited entries let every user add files.
            return cls(LOCAL_USER_SID, False, (*inherited, LOCAL_USER_SID))
        if origin in ("open", "open_planted"):
            # An administrator made it by hand: theirs, but inheriting ProgramData's DACL, so users could add files.
            planted = {PLANTED_FILE: LOCAL_USER_SID} if origin == "open_planted" else {}
            return cls(ADMINISTRATORS_SID, False, inherited, foreign_files=planted)
        if origin == "link":
            # A junction a user made, pointing elsewhere: owned by them.
            return cls(LOCAL_USER_SID, False, inherited, reparse_point=True)
        raise LabError(f"journal_dir takes {', '.join(JOURNAL_DIR_ORIGINS)}, not {origin!r}")

    @property
    def closed(self) -> bool:
        return self.protected and all(sid in TRUSTED_SIDS for sid in self.allowed)

    def state(self) -> dict[str, object]:
        return {
            "owner": self.owner, "protected": self.protected, "allowed": list(self.allowed), "reparse_point": self.reparse_point,
            "foreign_files": dict(self.foreign_files),
        }


def precreate_journal_dir(host: Host, origin: str) -> None:
    """`fault --set journal_dir=ORIGIN`: the folder is there before the first run, made as ORIGIN says."""
    security = FolderSecurity.made_before(origin)
    folder = host.fs.resolve(JOURNAL_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    for name in security.foreign_files:
        (folder / name).write_text('{"planted": true}', encoding="utf-8")
    host.journal_dir_security = security


def check_journal_dir(host: Host) -> None:
    """The agent's Assert-XuJournalDir: a trusted folder passes, an open one of a trusted owner is closed, the rest is refused."""
    if not host.fs.resolve(JOURNAL_DIR).is_dir():
        return
    security = host.journal_dir_security or FolderSecurity.agents()
    if security.reparse_point:
        raise PrimitiveError("UntrustedFolder", f"{JOURNAL_DIR} is a link (reparse point), not a folder. {REFUSED}")
    if security.owner not in TRUSTED_SIDS:
        raise PrimitiveError(
            "UntrustedFolder", f"{JOURNAL_DIR} is owned by {security.owner}, not by SYSTEM or Administrators: another user may have made it first. {REFUSED}"
        )
    if security.closed:
        return
    folder = host.fs.resolve(JOURNAL_DIR)
    foreign = {name: owner for name, owner in security.foreign_files.items() if (folder / name).is_file()}
    host.journal_dir_security = FolderSecurity(security.owner, True, TRUSTED_SIDS, foreign_files=foreign)
    host.emit("folder_acl", path=JOURNAL_DIR, action="closed", previous_allowed=list(security.allowed))
    for name, owner in sorted(foreign.items()):
        raise PrimitiveError(
            "UntrustedFolder",
            f"{JOURNAL_DIR}\\{name} is owned by {owner}, not by SYSTEM or Administrators: another user put it there while the folder let them. {REFUSED}",
        )


def initialize_journal_dir(host: Host) -> None:
    """The agent's Initialize-XuJournalDir: made for SYSTEM and Administrators when missing, else checked."""
    folder = host.fs.resolve(JOURNAL_DIR)
    if not folder.is_dir():
        folder.mkdir(parents=True)
        host.journal_dir_security = FolderSecurity.agents()
    check_journal_dir(host)
