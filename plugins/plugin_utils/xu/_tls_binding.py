# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""xu_tls_binding: what the server serves, planned from one snapshot and applied in one call. Private to this collection.

The pure parts, each unit-tested on its own: ``parse_request`` (the options, before any
remote call), ``rewrite_settings`` (the new tls.json document through the settings map),
``judge_certificate`` (whether a certificate may be bound) and ``plan_binding`` (all of it
against a snapshot). ``run_tls_binding`` only reads, plans and hands the plan to ``_apply``.
"""

from __future__ import annotations

import copy
import datetime
from dataclasses import dataclass, field, replace
from typing import Any

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._certificate import iso, key_readable_by
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._hostname import clean_fqdn
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._thumbprint import ThumbprintError, clean_thumbprint
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.gate._gate import DEFAULT_GATE_GROUP
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._action_base import ModuleRun
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._agent import Operation
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import OperationError, RemoteError, XuError
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._eventlog import TLS_BINDING_CHANGED, EventNote
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._snapshot import (
    Probe,
    Snapshot,
    StoreCertificate,
    read_snapshot,
    require_complete,
    require_installed,
)
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.journal._journal import JournalRide, written_journal
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._apply import (
    ChangeFailed,
    Expectation,
    FileChange,
    RestartPlan,
    apply_changes,
    backup_path_for,
    backup_stamp,
    error_text,
    expectations_for,
    expectations_if_known,
    prune_operations,
    restart_wanted,
    served_check,
    settings_text,
)
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._profiles import (
    TLS_SETTINGS_FILE,
    WEB_PROTOCOLS,
    resolve_profile,
)
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._settings import (
    SettingsError,
    SettingsFile,
    TlsState,
    find_key,
    find_thumbprint_references,
    get_path,
    join_path,
    read_tls_state,
    split_path,
    thumbprint_or_none,
)

# The certificate reference of the assumed layout names its store beside the thumbprint.
STORE_LOCATION = ("StoreLocation", "LocalMachine")
STORE_NAME = ("StoreName", "My")
WEB_ROLE = "web server"
CONFIG_ROLE = "configuration server"
# The option that sets each role's certificate, named in messages so users know what to change.
ROLE_OPTIONS = {WEB_ROLE: "web_certificate", CONFIG_ROLE: "config_server_certificate"}


@dataclass(frozen=True)
class BindingRequest:
    """The module's options, checked; None means "leave as it is"."""

    web_protocol: str | None
    web_certificate: str | None
    config_server_certificate: str | None
    restart: str
    wait_timeout: int
    grant_key_access: bool
    backup: bool
    strict_san: bool
    fqdn: str | None


def parse_request(params: dict[str, Any], settings_map: dict[str, str]) -> BindingRequest:
    """The options as the plan needs them; XuError naming the problem and the fix, before any remote call."""
    thumbprints: dict[str, str | None] = {}
    for option in ("web_certificate", "config_server_certificate"):
        value = params.get(option)
        try:
            thumbprints[option] = None if value is None else clean_thumbprint(value, option)
        except ThumbprintError as e:
            raise XuError(f"{e}; copy the thumbprint from the certificate's Details tab or from Get-ChildItem Cert:\\LocalMachine\\My") from e
    if params["wait_timeout"] <= 0:
        raise XuError(f"wait_timeout must be a positive number of seconds, got {params['wait_timeout']}")
    check_settings_map(settings_map)
    return BindingRequest(
        web_protocol=params.get("web_protocol"),
        web_certificate=thumbprints["web_certificate"],
        config_server_certificate=thumbprints["config_server_certificate"],
        restart=params["restart"],
        wait_timeout=params["wait_timeout"],
        grant_key_access=bool(params["grant_key_access"]),
        backup=True,  # every write keeps the bytes it replaces: the module decides, never the caller
        strict_san=bool(params["strict_san"]),
        fqdn=clean_fqdn(params.get("fqdn")),
    )


def check_settings_map(settings_map: dict[str, str]) -> None:
    """Every path parses, and none lies inside another (setting one would overwrite the other)."""
    tokens: dict[str, list[str | int]] = {}
    for key, path in settings_map.items():
        try:
            tokens[key] = [t.lower() if isinstance(t, str) else t for t in split_path(path)]
        except SettingsError as e:
            raise XuError(f"settings_map.{key}: {e}; write paths as Section.Key, with [n] for list items") from e
    for key, outer in tokens.items():
        for other, inner in tokens.items():
            if key != other and len(outer) <= len(inner) and inner[:len(outer)] == outer:
                raise XuError(
                    f"settings_map.{key} ({settings_map[key]}) contains settings_map.{other} ({settings_map[other]});"
                    " each setting needs a path of its own"
                )


# -- the new tls.json ------------------------------------------------------------------------


def _set_path(document: dict[str, Any], path: str, value: str) -> tuple[Any, bool]:
    """Set ``path`` to ``value``, creating missing objects; returns the value's parent and whether it was created."""
    tokens = split_path(path)
    node: Any = document
    created = False
    for position, token in enumerate(tokens[:-1]):
        where = join_path(tokens[:position]) or "the document"
        if isinstance(token, int):
            if not isinstance(node, list) or token >= len(node):
                raise SettingsError(f"cannot set {path}: {where} has no item [{token}]; check settings_map")
            child = node[token]
            if child is None:
                child = node[token] = {} if isinstance(tokens[position + 1], str) else []
                created = True
        else:
            if not isinstance(node, dict):
                raise SettingsError(f"cannot set {path}: {where} is not an object; check settings_map")
            existing = find_key(node, token)
            child = node.get(existing) if existing is not None else None
            if child is None:
                child = node[existing or token] = {} if isinstance(tokens[position + 1], str) else []
                created = True
        node = child
    last = tokens[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise SettingsError(f"cannot set {path}: there is no item [{last}]; check settings_map")
        node[last] = value
    else:
        if not isinstance(node, dict):
            raise SettingsError(f"cannot set {path}: {join_path(tokens[:-1])} is not an object; check settings_map")
        node[find_key(node, last) or last] = value
    return node, created


def _is_reference_shape(path: str) -> bool:
    """Whether the path ends in ``Certificate.Thumbprint``: the certificate reference of the assumed layout."""
    tail = [token.lower() if isinstance(token, str) else token for token in split_path(path)[-2:]]
    return tail == ["certificate", "thumbprint"]


def _name_the_store(reference: Any, created: bool) -> None:
    """A certificate is bound from LocalMachine\\My: say so where the reference names a store."""
    if not isinstance(reference, dict):
        return
    for key, wanted in (STORE_LOCATION, STORE_NAME):
        existing = find_key(reference, key)
        if existing is not None:
            if not (isinstance(reference[existing], str) and reference[existing].lower() == wanted.lower()):
                reference[existing] = wanted
        elif created:
            reference[key] = wanted
    if created:
        # The store first, then the thumbprint: the order of the assumed layout (and of the Designer).
        ordered = sorted(reference.items(), key=lambda item: item[0] not in (STORE_LOCATION[0], STORE_NAME[0]))
        reference.clear()
        reference.update(ordered)


def rewrite_settings(document: Any, settings_map: dict[str, str], request: BindingRequest) -> tuple[dict[str, Any], list[str]]:
    """The new tls.json document and the settings that differ; ``document`` itself is not changed.

    A value already equal to the wanted one (thumbprints compared as thumbprints, protocols
    case-insensitively) is left in its present form, so a re-run writes nothing.
    """
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise SettingsError(f"tls.json holds a JSON {type(document).__name__}, not an object; check the file")
    new = copy.deepcopy(document)
    changed = []
    if request.web_protocol is not None:
        stored = WEB_PROTOCOLS[request.web_protocol]
        current = get_path(new, settings_map["web_protocol"])
        if not (isinstance(current, str) and current.lower() == stored.lower()):
            _set_path(new, settings_map["web_protocol"], stored)
            changed.append("web_protocol")
    for option, thumbprint in (("web_certificate", request.web_certificate), ("config_server_certificate", request.config_server_certificate)):
        if thumbprint is None:
            continue
        current = get_path(new, settings_map[option])
        if thumbprint_or_none(current) == thumbprint:
            continue
        reference, created = _set_path(new, settings_map[option], thumbprint)
        _name_the_store(reference, created and _is_reference_shape(settings_map[option]))
        changed.append(option)
    return new, changed


# -- judging certificates ---------------------------------------------------------------------


@dataclass
class Judgement:
    """What binding one certificate needs: failures stop the module, a grant is an operation to add."""

    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    grant: bool = False


def judge_certificate(
    roles: list[str],
    thumbprint: str,
    snapshot: Snapshot,
    *,
    fqdn: str | None,
    strict_san: bool,
    grant_key_access: bool,
) -> Judgement:
    """Whether the certificate may serve ``roles``, from the snapshot alone."""
    judgement = Judgement()
    role = " and ".join(roles)
    options = " / ".join(ROLE_OPTIONS[r] for r in roles)
    subject = f"the {role} certificate {thumbprint}"
    stored: StoreCertificate | None = snapshot.certificates.get(thumbprint)
    if stored is None:
        judgement.failures.append(
            f"{subject} is not in LocalMachine\\My on the host; import it there first, or set {options} to a certificate that is"
        )
        return judgement
    if not stored.has_private_key:
        judgement.failures.append(f"{subject} has no private key; import it from a PFX that holds the key")
        return judgement
    facts = stored.facts
    if facts.is_expired(snapshot.now):
        judgement.failures.append(f"{subject} expired on {iso(facts.not_after)}; set {options} to a valid certificate")
    elif facts.is_not_yet_valid(snapshot.now):
        judgement.failures.append(f"{subject} is not valid before {iso(facts.not_before)}; bind it from then on, or use another")
    readable = key_readable_by(snapshot.service_identity, stored.key, stored.has_private_key)
    if readable is False:
        if grant_key_access:
            judgement.grant = True
        else:
            judgement.failures.append(
                f"the service account {snapshot.service_account} cannot read the private key of {subject}, so the service"
                " would not start with it; set grant_key_access: true, or grant it Read on the key manually"
                " (certlm.msc, the certificate's All Tasks > Manage Private Keys)"
            )
    elif readable is None:
        judgement.warnings.append(f"whether the service account can read the private key of {subject} cannot be told from the host's answer")
    remedy = "; set strict_san: false to bind it anyway" if strict_san else ""
    doubts = []
    if facts.covers(fqdn) is False:
        names = ", ".join(facts.dns_names) or "no DNS names"
        doubts.append(f"{subject} does not name {fqdn} in its Subject Alternative Name ({names}), so clients will reject it;"
                      " set fqdn if clients use another name" + remedy)
    if not facts.server_auth:
        doubts.append(f"{subject} lacks the Server Authentication extended key usage" + remedy)
    (judgement.failures if strict_san else judgement.warnings).extend(doubts)
    return judgement


# -- the plan ---------------------------------------------------------------------------------


@dataclass
class BindingPlan:
    """Everything one run does, decided on the controller."""

    current: TlsState
    new: TlsState
    expected: list[Expectation]  # what the service serves once the plan is in force
    previous: list[Expectation] | None  # what it served before (None: a setting held an unknown value), checked after a rollback
    change: FileChange | None
    changed_settings: list[str]
    grants: list[str]
    restart_pending: bool
    restart: bool
    warnings: list[str]

    @property
    def changed(self) -> bool:
        return self.change is not None or bool(self.grants) or self.restart


def effective_state(state: TlsState) -> TlsState:
    """The state as XU reads it: a setting missing from an existing tls.json has XU's default."""
    if state.web_protocol_raw is None and state.web_protocol is None:
        state = replace(state, web_protocol="http_unrestricted")
    if state.config_server_authentication_raw is None and state.config_server_authentication is None:
        state = replace(state, config_server_authentication="windows_credentials")
    return state


def unmapped_references(tls_file: SettingsFile, settings_map: dict[str, str]) -> list[str]:
    """Warnings for thumbprints in tls.json that settings_map does not point at: a sign of another layout."""
    mapped = {settings_map[key].lower() for key in ("web_certificate", "config_server_certificate")}
    return [
        f"tls.json holds the thumbprint {reference.thumbprint} at {reference.path}, which settings_map does not name;"
        " if your version keeps a certificate there, map it with settings_map"
        for reference in find_thumbprint_references([tls_file])
        if reference.path.lower() not in mapped
    ]


def plan_binding(snapshot: Snapshot, request: BindingRequest) -> BindingPlan:
    """Decide everything from the snapshot; XuError (with every reason) when the request cannot be carried out."""
    require_installed(snapshot)
    require_complete(snapshot)
    settings_map = snapshot.profile.settings_map
    tls_file: SettingsFile | None = snapshot.files.get(TLS_SETTINGS_FILE)
    if tls_file is None or snapshot.tls is None:
        raise XuError(f"the host did not report {TLS_SETTINGS_FILE}")
    current = effective_state(snapshot.tls)
    try:
        document, changed_settings = rewrite_settings(tls_file.document(), settings_map, request)
    except SettingsError as e:
        raise XuError(str(e)) from e
    change = None
    new_files = dict(snapshot.files)
    if changed_settings:
        after = settings_text(document, tls_file.content if tls_file.exists else None)
        change = FileChange(tls_file.full_path, tls_file.content if tls_file.exists else None, after, tls_file.sha256, bom=tls_file.bom)
        new_files[TLS_SETTINGS_FILE] = replace(tls_file, exists=True, content=after)
    # Read back the way the current state was read, so the plan checks what XU will read.
    new = effective_state(read_tls_state(new_files, snapshot.profile))
    # What the service must serve afterwards; refused here, before any change, when a setting's value is unknown.
    expected = expectations_for(new, settings_map)

    failures: list[str] = []
    warnings = unmapped_references(tls_file, settings_map)
    if new.web_uses_tls and new.web_certificate is None:
        failures.append(
            f"the web server would use {WEB_PROTOCOLS[str(new.web_protocol)]} without a certificate; set web_certificate"
            " to the thumbprint of a certificate in LocalMachine\\My, or web_protocol: http_unrestricted"
        )
    if new.config_server_uses_tls and new.config_server_certificate is None:
        failures.append(
            "the configuration server uses Custom credentials (TLS encryption) without a certificate; set config_server_certificate"
        )
    if request.web_certificate is not None and not new.web_uses_tls:
        warnings.append(f"the web server certificate {request.web_certificate} is stored but not used while the web server serves plain HTTP")
    if request.config_server_certificate is not None and not new.config_server_uses_tls:
        warnings.append(
            f"the configuration server certificate {request.config_server_certificate} is stored but not used: the configuration"
            f" server's authentication is {new.config_server_authentication}, not custom_credentials_tls (this module does not change it)"
        )

    # Every certificate the new settings use, and every one given, is judged once, naming all its roles.
    roles: dict[str, list[str]] = {}
    if new.web_certificate is not None and (new.web_uses_tls or request.web_certificate is not None):
        roles.setdefault(new.web_certificate, []).append(WEB_ROLE)
    if new.config_server_certificate is not None and (new.config_server_uses_tls or request.config_server_certificate is not None):
        roles.setdefault(new.config_server_certificate, []).append(CONFIG_ROLE)
    grants = []
    fqdn = request.fqdn or snapshot.fqdn
    for thumbprint, certificate_roles in roles.items():
        judgement = judge_certificate(
            certificate_roles, thumbprint, snapshot, fqdn=fqdn, strict_san=request.strict_san, grant_key_access=request.grant_key_access
        )
        failures += judgement.failures
        warnings += judgement.warnings
        if judgement.grant:
            grants.append(thumbprint)
    if failures:
        raise XuError("; ".join(failures), rolled_back=False)

    # Only what the settings control counts (TLS on or off, the certificate): a /version that answers oddly
    # is no reason to restart on every run.
    pending = bool(snapshot.pending_mismatches(new))
    restart = restart_wanted(request.restart, change is not None or bool(grants) or pending)
    return BindingPlan(
        current=current,
        new=new,
        expected=expected,
        previous=expectations_if_known(current, settings_map),
        change=change,
        changed_settings=changed_settings,
        grants=grants,
        restart_pending=pending,
        restart=restart,
        warnings=warnings,
    )


# -- the module -------------------------------------------------------------------------------


def served_summary(probes: dict[str, Probe]) -> dict[str, str | None]:
    """Each answering port with the thumbprint it presents (None: plain HTTP or TCP)."""
    return {name: probe.certificate.thumbprint if probe.certificate else None for name, probe in probes.items() if probe.connected}


def binding_event(run_id: str, plan: BindingPlan) -> EventNote:
    """The host's event log entry for the apply call: the TLS settings it wrote."""
    done = [f"{plan.change.path} written"] if plan.change is not None else []
    # A certificate that changes is named with the one it replaces: the host's log tells old and new apart.
    done += [
        f"the {role} certificate {before or 'none'} replaced by {after}"
        for role, before, after in (
            ("web server", plan.current.web_certificate, plan.new.web_certificate),
            ("configuration server", plan.current.config_server_certificate, plan.new.config_server_certificate),
        )
        if after and before != after
    ]
    done += [f"Read granted on the key of {', '.join(plan.grants)}"] if plan.grants else []
    done += ["the service was restarted"] if plan.restart else []
    return EventNote(
        module="xu_tls_binding",
        run_id=run_id,
        event_id=TLS_BINDING_CHANGED,
        summary=f"TLS settings changed: {'; '.join(done) or 'nothing to change'}",
        details=(
            ("web_protocol", plan.new.web_protocol),
            ("web_certificate", plan.new.web_certificate),
            ("config_server_authentication", plan.new.config_server_authentication),
            ("config_server_certificate", plan.new.config_server_certificate),
        ),
    )


def _prune(snapshot: Snapshot, change: FileChange | None, journal: JournalRide | None) -> list[Operation]:
    """The oldest backups of the file the change writes, beyond the number kept; never one the run's journal names."""
    if change is None or change.before is None:
        return []
    source = next((f for f in snapshot.files.values() if f.full_path.lower() == change.path.lower()), None)
    return prune_operations(source.backups if source else (), protected=journal.backups() if journal else ())


def journal_operations(
    journal: JournalRide | None, current: dict[str, Any] | None, change: FileChange | None, stamp: str, run_id: str,
    *, host_now: datetime.datetime,
) -> tuple[list[Operation], list[Operation]]:
    """The run journal's write before the change and its removal after it. The write names the backup the change makes
    (``change`` None: none is made), so a later run finds the bytes from before the run even when this one dies before
    it learns the call's answer."""
    if journal is None:
        return [], []
    if change is not None and change.before is not None:
        journal = journal.with_backups({change.path: backup_path_for(change.path, stamp)})
    writes = journal.write_operations(current, run_id, host_now)
    return writes, journal.removal_operations(written_journal(writes, current), run_id)


def run_tls_binding(run: ModuleRun) -> dict[str, Any]:
    profile = resolve_profile(run.params)
    request = parse_request(run.params, profile.settings_map)
    run_id = run.run_id  # checked before the host is read
    journal = run.journal
    snapshot = read_snapshot(
        run.agent, profile, DEFAULT_GATE_GROUP, server_name=request.fqdn, journal_name=journal.name if journal else None,
    )
    if journal is not None:
        journal.check_owner(snapshot.journal, run_id, snapshot.host_now)
    plan = plan_binding(snapshot, request)
    for warning in plan.warnings:
        run.warn(f"{run.host}: {warning}" if run.host else warning)

    result: dict[str, Any] = {
        "changed": plan.changed,
        "web_protocol": plan.new.web_protocol,
        "web_certificate": plan.new.web_certificate,
        "config_server_certificate": plan.new.config_server_certificate,
        "config_server_authentication": plan.new.config_server_authentication,
        "backup_file": None,
        "key_access_granted": plan.grants,
        "restarted": plan.restart,
        "restart_required": not plan.restart and (plan.change is not None or bool(plan.grants) or plan.restart_pending),
        "served": served_summary(snapshot.probes),
        "rolled_back": False,
    }
    if run.diff and plan.change is not None:
        result["diff"] = plan.change.diff()
    stamp = backup_stamp(run.agent.host_now())
    writes, removals = journal_operations(
        journal, snapshot.journal, plan.change if request.backup else None, stamp, run_id, host_now=run.agent.host_now(),
    )
    if run.check_mode or not (plan.changed or writes or removals):
        return result

    service_name = str((snapshot.service or {}).get("name"))
    server_name = request.fqdn or snapshot.fqdn
    try:
        outcome = apply_changes(
            run.agent,
            changes=[plan.change] if plan.change is not None else [],
            stamp=stamp,
            backup=request.backup,
            # Probed by name (fqdn, else the name the host reported): a server bound to its DNS name answers nothing else.
            restart=RestartPlan(service_name, request.wait_timeout, plan.expected, server_name) if plan.restart else None,
            pre_ops=[
                *writes,
                *(Operation("key_grant_read", {"thumbprint": t, "account": snapshot.service_identity.sid}) for t in plan.grants),
            ],
            # The journal goes only once the host itself sees the restarted service serve what it should.
            post_ops=[*(served_check(plan.expected, server_name) if plan.restart else []), *removals] if removals else [],
            previous=plan.previous,
            event=binding_event(run_id, plan) if plan.changed else None,
            prune=_prune(snapshot, plan.change, journal),
        )
    except ChangeFailed as e:
        # Files were written when a rollback restored them or could not run; granted key access stays either way.
        written = "restored_files" in e.fields or "rollback_error" in e.fields
        e.fields.setdefault("rolled_back", False)
        e.fields["changed"] = bool(plan.grants) or (written and not e.fields["rolled_back"])
        e.fields["backup_file"] = None
        if written and plan.change is not None and request.backup and plan.change.before is not None:
            e.fields["backup_file"] = backup_path_for(plan.change.path, stamp)
        raise
    except OperationError as e:
        # A preparation failed (stop_on_error): nothing after it ran.
        e.fields.update(rolled_back=False, changed=False)
        raise
    except RemoteError as e:
        # No answer to the apply call: what the host did is unknown.
        e.msg += "; whether the change was applied is not known: check the host with xtractuniversal.tls.xu_tls_info"
        e.fields["rolled_back"] = False
        raise
    if plan.change is not None:
        result["backup_file"] = outcome.backups.get(plan.change.path)
    result["changed"] = True
    if outcome.restarted:
        result["served"] = served_summary(outcome.served)
    if removals and not (outcome.post_results and outcome.post_results[-1].ok):
        failed = next((r for r in outcome.post_results if not r.ok), None)
        run.warn(f"The journal {journal.name if journal else ''} was kept: {error_text(failed) if failed else 'not removed'}")
    for warning in outcome.warnings:
        run.warn(warning)
    return result
