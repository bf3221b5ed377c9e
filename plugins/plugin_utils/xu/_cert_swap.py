# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""xu_cert_swap: replace one certificate with another everywhere XU references it. Private to this collection.

The flow of every run: judge the input on the controller (a PFX is opened and judged
here, before any remote call), read the host in one call, decide, and change the host in
one more call (a renewal with certreq costs one call in between, since the new thumbprint
is only known once certreq has run). Removing the old certificate costs one more call,
made only once the controller has judged the change good.

References are replaced at the text level, so each settings file keeps its formatting:
every JSON string value that is the old thumbprint (in any form a user may have pasted)
becomes the new thumbprint, and the result is parsed again and compared with what was
intended before anything is written.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._certificate import (
    ADMINISTRATORS_SID,
    LOCAL_SYSTEM_SID,
    CertificateFacts,
    ServiceIdentity,
    iso,
    key_readable_by,
    utc_now,
)
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._hostname import clean_fqdn
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._pfx import (
    PfxError,
    PfxJudgement,
    eku_problem,
    judge_pfx,
    load_ca_bundle,
    open_pfx,
    pfx_for_windows,
    san_problem,
    validity_errors,
)
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._thumbprint import ThumbprintError, clean_thumbprint
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.gate._gate import DEFAULT_GATE_GROUP
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._action_base import ModuleRun
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._agent import Operation, OperationResult
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import OperationError, XuError
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._eventlog import (
    CERTIFICATE_SWAPPED,
    OLD_CERTIFICATE_REMOVED,
    EventNote,
)
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._host_state import StaleState
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._snapshot import (
    Probe,
    Snapshot,
    StoreCertificate,
    read_snapshot,
    require_complete,
    require_installed,
    store_certificate,
)
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.journal._journal import (
    JournalRide,
    journal_guard_failed,
    journal_text,
    parse_journal,
    written_journal,
)
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._adopt import AUTO, AdoptionRules, Candidate, choose
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._apply import (
    FileChange,
    RestartPlan,
    apply_changes,
    backup_path_for,
    backup_stamp,
    certificates_present,
    check_known,
    error_text,
    event_warnings,
    expectations_for,
    prune_operations,
    restart_wanted,
    served_check,
    served_requirement,
)
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._profiles import resolve_profile
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._settings import (
    SettingsError,
    SettingsFile,
    TlsState,
    join_path,
    read_tls_state,
)

# The module's own record of its renewals (used alone, without a run journal): the newest few, in one journal.
RENEWALS_JOURNAL = "xu_cert_swap.renewals"
KEEP_RENEWALS = 10
STORE = "My"
SOURCE_THUMBPRINT = "new_thumbprint"
SOURCE_PFX = "pfx"
SOURCE_RENEWAL = "renew_reusing_key"
SOURCE_ADOPTION = "adopt"
SOURCE_ENROLMENT = "enroll"
# Listing the CAs is one SYSTEM task reading AD: far quicker than an enrolment.
CA_LIST_TIMEOUT_S = 120
# As the agent checks them; checked here first, so a bad value fails before the host is contacted.
TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9 ._-]{1,64}\Z")
CA_CONFIG = re.compile(r"^[A-Za-z0-9_.-]{1,253}\\[A-Za-z0-9 _.()-]{1,64}\Z")
# The ACL Windows gives a key imported into the machine key set: the XU service account is not on it.
IMPORTED_KEY_ACL = [
    {"identity": "NT AUTHORITY\\SYSTEM", "sid": LOCAL_SYSTEM_SID, "rights": "FullControl", "type": "Allow"},
    {"identity": "BUILTIN\\Administrators", "sid": ADMINISTRATORS_SID, "rights": "FullControl", "type": "Allow"},
]
# How long certreq may take, CA round trips included, before the host gives up on it.
CERTREQ_TIMEOUT_S = 300
_ROOTED = re.compile(r"^([A-Za-z]:|[\\/])")


# -- input ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ControllerFiles:
    """Files the action plugin read on the controller: the PFX of pfx_path and the CA bundle of ca_path."""

    pfx: bytes | None = None
    pfx_source: str = "the PFX"
    ca_bundle: bytes | None = None


@dataclass(frozen=True)
class SwapRequest:
    """The validated input of one run."""

    old: str | None  # None: nothing to replace (update_references: false)
    source: str
    new: str | None  # known up front for new_thumbprint and a PFX; a renewal learns it from certreq
    pfx_b64: str | None
    pfx_password: str | None
    pfx_exportable: bool
    pfx: PfxJudgement | None
    remove_old: bool
    # A new certificate that expires before the old one is taken (and the old one kept) only when allowed.
    allow_shorter: bool
    grant_key_access: bool
    allow_no_reference: bool
    update_references: bool
    strict_san: bool
    fqdn: str | None
    extra_files: tuple[str, ...]
    restart: str
    wait_timeout: int
    backup: bool
    adoption: AdoptionRules | None = None  # new_thumbprint: auto; ``new`` is chosen once the store is read
    enrolment: dict[str, Any] | None = None  # enroll: cert_enroll's arguments but dns_names, when not given

    @property
    def replaced(self) -> str:
        """The certificate replaced, where one must be (a renewal, a removal, a reference search)."""
        if self.old is None:
            raise XuError("old_thumbprint is required unless update_references is false")
        return self.old


def _thumbprint(value: Any, option: str) -> str:
    try:
        return clean_thumbprint(value, option)
    except ThumbprintError as e:
        raise XuError(str(e)) from e


def _extra_file(path: str) -> str:
    windows_path = path.strip().replace("/", "\\")
    if not windows_path or _ROOTED.match(windows_path) or ".." in windows_path.split("\\"):
        raise XuError(f"settings_files entry {path!r} must be a path relative to the install dir, without '..' (e.g. config\\servers\\extra.json)")
    return windows_path


def _pfx_bytes(params: dict[str, Any], files: ControllerFiles) -> tuple[bytes, str]:
    if files.pfx is not None:
        return files.pfx, files.pfx_source
    try:
        return base64.b64decode(re.sub(r"\s", "", params["pfx_content"]), validate=True), "pfx_content"
    except (binascii.Error, ValueError) as e:
        raise XuError("pfx_content must be the PFX file encoded as base64 (for example `base64 -w0 site.pfx`, kept in a vaulted variable)") from e


def _source(params: dict[str, Any], renew: bool, given: list[str]) -> str:
    """Which option names the new certificate (exactly one does, checked before)."""
    if renew:
        if params.get("old_thumbprint") is None:
            raise XuError("renew_reusing_key: true renews the certificate named by old_thumbprint; give old_thumbprint")
        return SOURCE_RENEWAL
    if given[0] == "enroll":
        return SOURCE_ENROLMENT
    source = SOURCE_PFX if given[0] in ("pfx_path", "pfx_content") else SOURCE_THUMBPRINT
    if source == SOURCE_THUMBPRINT and str(params["new_thumbprint"]).strip().lower() == AUTO:
        source = SOURCE_ADOPTION
    if source != SOURCE_ADOPTION and (params.get("adopt_issuer") is not None or params.get("adopt_min_days")):
        raise XuError("adopt_issuer and adopt_min_days only apply with new_thumbprint: auto")
    return source


def parse_request(params: dict[str, Any], files: ControllerFiles, now: datetime.datetime) -> SwapRequest:
    """Check and clean the input; XuError names the problem and the fix. Runs before any remote call."""
    # None only with update_references: false (the action's required_if): a certificate installed for a server that has none bound.
    old = _thumbprint(params["old_thumbprint"], "old_thumbprint") if params.get("old_thumbprint") is not None else None
    renew = params.get("renew_reusing_key")
    given = [name for name in ("new_thumbprint", "pfx_path", "pfx_content", "enroll") if params.get(name) is not None]
    if renew and given:
        raise XuError(f"renew_reusing_key: true and {given[0]} both name the new certificate; keep exactly one of them")
    if not renew and not given:
        what = "renew_reusing_key: false names no new certificate" if renew is False else "No new certificate is given (the options are null)"
        raise XuError(f"{what}; set one of new_thumbprint, pfx_path, pfx_content or enroll, or renew_reusing_key: true")
    source = _source(params, bool(renew), given)
    if source != SOURCE_PFX:
        stray = [name for name in ("pfx_password", "ca_path") if params.get(name) is not None]
        stray += ["pfx_exportable"] if params.get("pfx_exportable") else []
        if stray:
            raise XuError(f"{', '.join(stray)} only apply to a PFX; give the PFX with pfx_path or pfx_content, or leave {', '.join(stray)} out")
    if params["wait_timeout"] <= 0:
        raise XuError(f"wait_timeout must be a positive number of seconds, not {params['wait_timeout']}")
    extra_files = tuple(dict.fromkeys(_extra_file(path) for path in params.get("settings_files") or []))
    fqdn = clean_fqdn(params.get("fqdn"))
    adoption = AdoptionRules.from_options(fqdn, params.get("adopt_issuer"), params.get("adopt_min_days")) if source == SOURCE_ADOPTION else None

    new: str | None = None
    judgement: PfxJudgement | None = None
    pfx_b64: str | None = None
    if source == SOURCE_THUMBPRINT:
        new = _thumbprint(params["new_thumbprint"], "new_thumbprint")
    elif source == SOURCE_PFX:
        data, where = _pfx_bytes(params, files)
        try:
            opened = open_pfx(data, params.get("pfx_password"), where)
            ca_bundle = load_ca_bundle(files.ca_bundle) if files.ca_bundle is not None else None
        except PfxError as e:
            raise XuError(str(e)) from e
        judgement = judge_pfx(opened, now=now, ca_bundle=ca_bundle)
        if judgement.errors:
            raise XuError(f"The PFX ({where}) cannot be used: {'; '.join(judgement.errors)}", new_certificate=judgement.to_result(now, fqdn))
        new = judgement.thumbprint
        try:
            # Re-encoded when needed, so that Server 2016 can read it as well as 2019 and later.
            pfx_b64 = base64.b64encode(pfx_for_windows(data, params.get("pfx_password"))).decode("ascii")
        except PfxError as e:
            raise XuError(str(e)) from e
    if not params["update_references"] and params["remove_old"]:
        raise XuError("remove_old: true needs update_references: true; the old certificate goes only once the settings name the new one")
    if new is not None and new == old:
        raise XuError(f"The new certificate is the old one ({old}); give the thumbprint or PFX of the certificate that replaces it")
    return SwapRequest(
        old=old,
        source=source,
        new=new,
        pfx_b64=pfx_b64,
        pfx_password=params.get("pfx_password"),
        pfx_exportable=bool(params.get("pfx_exportable")),
        pfx=judgement,
        remove_old=bool(params["remove_old"]),
        allow_shorter=bool(params["allow_shorter"]),
        grant_key_access=bool(params["grant_key_access"]),
        # Without updating references the caller binds the certificate itself: where the old one is named does not matter.
        allow_no_reference=bool(params["allow_no_reference"]) or not params["update_references"],
        update_references=bool(params["update_references"]),
        strict_san=bool(params["strict_san"]),
        fqdn=fqdn,
        extra_files=extra_files,
        restart=params["restart"],
        wait_timeout=params["wait_timeout"],
        backup=True,  # every write keeps the bytes it replaces: the module decides, never the caller
        adoption=adoption,
        enrolment=_enrolment(params["enroll"]) if source == SOURCE_ENROLMENT else None,
    )


def _enrolment(option: dict[str, Any]) -> dict[str, Any]:
    """cert_enroll's arguments from the enroll option, checked as the agent checks them."""
    template = str(option.get("template") or "")
    if not TEMPLATE_NAME.match(template):
        raise XuError(f"enroll.template {template!r} must be a template's name: 1 to 64 letters, digits, spaces, '.', '_' or '-'")
    ca_config = option.get("ca_config")
    if ca_config is not None and not CA_CONFIG.match(str(ca_config)):
        raise XuError(f"enroll.ca_config {ca_config!r} must be the CA as host\\CA name (for example ca01.example.com\\Example Issuing CA)")
    names = []
    for name in option.get("dns_names") or []:
        cleaned = clean_fqdn(name, "enroll.dns_names entry")
        if cleaned is None:
            raise XuError(f"enroll.dns_names entry {name!r} is empty")
        names.append(cleaned)
    return {
        "template": template, "ca_config": ca_config, "dns_names": names, "key_length": option.get("key_length") or 2048,
        "key_provider": option.get("key_provider") or "schannel_csp",
        "run_as": "machine", "timeout_s": CERTREQ_TIMEOUT_S,
    }


def judge_names(run: ModuleRun, facts: CertificateFacts, fqdn: str | None, strict: bool) -> None:
    """SAN and EKU problems of the new certificate: warnings, or failures with strict_san."""
    problems = [p for p in (san_problem(facts, fqdn), eku_problem(facts)) if p]
    if problems and strict:
        raise XuError(f"{'; '.join(problems)} (strict_san is true; use a certificate issued for this host, or set strict_san: false to only warn)")
    for problem in problems:
        run.warn(problem)


# -- references in settings files ---------------------------------------------------------------


@dataclass(frozen=True)
class StringLiteral:
    """A JSON string value (never a key) as it stands in the text: where, what it says, and its JSON path."""

    start: int
    end: int
    value: str
    path: tuple[str | int, ...]


@dataclass
class _Container:
    is_object: bool
    key: str | None = None
    index: int = 0
    expecting_key: bool = False


def _string_end(text: str, start: int) -> int:
    """The index after the closing quote of the string literal opening at ``start``."""
    position = start + 1
    while position < len(text):
        char = text[position]
        if char == "\\":
            position += 2
            continue
        if char == '"':
            return position + 1
        position += 1
    raise SettingsError("unterminated string")


def string_values(text: str) -> list[StringLiteral]:
    """Every string value of a JSON text, with its position and path. The text must be valid JSON."""
    literals: list[StringLiteral] = []
    stack: list[_Container] = []
    position = 0
    while position < len(text):
        char = text[position]
        if char in "{[":
            stack.append(_Container(is_object=char == "{", expecting_key=char == "{"))
        elif char in "}]":
            stack.pop()
        elif char == "," and stack:
            if stack[-1].is_object:
                stack[-1].expecting_key = True
            else:
                stack[-1].index += 1
        elif char == ":" and stack:
            stack[-1].expecting_key = False
        elif char == '"':
            end = _string_end(text, position)
            value = json.loads(text[position:end])
            if stack and stack[-1].is_object and stack[-1].expecting_key:
                stack[-1].key = value
            else:
                path = tuple(c.key if c.is_object and c.key is not None else c.index for c in stack)
                literals.append(StringLiteral(position, end, value, path))
            position = end
            continue
        position += 1
    return literals


def _is_thumbprint(value: str, thumbprint: str) -> bool:
    try:
        return clean_thumbprint(value) == thumbprint
    except ThumbprintError:
        return False


def styled_like(old_value: str, new: str) -> str:
    """The new thumbprint as the old value was written: in its case when it was 40 hex digits, else in the clean form.

    Separators and invisible marks are not copied: the clean form is what XU itself writes.
    """
    if not re.fullmatch(r"[0-9A-Fa-f]{40}", old_value):
        return new.upper()
    letters = [char for char in old_value if char.isalpha()]
    return new.lower() if letters and all(char.islower() for char in letters) else new.upper()


@dataclass(frozen=True)
class Reference:
    file: str
    path: str
    old_value: str
    new_value: str | None

    def to_result(self) -> dict[str, str | None]:
        return {"file": self.file, "path": self.path, "old_value": self.old_value, "new_value": self.new_value}


@dataclass(frozen=True)
class FileRewrite:
    """One settings file with every reference to the old thumbprint replaced."""

    source: SettingsFile
    after: str
    references: tuple[Reference, ...]

    def change(self) -> FileChange:
        return FileChange(
            path=self.source.full_path, before=self.source.content, after=self.after, before_sha256=self.source.sha256, bom=self.source.bom
        )


def _document(settings_file: SettingsFile) -> Any:
    try:
        return settings_file.document()
    except SettingsError as e:
        raise XuError(f"{e}; fix the file, or leave it out of settings_files") from e


def references_to(settings_file: SettingsFile, thumbprint: str) -> list[StringLiteral]:
    """The string values of a settings file that are ``thumbprint``, in any pasted form."""
    if not settings_file.exists or settings_file.content is None:
        return []
    _document(settings_file)
    return [literal for literal in string_values(settings_file.content) if _is_thumbprint(literal.value, thumbprint)]


def _set(document: Any, path: tuple[str | int, ...], value: str) -> Any:
    if not path:
        return value
    node = document
    for token in path[:-1]:
        node = node[token]
    node[path[-1]] = value
    return document


def rewrite_references(settings_file: SettingsFile, old: str, new: str | None) -> FileRewrite | None:
    """Replace every reference to ``old`` by ``new`` in the file's text; None when there is none.

    With ``new`` None (a renewal not yet run) the references are only located.
    The rewritten text must parse to the original document with exactly those values
    changed; anything else (e.g. duplicate keys) is refused rather than written.
    """
    literals = references_to(settings_file, old)
    if not literals:
        return None
    text = settings_file.content or ""
    if new is None:
        references = tuple(Reference(settings_file.full_path, join_path(list(lit.path)), lit.value, None) for lit in literals)
        return FileRewrite(settings_file, text, references)
    expected = copy.deepcopy(_document(settings_file))
    after = text
    references_found = []
    for literal in reversed(literals):
        new_value = styled_like(literal.value, new)
        after = after[:literal.start] + json.dumps(new_value) + after[literal.end:]
        expected = _set(expected, literal.path, new_value)
        references_found.append(Reference(settings_file.full_path, join_path(list(literal.path)), literal.value, new_value))
    if json.loads(after) != expected:
        raise XuError(
            f"Refusing to rewrite {settings_file.full_path}: replacing the thumbprint in its text would change more than the"
            " thumbprint values (duplicate keys?); fix the file by hand"
        )
    return FileRewrite(settings_file, after, tuple(reversed(references_found)))


# -- reading the host ----------------------------------------------------------------------------


def searched_files(run: ModuleRun, snapshot: Snapshot, request: SwapRequest) -> list[SettingsFile]:
    """The settings files references are looked for in: the product's JSON files and the extra ones that exist."""
    searched = [f for path in snapshot.profile.settings_files if (f := snapshot.files.get(path)) and f.exists and path.lower().endswith(".json")]
    paths = {f.path.lower() for f in searched}
    for path in request.extra_files:
        settings_file = snapshot.files.get(path)
        if settings_file is None or path.lower() in paths:
            continue
        if not settings_file.exists:
            run.warn(f"settings_files entry {path} does not exist on the host ({settings_file.full_path})")
            continue
        _document(settings_file)
        searched.append(settings_file)
    return searched


def _no_reference_error(old: str, searched: list[SettingsFile]) -> XuError:
    names = ", ".join(f.full_path for f in searched) or "no settings files"
    return XuError(
        f"No settings reference the old certificate {old} (searched {names}). Check old_thumbprint against"
        " xu_tls_info's thumbprint_references, add the files that hold it with settings_files, or set"
        " allow_no_reference: true to go on without replacing anything"
    )


# -- deciding -----------------------------------------------------------------------------------


@dataclass
class SwapPlan:
    """Everything one apply call does, and what the result reports about it."""

    new: str | None  # None only while a renewal has not run (check mode)
    rewrites: list[FileRewrite]
    pre_ops: list[Operation]
    remove_old: bool
    restart: bool
    # False once the old certificate has left the store: settings naming it again would not start.
    can_roll_back: bool
    new_certificate: dict[str, Any] | None
    import_needed: bool = False
    grant_needed: bool = False
    renewed_now: bool = False

    @property
    def references(self) -> list[Reference]:
        return [reference for rewrite in self.rewrites for reference in rewrite.references]

    @property
    def has_work(self) -> bool:
        return bool(self.rewrites or self.pre_ops or self.remove_old or self.restart)

    @classmethod
    def nothing(cls) -> SwapPlan:
        """A plan that changes nothing (no certificate chosen yet, or none to choose)."""
        return cls(new=None, rewrites=[], pre_ops=[], remove_old=False, restart=False, can_roll_back=True, new_certificate=None)


def _key_access(
    run: ModuleRun, request: SwapRequest, *, readable: bool | None, thumbprint: str, identity: ServiceIdentity, other_work: bool
) -> bool:
    """Whether to grant the service account Read on the new key; XuError when it is needed but not allowed."""
    account = identity.account
    if readable is True:
        return False
    if readable is False and not request.grant_key_access:
        raise XuError(
            f"The service account {account} cannot read the private key of {thumbprint}, so the service could not use it;"
            " set grant_key_access: true, or grant it Read on the key yourself (Manage Private Keys)"
        )
    if not identity.sid:
        # A grant is made to a SID: an account Windows cannot translate cannot be granted anything.
        run.warn(f"The service account ({account or 'unknown'}) has no SID the host could tell; Read on the private key of {thumbprint} is not granted")
        return False
    if readable is None and not request.grant_key_access:
        run.warn(f"Whether {account} can read the private key of {thumbprint} cannot be told from the host's answer")
        return False
    # An unreadable ACL (None) is only granted to along with other work, so a run with nothing else to do stays unchanged.
    return readable is False or other_work


def plan_replacement(run: ModuleRun, request: SwapRequest, snapshot: Snapshot, searched: list[SettingsFile], fqdn: str | None) -> SwapPlan:
    """The plan for a new certificate that is in the store or comes in a PFX."""
    new = request.new or ""
    stored = snapshot.certificates.get(new)
    if stored is not None and not stored.has_private_key and request.pfx is not None:
        # The store holds the certificate without its key: importing the PFX repairs it (pfx_import reports repaired).
        stored = None
    import_needed = stored is None
    if stored is not None:
        facts = stored.facts
        if not stored.has_private_key:
            raise XuError(f"The new certificate {new} has no private key in LocalMachine\\My; import it with its key (a PFX)")
        problems = validity_errors(facts, snapshot.now, "the new certificate")
        if problems:
            raise XuError(f"{problems[0]}; use a certificate that is valid now")
        readable = snapshot.key_readable(stored)
    elif request.pfx is not None:
        facts = request.pfx.leaf
        readable = key_readable_by(snapshot.service_identity, {"acl": IMPORTED_KEY_ACL}, True)
    else:
        raise XuError(
            f"new_thumbprint {new} is not in LocalMachine\\My on the host; import the certificate first,"
            " or give its PFX with pfx_path or pfx_content"
        )
    judge_names(run, facts, fqdn, request.strict_san)
    shorter = shorter_than_old(request, snapshot, facts)

    rewrites = [rewrite for f in searched if (rewrite := rewrite_references(f, request.old, new))] if request.old else []
    new_referenced = any(references_to(f, new) for f in searched)
    if not rewrites and not new_referenced and not request.allow_no_reference:
        raise _no_reference_error(request.replaced, searched)
    # A shorter certificate, when allowed, never takes the longer one's place in the store.
    remove = request.remove_old and request.old in snapshot.certificates and not shorter
    other_work = bool(rewrites or import_needed or remove)
    grant = _key_access(run, request, readable=readable, thumbprint=new, identity=snapshot.service_identity, other_work=other_work)
    # A certificate in the store (not imported in this call) is checked in the call that writes the settings naming it.
    pre_ops = certificates_present([new]) if not import_needed and rewrites else []
    if import_needed:
        pre_ops.append(Operation("pfx_import", {"pfx_b64": request.pfx_b64, "password": request.pfx_password, "exportable": request.pfx_exportable}))
    if grant:
        pre_ops.append(Operation("key_grant_read", {"thumbprint": new, "account": snapshot.service_identity.sid}))
    new_certificate = request.pfx.to_result(snapshot.now, fqdn) if request.pfx is not None else facts.to_result(snapshot.now, fqdn)
    return SwapPlan(
        new=new, rewrites=rewrites, pre_ops=pre_ops, remove_old=remove, restart=restart_wanted(request.restart, bool(rewrites)),
        can_roll_back=request.old in snapshot.certificates, new_certificate=new_certificate, import_needed=import_needed,
        grant_needed=grant,
    )


def shorter_than_old(request: SwapRequest, snapshot: Snapshot, facts: CertificateFacts) -> bool:
    """Whether the new certificate expires before the one it replaces; XuError unless ``allow_shorter``."""
    old = snapshot.certificates.get(request.old) if request.old else None
    if old is None or facts.not_after >= old.facts.not_after:
        return False
    if not request.allow_shorter:
        raise XuError(
            f"The new certificate {facts.thumbprint} expires on {iso(facts.not_after)}, before the one it replaces ({request.old},"
            f" {iso(old.facts.not_after)}); nothing was changed. Give a certificate that lasts longer, or set allow_shorter: true"
            " (the old certificate then stays in the store)"
        )
    return True


@dataclass(frozen=True)
class OldKey:
    """What identifies the old certificate's key, from the store or from the journal of an earlier renewal."""

    public_key_sha256: str
    not_after: str  # ISO 8601


def _old_key(stored: StoreCertificate | None, journal: dict[str, Any] | None) -> OldKey | None:
    if stored is not None:
        return OldKey(stored.facts.public_key_sha256, iso(stored.facts.not_after))
    if journal and isinstance(journal.get("public_key_sha256"), str) and isinstance(journal.get("old_not_after"), str):
        return OldKey(journal["public_key_sha256"], journal["old_not_after"])
    return None


def successor_of(snapshot: Snapshot, old: str, key: OldKey | None) -> StoreCertificate | None:
    """The newest certificate in the store with the old one's key and a later expiry: a renewal of it."""
    if key is None:
        return None
    candidates = [
        c for c in snapshot.certificates.values()
        if c.thumbprint != old and c.has_private_key and c.facts.public_key_sha256 == key.public_key_sha256 and iso(c.facts.not_after) > key.not_after
    ]
    return max(candidates, key=lambda c: c.facts.not_after, default=None)


@dataclass
class RenewalDecision:
    """What a renew_reusing_key run does: renew now, or finish with a certificate an earlier renewal left."""

    successor: StoreCertificate | None  # None: renew now
    readable: bool | None

    @property
    def renew_now(self) -> bool:
        return self.successor is None


def decide_renewal(request: SwapRequest, snapshot: Snapshot, searched: list[SettingsFile], journal: dict[str, Any] | None) -> RenewalDecision:
    old = request.replaced
    stored = snapshot.certificates.get(old)
    successor = successor_of(snapshot, old, _old_key(stored, journal))
    old_referenced = any(references_to(f, old) for f in searched)
    if not old_referenced and successor is not None and any(references_to(f, successor.thumbprint) for f in searched):
        return RenewalDecision(successor, snapshot.key_readable(successor))
    if not old_referenced and not request.allow_no_reference:
        raise _no_reference_error(old, searched)
    if stored is None:
        if successor is not None:
            # certreq archived the old certificate in an earlier run whose swap did not finish.
            return RenewalDecision(successor, snapshot.key_readable(successor))
        raise XuError(
            f"The old certificate {old} is not in LocalMachine\\My and no renewal of it is recorded on the host, so it cannot"
            " be renewed; give the new certificate with new_thumbprint, pfx_path or pfx_content instead"
        )
    if not stored.has_private_key:
        raise XuError(f"The old certificate {old} has no private key, so certreq cannot renew it with the same key; use pfx_path instead")
    if stored.facts.is_expired(snapshot.now):
        raise XuError(
            f"The old certificate {old} expired on {iso(stored.facts.not_after)}; a CA refuses to renew an expired certificate."
            " Enroll a new certificate and swap to it with new_thumbprint or pfx_path"
        )
    return RenewalDecision(None, snapshot.key_readable(stored))


# -- applying ----------------------------------------------------------------------------------


def tls_state_after(snapshot: Snapshot, rewrites: list[FileRewrite]) -> TlsState:
    files = dict(snapshot.files)
    for rewrite in rewrites:
        files[rewrite.source.path] = replace(rewrite.source, content=rewrite.after)
    return read_tls_state(files, snapshot.profile)


@dataclass
class SwapJournal:
    """The journals the module keeps in its calls: the run's (its ``journal`` option) and its record of renewals.

    A renewal is recorded so that a later run recognises the renewed certificate by its key once certreq has
    archived the old one. With a run journal the record goes into it (``renewal``); used alone, the module
    keeps the newest ``KEEP_RENEWALS`` records in one journal of its own, ``xu_cert_swap.renewals``.
    """

    old: str | None
    ride: JournalRide | None
    raw: dict[str, Any] | None  # the run journal as read (or as this run wrote it)
    renewals_raw: dict[str, Any] | None  # the module's own record, when it has no run journal
    run_id: str
    # The host's time now (Agent.host_now): the lease a write takes runs on the host's clock.
    host_now: Callable[[], datetime.datetime]
    written: bool = False  # this module run wrote the run journal already

    def _own_records(self) -> list[dict[str, Any]]:
        records = (parse_journal(self.renewals_raw) or {}).get("renewals")
        return [r for r in records if isinstance(r, dict)] if isinstance(records, list) else []

    @property
    def record(self) -> dict[str, Any] | None:
        if self.ride is not None:
            renewal = (parse_journal(self.raw) or {}).get("renewal")
            return renewal if isinstance(renewal, dict) and renewal.get("old_thumbprint") == self.old else None
        return next((r for r in self._own_records() if r.get("old_thumbprint") == self.old), None)

    def record_operations(self, record: dict[str, Any]) -> list[Operation]:
        """The module's own record of a renewal (used alone): the newest first, the oldest beyond the limit dropped."""
        if self.ride is not None:
            return []
        records = [record, *(r for r in self._own_records() if r.get("old_thumbprint") != record["old_thumbprint"])][:KEEP_RENEWALS]
        return [Operation("journal_write", {
            "name": RENEWALS_JOURNAL, "content": journal_text({"renewals": records}),
            "expected_sha256": (self.renewals_raw or {}).get("sha256") or "absent",
        })]

    def before(self, record: dict[str, Any] | None = None, backups: dict[str, str] | None = None) -> list[Operation]:
        """The run journal's write before a change, with the renewal record (the one made now, or the one read) and
        the backups the change is about to make."""
        ride = self.ride
        if ride is None:
            return []
        record = record or self.record
        if record is not None:
            ride = ride.with_content({"renewal": record})
        if backups:
            ride = ride.with_backups(backups)
        return ride.write_operations(self.raw, self.run_id, self.host_now())

    def wrote(self, operations: list[Operation]) -> None:
        """The module's later operations find the run journal as ``operations`` (from ``before``) left it."""
        self.raw = written_journal(operations, self.raw)
        self.written = self.written or bool(operations)

    def after(self) -> list[Operation]:
        """The run journal's removal once the swap is done (``absent``, ``during``)."""
        return self.ride.removal_operations(self.raw, self.run_id) if self.ride is not None else []


@dataclass
class Applied:
    """What the apply call did, for the result."""

    backups: dict[str, str]
    restarted: bool
    served: dict[str, Probe]
    imported: bool = False
    granted: bool = False
    removed_old: bool = False
    journaled: bool = False


def _describe_failure(error: XuError, request: SwapRequest, plan: SwapPlan) -> None:
    """Add to a failure what the host was left with."""
    # A PFX imported before the failure stays in the store: harmless, and worth knowing. Only one that was imported:
    # a write refused before the import (another run holds the journal) never reached it.
    refused_before = isinstance(error, StaleState) and "pfx_import" not in error.fields.get("prepared", [])
    if plan.import_needed and not refused_before and not (isinstance(error, OperationError) and error.op == "pfx_import"):
        error.fields.update(imported_thumbprint=plan.new, changed=True)
        # "Nothing had been changed" is about the settings: the import before them did happen.
        error.msg = error.msg.replace(
            "nothing had been changed", f"no setting had been changed, but {plan.new} had been imported from the PFX and stays in LocalMachine\\My",
        )
    if plan.renewed_now:
        error.msg += (
            f". Note that certreq had already renewed {request.old} as {plan.new} (recorded in the host's journal):"
            " run the module again to finish the swap without renewing again"
        )
        error.fields.update(renewed=True, changed=True)
    error.fields.setdefault("rolled_back", False)
    error.fields.setdefault("old_thumbprint", request.old)
    error.fields.setdefault("new_thumbprint", plan.new)


def _read_preparations(applied: Applied, plan: SwapPlan, results: list[OperationResult]) -> None:
    for operation, result in zip(plan.pre_ops, results, strict=True):
        value = result.value()
        if operation.op == "pfx_import":
            applied.imported = not value.get("already_present")
            if clean_thumbprint(value.get("thumbprint")) != plan.new:
                raise XuError(f"The host imported {value.get('thumbprint')} from the PFX, not {plan.new}, which the settings now name", changed=True)
        elif operation.op == "key_grant_read":
            applied.granted = bool(value.get("changed"))


def apply_plan(run: ModuleRun, request: SwapRequest, snapshot: Snapshot, plan: SwapPlan, journals: SwapJournal) -> Applied:
    """One remote call: the run's journal, preparations, writes, restart with probes, and the old certificate's removal.

    While the old certificate is in the store, a failed restart rolls the settings back
    (apply_changes). Once it is gone (win-acme deleted it, certreq archived it), going back
    would bind a certificate the service cannot load; then the restart runs without a
    rollback and a failure is reported with the settings left on the new certificate.

    The old certificate goes in the same call only after a restart whose every expected port is a TLS
    port: the host removes it only while each of them presents the new certificate and answers HTTP as
    the controller's verdict requires (``require_served``), so a removal never precedes a bad verdict.
    Otherwise (no restart, or a port the host cannot judge) it goes in a call of its own after the verdict.
    """
    new, tls, service = plan.new, snapshot.tls, snapshot.service
    if new is None or tls is None or service is None:
        raise XuError("Nothing to apply: the new certificate or the service's settings are unknown")
    settings_map = snapshot.profile.settings_map
    server_name = request.fqdn or snapshot.fqdn
    restart_plan = None
    if plan.restart:
        expected = expectations_for(tls_state_after(snapshot, plan.rewrites), settings_map)
        # Probed by name (fqdn, else the name the host reported): a server bound to its DNS name answers nothing else.
        restart_plan = RestartPlan(str(service["name"]), request.wait_timeout, expected, server_name)
    remove_in_call = plan.remove_old and restart_plan is not None and all(e.tls and e.thumbprint for e in restart_plan.expectations)
    stamp = backup_stamp(run.agent.host_now())
    changes = [rewrite.change() for rewrite in plan.rewrites]
    planned = {c.path: backup_path_for(c.path, stamp) for c in changes if request.backup and c.before is not None}
    before = journals.before(backups=planned)
    journals.wrote(before)
    after = journals.after()
    post_ops: list[Operation] = []
    if after and not (plan.remove_old and not remove_in_call):
        # The journals go once the host itself sees the new certificate served (after a restart), in the same call,
        # and before the old certificate: the renewal is done then, and a removal that fails must not keep them.
        if restart_plan is not None:
            post_ops += served_check(restart_plan.expectations, server_name)
        post_ops += after
    if remove_in_call and restart_plan is not None:
        require = served_requirement(restart_plan.expectations, server_name)
        post_ops += [
            Operation("cert_remove", {"store": STORE, "thumbprint": request.replaced, "require_served": require}),
            removal_event(run, request.replaced).operation(),
        ]
    try:
        outcome = apply_changes(
            run.agent,
            changes=changes,
            stamp=stamp,
            backup=request.backup,
            restart=restart_plan,
            pre_ops=[*before, *plan.pre_ops],
            post_ops=post_ops,
            previous=expectations_for(tls, settings_map),
            roll_back_restart=plan.can_roll_back,
            event=swap_event(run, request, plan, removed_in_call=remove_in_call),
            prune=[
                op for rewrite in plan.rewrites if rewrite.source.exists
                for op in prune_operations(rewrite.source.backups, protected=journals.ride.backups() if journals.ride else ())
            ],
        )
    except XuError as e:
        _describe_failure(e, request, plan)
        raise

    applied = Applied(
        backups={path: backup for path, backup in outcome.backups.items() if backup}, restarted=outcome.restarted, served=outcome.served,
        journaled=bool(before),
    )
    _read_preparations(applied, plan, outcome.pre_results[len(before):])
    for warning in outcome.warnings:
        run.warn(warning)
    if outcome.problem:
        raise XuError(
            f"{outcome.problem}. The settings were not rolled back: they would name {request.old}, which is no longer in"
            f" LocalMachine\\My, so the service could not start with them either. The settings name {new};"
            " check the service's event log and start it",
            changed=True, rolled_back=False, old_thumbprint=request.old, new_thumbprint=new,
            imported_thumbprint=new if plan.import_needed else None,
            served={name: probe.to_result() for name, probe in applied.served.items()},
        )
    _read_post_results(run, applied, request.old, post_ops, outcome.post_results)
    if plan.remove_old and not remove_in_call:
        # Without a restart the ports must still present what the settings name: never remove a certificate while
        # the service is down (another run's restart) or still serves the old one (its restart is pending).
        checks = restart_plan or RestartPlan(
            str(service["name"]), request.wait_timeout, expectations_for(tls_state_after(snapshot, plan.rewrites), settings_map), server_name,
        )
        applied.removed_old = remove_old(run, request.replaced, checks, after)
    return applied


def removal_event(run: ModuleRun, old: str) -> EventNote:
    return EventNote(
        module="xu_cert_swap", run_id=run.run_id, event_id=OLD_CERTIFICATE_REMOVED,
        summary=f"Old certificate {old} removed from LocalMachine\\My", details=(("old_thumbprint", old),),
    )


def _read_post_results(run: ModuleRun, applied: Applied, old: str | None, operations: list[Operation], results: list[OperationResult]) -> None:
    """What the operations after the change did: the old certificate's removal, the journal's; a failure is a warning."""
    for operation, result in zip(operations, results, strict=True):
        if operation.op == "cert_remove":
            if result.ok:
                applied.removed_old = bool((result.result or {}).get("removed"))
            else:
                run.warn(f"The old certificate {old} was left in the store: {error_text(result)}")
        elif operation.op == "journal_write" and not result.ok:
            run.warn(f"The journal {operation.args['name']} was kept: {error_text(result)}")


def swap_event(run: ModuleRun, request: SwapRequest, plan: SwapPlan, *, removed_in_call: bool = False) -> EventNote:
    """The host's event log entry for the apply call: what it changed (written last, so only when all of it was done)."""
    done = [f"{len(plan.rewrites)} settings file(s) now name it"] if plan.rewrites else []
    done += ["imported from a PFX"] if plan.import_needed else []
    done += ["the service account was granted Read on its key"] if plan.grant_needed else []
    done += ["the service was restarted"] if plan.restart else []
    done += ["the old certificate was removed once the new one was served"] if removed_in_call else []
    return EventNote(
        module="xu_cert_swap",
        run_id=run.run_id,
        event_id=CERTIFICATE_SWAPPED,
        summary=(f"Certificate {request.old} replaced by {plan.new}" if request.old else f"Certificate {plan.new} installed")
        + f": {'; '.join(done) or 'nothing to change'}",
        details=(
            ("old_thumbprint", request.old),
            ("new_thumbprint", plan.new),
            ("files", ", ".join(rewrite.source.full_path for rewrite in plan.rewrites) or None),
            ("source", request.source),
        ),
    )


def remove_old(run: ModuleRun, old: str, checks: RestartPlan, journals_after: list[Operation]) -> bool:
    """Remove the old certificate in its own call, once the swap is judged done; a failure is a warning.

    The host removes it only while each TLS port presents the certificate the settings now
    name (``require_served``), checked in the same call: with or without a restart of this run.
    The journals that end with the swap go first in that call: the swap itself is done.
    """
    require = served_requirement(checks.expectations, checks.server_name)
    note = removal_event(run, old)
    try:
        # The entry is skipped by the host when the removal fails (stop_on_error).
        *journaled, removal, entry = run.agent.call([
            *journals_after, Operation("cert_remove", {"store": STORE, "thumbprint": old, "require_served": require}), note.operation(),
        ])
    except XuError as e:
        run.warn(f"Whether the old certificate {old} was removed from the store is not known: {e.msg}")
        return False
    if journal_guard_failed(journaled):
        # Another run wrote the journal since this one did (it took the host over): the host is that run's now.
        raise StaleState(f"The journal was written by another run since it was read; the old certificate {old} was not removed")
    for operation, result in zip(journals_after, journaled, strict=True):
        if not result.ok:
            run.warn(f"The journal {operation.args['name']} was kept: {error_text(result)}")
    if not removal.ok:
        run.warn(f"The old certificate {old} was left in the store: {error_text(removal)}")
        return False
    for warning in event_warnings([entry]):
        run.warn(warning)
    return bool((removal.result or {}).get("removed"))


# -- the module ---------------------------------------------------------------------------------


def _result(run: ModuleRun, request: SwapRequest, plan: SwapPlan) -> dict[str, Any]:
    result: dict[str, Any] = {
        "changed": False,
        "old_thumbprint": request.old,
        "new_thumbprint": plan.new,
        "references": [reference.to_result() for reference in plan.references],
        "backup_files": {},
        "imported": False,
        "key_access_granted": False,
        "removed_old": False,
        "restarted": False,
        "served": {},
        "rolled_back": False,
    }
    if plan.new_certificate is not None:
        result["new_certificate"] = plan.new_certificate
    if run.diff and plan.rewrites and plan.new is not None:
        result["diff"] = [rewrite.change().diff() for rewrite in plan.rewrites]
    return result


def _finish(run: ModuleRun, request: SwapRequest, snapshot: Snapshot, plan: SwapPlan, journals: SwapJournal) -> dict[str, Any]:
    """Report, or change the host in one call and report."""
    result = _result(run, request, plan)
    if run.check_mode:
        if plan.has_work:
            result.update(
                changed=True, imported=plan.import_needed, key_access_granted=plan.grant_needed, removed_old=plan.remove_old, restarted=plan.restart,
            )
        return result
    # The run's journal alone is worth a call only when this module run has not written it yet (a renewal has).
    if not (plan.has_work or journals.after() or (journals.before() and not journals.written)):
        return result
    applied = apply_plan(run, request, snapshot, plan, journals)
    result.update(
        changed=bool(plan.rewrites or applied.imported or applied.granted or applied.removed_old or applied.restarted or applied.journaled),
        backup_files=applied.backups,
        imported=applied.imported,
        key_access_granted=applied.granted,
        removed_old=applied.removed_old,
        restarted=applied.restarted,
        served={name: probe.to_result() for name, probe in applied.served.items()},
    )
    return result


def renew(run: ModuleRun, old: StoreCertificate, journals: SwapJournal) -> str:
    """certreq renewal with the same key, in its own remote call, recorded on the host for later runs.

    With a run journal the record is written into it before certreq, in the same call (the run's lease too);
    alone, the module's own record is written after certreq, only when it succeeded (stop_on_error), so a
    failed renewal changes nothing.
    """
    record = {
        "module": "xtractuniversal.tls.xu_cert_swap",
        "old_thumbprint": old.thumbprint,
        "public_key_sha256": old.facts.public_key_sha256,
        "old_not_after": iso(old.facts.not_after),
        "renewed_at": iso(utc_now()),
    }
    before = journals.before(record)
    journals.wrote(before)
    own = journals.record_operations(record)
    results = run.agent.call([
        *before,
        # As the machine: certreq in the WinRM logon has no credentials to reach the CA, and a machine certificate is the computer's.
        Operation("cert_renew_reuse_key", {"thumbprint": old.thumbprint, "run_as": "machine", "timeout_s": CERTREQ_TIMEOUT_S}),
        *own,
    ])
    if journal_guard_failed(results[:len(before)]):
        raise StaleState(f"The journal {journals.ride.name if journals.ride else ''} was written by another run since it was read; nothing was renewed")
    for result in results[:len(before)]:
        result.value()
    try:
        renewed = results[len(before)].value()
    except OperationError as e:
        if e.error_type == "NotFound":
            # Gone since the host was read (another run renewed it): with a carried state, the module reads again.
            raise StaleState(f"Renewing {old.thumbprint} with the same key failed; nothing was changed: {e.msg}") from e
        raise XuError(f"Renewing {old.thumbprint} with the same key failed; nothing was changed: {e.msg}") from e
    if own and not results[-1].ok:
        run.warn(f"The renewal was not recorded in the host's journal ({error_text(results[-1])}); a later run may not recognise it")
    warn_sweep(run, renewed)
    return _thumbprint(renewed.get("thumbprint"), "the renewed certificate's thumbprint")


def choose_ca(run: ModuleRun, template: str) -> str:
    """The enterprise CA to enrol from when enroll.ca_config is not given: the one that publishes the template.

    certreq -submit without -config asks on a desktop which CA to use, and the SYSTEM task it runs in has none, so the host
    is asked (as the machine: a WinRM logon cannot reach AD) which CAs the forest has; several that publish it are the
    user's to choose from."""
    (listing,) = run.agent.call([Operation("ca_list", {"timeout_s": CA_LIST_TIMEOUT_S})])
    try:
        answer = listing.value()
    except OperationError as e:
        raise XuError(f"The host could not list the forest's enterprise CAs ({e.error_type}: {e.error_message}); set enroll.ca_config") from e
    warn_sweep(run, answer)
    cas = [ca for ca in answer.get("cas") or [] if isinstance(ca, dict) and isinstance(ca.get("config"), str)]
    publishing = [ca["config"] for ca in cas if template.casefold() in (str(t).casefold() for t in ca.get("templates") or [])]
    if len(publishing) == 1:
        return str(publishing[0])
    if not publishing:
        known = ", ".join(f"{ca['config']} ({', '.join(ca.get('templates') or []) or 'no templates'})" for ca in cas) or "none"
        raise XuError(f"No enterprise CA of the forest publishes the template {template} (CAs: {known}); nothing was changed")
    raise XuError(
        f"Several enterprise CAs publish the template {template}: {', '.join(publishing)}; set enroll.ca_config to one of them."
        " Nothing was changed"
    )


def warn_sweep(run: ModuleRun, answer: dict[str, Any]) -> None:
    """The host could not remove what interrupted runs left of their certreq tasks (docs/agent-protocol.md, The certreq tasks)."""
    error = answer.get("sweep_error")
    if isinstance(error, dict):
        run.warn(
            f"Scheduled tasks 'xtractuniversal.tls certreq ...' that interrupted runs left behind could not be removed"
            f" ({error.get('type')}: {error.get('message')}); a later run tries again"
        )


def _renewal_plan(
    run: ModuleRun, request: SwapRequest, snapshot: Snapshot, *, searched: list[SettingsFile], decision: RenewalDecision, new: str | None,
) -> SwapPlan:
    """The swap to the renewed certificate (``new`` None: not renewed yet, the references are only located)."""
    rewrites = [rewrite for f in searched if (rewrite := rewrite_references(f, request.replaced, new))]
    # certreq archives the old certificate: after a renewal in this run it no longer enumerates, and is not removed.
    remove = request.remove_old and request.old in snapshot.certificates and not decision.renew_now
    grant = _key_access(
        run, request, readable=decision.readable, thumbprint=new or request.replaced, identity=snapshot.service_identity,
        other_work=bool(rewrites or decision.renew_now or remove),
    )
    successor = decision.successor
    return SwapPlan(
        new=new,
        rewrites=rewrites,
        pre_ops=[
            *(certificates_present([new]) if new and rewrites and not decision.renew_now else []),
            *([Operation("key_grant_read", {"thumbprint": new, "account": snapshot.service_identity.sid})] if grant and new else []),
        ],
        remove_old=remove,
        restart=restart_wanted(request.restart, bool(rewrites)),
        can_roll_back=request.old in snapshot.certificates and not decision.renew_now,
        new_certificate=successor.facts.to_result(snapshot.now, request.fqdn or snapshot.fqdn) if successor else None,
        grant_needed=grant,
        renewed_now=decision.renew_now and new is not None,
    )


def _adopt(run: ModuleRun, request: SwapRequest, snapshot: Snapshot, searched: list[SettingsFile], journals: SwapJournal) -> dict[str, Any]:
    """new_thumbprint: auto. The swap to the best certificate in the store, or nothing when none qualifies."""
    fqdn = request.fqdn or snapshot.fqdn
    rules = replace(request.adoption or AdoptionRules(fqdn), fqdn=fqdn)
    old = snapshot.certificates.get(request.old) if request.old else None
    candidates = [Candidate.of(c.facts, c.has_private_key, fqdn) for c in snapshot.certificates.values()]
    adoption = choose(candidates, request.old, old.facts.not_after if old else None, rules, snapshot.now)
    if adoption.chosen is None and request.old is None:
        raise XuError(f"No certificate in LocalMachine\\My qualifies ({adoption.summary()})", adoption=adoption.to_result())
    if adoption.chosen is None:
        if old is None or old.facts.is_expired(snapshot.now):
            state = "is not in LocalMachine\\My" if old is None else f"expired {iso(old.facts.not_after)}"
            raise XuError(
                f"The old certificate {request.old} {state}, so the next restart fails, and no certificate in LocalMachine\\My can"
                f" replace it ({adoption.summary()}); give the new certificate with new_thumbprint, pfx_path or pfx_content",
                adoption=adoption.to_result(),
            )
        result = _result(run, request, as_requested(request, SwapPlan.nothing()))
        result["adoption"] = adoption.to_result()
        return result
    chosen = replace(request, new=adoption.chosen.thumbprint)
    result = _finish(run, chosen, snapshot, as_requested(chosen, plan_replacement(run, chosen, snapshot, searched, fqdn)), journals)
    result["adoption"] = adoption.to_result()
    return result


def enrol(run: ModuleRun, request: SwapRequest, snapshot: Snapshot, journals: SwapJournal) -> tuple[str, Snapshot]:
    """certreq enrolment of a new certificate, in its own remote call; the new thumbprint and the store as it is after it.

    The store is listed again in the same call: the swap judges the new certificate (validity, names, key access)
    as it judges one that was there before.
    """
    arguments = dict(request.enrolment or {})
    if not arguments.get("dns_names"):
        fqdn = request.fqdn or snapshot.fqdn
        if not fqdn:
            raise XuError("The host's DNS name is not known, so the certificate would name nothing; give enroll.dns_names or fqdn")
        arguments["dns_names"] = [fqdn]
    if arguments.get("ca_config") is None:
        arguments["ca_config"] = choose_ca(run, str(arguments["template"]))
    before = journals.before()
    journals.wrote(before)
    results = run.agent.call([*before, Operation("cert_enroll", arguments), Operation("cert_list", {"store": STORE, "thumbprints": None})])
    if journal_guard_failed(results[:len(before)]):
        raise StaleState(f"The journal {journals.ride.name if journals.ride else ''} was written by another run since it was read; nothing was enrolled")
    for result in results[:len(before)]:
        result.value()
    try:
        enrolled = results[len(before)].value()
    except OperationError as e:
        raise XuError(f"Enrolling a new certificate from the template {arguments['template']} failed; nothing was changed: {e.error_message}",
                      pending=e.error_type == "EnrollPending") from e
    warn_sweep(run, enrolled)
    new = _thumbprint(enrolled.get("thumbprint"), "the enrolled certificate's thumbprint")
    listing = results[len(before) + 1]
    if not listing.ok:
        raise XuError(f"The certificate {new} was enrolled, but the store could not be listed after it ({error_text(listing)});"
                      " nothing else was changed. Swap to it with new_thumbprint, or adopt it with new_thumbprint: auto", changed=True,
                      new_thumbprint=new)
    certificates = {c.thumbprint: c for raw in (listing.result or {}).get("certificates") or [] if (c := store_certificate(raw)) is not None}
    return new, replace(snapshot, certificates=certificates)


def _enrol(run: ModuleRun, request: SwapRequest, snapshot: Snapshot, searched: list[SettingsFile], journals: SwapJournal) -> dict[str, Any]:
    """enroll: a new certificate from the template, then the swap to it as to any certificate in the store."""
    fqdn = request.fqdn or snapshot.fqdn
    # The swap checks this too, but only after certreq ran: a mistyped old_thumbprint must not cost a certificate.
    if not request.allow_no_reference and not any(references_to(f, request.replaced) for f in searched):
        raise _no_reference_error(request.replaced, searched)
    if run.check_mode:
        result = _result(run, request, SwapPlan.nothing())
        result.update(changed=True, enrolled=True, restarted=request.update_references and request.restart != "never",
                      removed_old=request.remove_old and request.old in snapshot.certificates)
        return result
    new, after = enrol(run, request, snapshot, journals)
    chosen = replace(request, new=new)
    result = _finish(run, chosen, after, as_requested(chosen, plan_replacement(run, chosen, after, searched, fqdn)), journals)
    result.update(changed=True, enrolled=True)
    return result


def as_requested(request: SwapRequest, plan: SwapPlan) -> SwapPlan:
    """With ``update_references: false`` the module only makes the new certificate available (and readable): no settings
    are written, so nothing restarts and the old certificate stays."""
    return plan if request.update_references else replace(plan, rewrites=[], restart=False, remove_old=False)


def run_cert_swap(run: ModuleRun, files: ControllerFiles) -> dict[str, Any]:
    request = parse_request(run.params, files, utc_now())
    ride = run.journal
    if request.pfx is not None:
        for note in request.pfx.notes:
            run.warn(note)
        # Without fqdn only the EKU can be judged before the host tells its name.
        judge_names(run, request.pfx.leaf, request.fqdn, request.strict_san)
    profile = resolve_profile(run.params)
    renewals = RENEWALS_JOURNAL if request.source == SOURCE_RENEWAL and ride is None else None
    # Nothing here depends on what the ports serve before the change, so they are not probed.
    snapshot = read_snapshot(
        run.agent, profile, DEFAULT_GATE_GROUP, probe=False, journal_name=ride.name if ride else renewals, extra_files=request.extra_files,
    )
    journals = SwapJournal(
        request.old, ride, snapshot.journal if ride else None, snapshot.journal if renewals else None, run.run_id, host_now=run.agent.host_now,
    )
    require_installed(snapshot)
    # Refused before any change (a renewal included): a partial read, or settings whose serving cannot be checked.
    require_complete(snapshot)
    if ride is not None:
        ride.check_owner(snapshot.journal, run.run_id, snapshot.host_now)
    if snapshot.tls is not None:
        check_known(snapshot.tls, profile.settings_map)
    fqdn = request.fqdn or snapshot.fqdn
    searched = searched_files(run, snapshot, request)
    if request.source == SOURCE_ADOPTION:
        return _adopt(run, request, snapshot, searched, journals)
    if request.source == SOURCE_ENROLMENT:
        return _enrol(run, request, snapshot, searched, journals)
    if request.source != SOURCE_RENEWAL:
        return _finish(run, request, snapshot, as_requested(request, plan_replacement(run, request, snapshot, searched, fqdn)), journals)

    decision = decide_renewal(request, snapshot, searched, journals.record)
    if decision.successor is not None:
        plan = as_requested(request, _renewal_plan(run, request, snapshot, searched=searched, decision=decision, new=decision.successor.thumbprint))
        result = _finish(run, request, snapshot, plan, journals)
        result["renewed"] = False
        return result
    located = as_requested(request, _renewal_plan(run, request, snapshot, searched=searched, decision=decision, new=None))
    if run.check_mode:
        result = _result(run, request, located)
        result.update(changed=True, renewed=True, key_access_granted=located.grant_needed, restarted=located.restart)
        return result
    new = renew(run, snapshot.certificates[request.replaced], journals)
    plan = as_requested(request, _renewal_plan(run, request, snapshot, searched=searched, decision=decision, new=new))
    result = _finish(run, request, snapshot, plan, journals)
    result.update(changed=True, renewed=True)
    return result
