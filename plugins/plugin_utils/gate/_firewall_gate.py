# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""xu_firewall_gate: close and open the maintenance gate. Private to this collection.

A closed gate is one Windows Firewall block rule in the gate's own rule group. Windows
applies block rules before allow rules, so "block everyone except ``allow_from``" cannot
be an allow rule: the block rule's remote addresses are the complement of ``allow_from``,
computed here. Rules outside the group are never read or written.

One remote call reads (the port settings when needed, the group's rules, the auto-open
task); one more applies the plan and reads the result back.

A stored rule is not necessarily in effect: a Windows Firewall profile that is off filters
nothing, and group policy can make the firewall ignore locally created rules. A closed gate
is therefore refused while the host's profiles say it would have no effect, and after
applying, its rule must be listed among the group's rules in the active store.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._certificate import iso
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.gate._addresses import (
    AddressError,
    block_all_except,
    same_addresses,
    whole_families,
)
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.gate._gate import (
    MAX_AUTO_OPEN_MINUTES,
    auto_open_task_name,
    block_rule_name,
    check_group_name,
    gate_summary,
    hold_group_name,
)
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._action_base import COLLECTION, ModuleRun
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._agent import Operation, OperationResult
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import XuError
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._eventlog import GATE_CLOSED, GATE_OPENED, EventNote
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._host_state import StaleState
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._snapshot import discover_operation, probe_operation, settings_files_of
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.journal._journal import JournalRide, journal_guard_failed, written_journal
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.journal._lease import DEFAULT_JOURNAL
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._apply import event_warnings
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._profiles import (
    ProductProfile,
    resolve_profile,
)
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._settings import SettingsError, read_tls_state

# Closing one of these would cut the connection Ansible manages the host through, and with
# it the way to open the gate again before the auto-open task does.
MANAGEMENT_PORTS: dict[int, str] = {22: "SSH", 5985: "WinRM over HTTP", 5986: "WinRM over HTTPS"}
MAX_PORT = 65535


@dataclass(frozen=True)
class GateRequest:
    """The module's options, checked; nothing in it has touched the host."""

    state: str
    group: str
    ports: tuple[int, ...] | None  # None: the product's ports, as the host's settings say
    allow_from: tuple[str, ...]
    blocked_remote_addresses: tuple[str, ...]
    auto_open_after: float  # minutes; 0: no auto-open task

    @property
    def task_name(self) -> str:
        return auto_open_task_name(self.group)


@dataclass(frozen=True)
class GateState:
    """The group's rules and the auto-open task, as the host reports them.

    ``active_rules`` and ``profiles`` are None when the host's answer does not have them (an
    older agent), which never counts as in effect.
    """

    rules: list[dict[str, Any]]
    task: dict[str, Any] | None
    active_rules: list[str] | None = None
    profiles: list[dict[str, Any]] | None = None

    def summary(self) -> dict[str, Any]:
        summary = gate_summary(self.rules, self.task)
        return {key: summary[key] for key in ("state", "rules", "auto_open")}


@dataclass(frozen=True)
class GatePlan:
    """What to change on the host; ``rules`` None leaves the group's rules as they are.

    ``deadline`` is when the auto-open task to register will run, by the controller's estimate of the host's clock
    (what check mode reports); the host sets the real one from its own clock.
    """

    rules: list[dict[str, Any]] | None
    register_task: dict[str, Any] | None
    remove_task: bool
    deadline: str | None = None

    @property
    def changed(self) -> bool:
        return self.rules is not None or self.register_task is not None or self.remove_task

    def operations(self, request: GateRequest) -> list[Operation]:
        """The apply call, in the order that never leaves a closed gate without its way back."""
        operations = []
        # The auto-open task exists before the gate closes: if fw_set fails or the controller
        # dies after it, the host still reopens by itself.
        if self.register_task is not None:
            operations.append(Operation("task_register", self.register_task))
        if self.rules is not None:
            operations.append(Operation("fw_set", {"group": request.group, "rules": self.rules}))
        # And it goes only after the rules are replaced, for the same reason.
        if self.remove_task:
            operations.append(Operation("task_remove", {"name": request.task_name}))
        return [*operations, *state_operations(request)]

    def predicted(self, current: GateState, request: GateRequest) -> GateState:
        """The state the host will report after this plan (what check mode returns)."""
        rules = current.rules if self.rules is None else self.rules
        # Which rules will be in effect is known only once they are written.
        active_rules = current.active_rules if self.rules is None else None
        task = current.task
        if self.register_task is not None:
            task = {
                "name": request.task_name,
                "state": "Ready",
                "next_run_utc": self.deadline,
                "description": self.register_task["description"],
            }
        elif self.remove_task:
            task = None
        return dataclasses.replace(current, rules=rules, task=task, active_rules=active_rules)


# -- options --------------------------------------------------------------------------------


def connection_ports(candidates: Iterable[object]) -> set[int]:
    """The ports among ``candidates`` (ansible_port, the play context's port) that are port numbers."""
    ports = set()
    for candidate in candidates:
        if isinstance(candidate, bool):
            continue
        if isinstance(candidate, int):
            ports.add(candidate)
        elif isinstance(candidate, str) and candidate.strip().isdigit():
            ports.add(int(candidate.strip()))
    return {port for port in ports if 0 < port <= MAX_PORT}


def check_ports(ports: Sequence[int], in_use: set[int], source: str) -> tuple[int, ...]:
    """The ports, sorted and without duplicates; XuError for a port the gate must not close."""
    for port in ports:
        if not 0 < port <= MAX_PORT:
            raise XuError(f"{source}: {port} is not a TCP port; give ports from 1 to {MAX_PORT}")
    for port in sorted(set(ports)):
        if port in MANAGEMENT_PORTS:
            raise XuError(
                f"{source}: {port} is the {MANAGEMENT_PORTS[port]} management port; closing it would cut Ansible off"
                f" from the host (and from opening the gate again). Remove {port} from ports"
            )
        if port in in_use:
            raise XuError(
                f"{source}: {port} is the port this play connects to the host on (ansible_port); closing it would cut"
                f" Ansible off from the host. Remove {port} from ports"
            )
    return tuple(sorted(set(ports)))


def gate_request(params: dict[str, Any], in_use: set[int]) -> GateRequest:
    """Check every option before anything reaches the host; XuError names the problem and the fix."""
    try:
        group = check_group_name(params["rule_group"])
    except ValueError as e:
        raise XuError(f"rule_group: {e}; choose a name of that form") from e
    state = params["state"]

    ports: tuple[int, ...] | None = None
    if params.get("ports") is not None:
        ports = check_ports(params["ports"], in_use, "ports")
        if not ports and state == "closed":
            raise XuError("ports is empty: a closed gate must block at least one port; leave ports out to close the product's ports")

    allow_from = tuple(str(spec).strip() for spec in params.get("allow_from") or [])
    try:
        blocked = tuple(block_all_except(allow_from))
    except AddressError as e:
        raise XuError(f"allow_from: {e}; give addresses, CIDR networks (10.0.0.0/8), address/netmask pairs or first-last ranges") from e
    if not blocked:
        raise XuError("allow_from covers every address, so a closed gate would block nobody; list only the hosts that keep access")
    admitted = whole_families(allow_from)
    if admitted and state == "closed":
        # A gate reported closed must be closed to every client: one family left open is not a closed gate.
        raise XuError(
            f"allow_from admits every {' and every '.join(admitted)} address, so a closed gate would not close for"
            f" {'those' if len(admitted) > 1 else admitted[0]} clients; list only the hosts that keep access"
        )

    auto_open_after = float(params["auto_open_after"])
    if not math.isfinite(auto_open_after) or auto_open_after < 0:
        raise XuError(f"auto_open_after is {params['auto_open_after']}; give 0 (no automatic reopening) or a positive number of minutes")
    if auto_open_after > MAX_AUTO_OPEN_MINUTES:
        raise XuError(
            f"auto_open_after is {auto_open_after:.10g}, more than {MAX_AUTO_OPEN_MINUTES} minutes (7 days); give at most"
            f" {MAX_AUTO_OPEN_MINUTES}, or 0 for a gate that stays closed until it is opened"
        )

    return GateRequest(state, group, ports, allow_from, blocked, auto_open_after)


def hold_request(params: dict[str, Any], gate: GateRequest, in_use: set[int]) -> GateRequest | None:
    """The hold: ports closed for everyone, without a deadline, in a group of their own that the gate's auto-open task leaves alone."""
    hold = params.get("hold")
    if not hold:
        return None
    try:
        group = check_group_name(hold.get("rule_group") or hold_group_name(gate.group))
    except ValueError as e:
        raise XuError(f"hold.rule_group: {e}; choose a name of that form") from e
    if group == gate.group:
        raise XuError("hold.rule_group is the gate's own rule_group; the hold needs a group the gate's auto-open task does not remove")
    ports = None
    if hold["state"] == "closed":
        ports = check_ports(hold.get("ports") or [], in_use, "hold.ports")
        if not ports:
            raise XuError("hold.ports is empty: a closed hold must block at least one port")
    return GateRequest(hold["state"], group, ports, (), tuple(block_all_except(())), 0.0)


# -- reading ----------------------------------------------------------------------------------


def state_operations(request: GateRequest) -> list[Operation]:
    return [Operation("fw_get", {"group": request.group}), Operation("task_get", {"name": request.task_name})]


def read_operations(request: GateRequest, profile: ProductProfile) -> list[Operation]:
    """The read call: the port settings only when the gate closes the product's own ports."""
    operations = []
    if request.state == "closed" and request.ports is None:
        # The same read as every module's (the port files are among the settings files), so a carried state answers it.
        operations.append(discover_operation(profile, profile.settings_files))
    return [*operations, *state_operations(request)]


def gate_state(results: Sequence[OperationResult]) -> GateState:
    """From a call ending in fw_get and task_get; OperationError for the first failed operation."""
    values = [result.value() for result in results]
    firewall = values[-2]
    active = firewall.get("active_rules")
    profiles = firewall.get("profiles")
    return GateState(
        list(firewall.get("rules") or []),
        values[-1].get("task"),
        [str(name) for name in active] if isinstance(active, list) else None,
        [dict(profile) for profile in profiles] if isinstance(profiles, list) and all(isinstance(p, dict) for p in profiles) else None,
    )


def product_ports(discover: dict[str, Any], profile: ProductProfile, run: ModuleRun) -> list[int]:
    """Web HTTP, web HTTPS and configuration server ports, as the host's settings files say."""
    if discover.get("service") is None and not profile.install_dir_explicit:
        run.warn(
            f"No service with display name {profile.service_display_name!r} on the host, so its port settings were not read;"
            f" closing the {profile.title} defaults {profile.ports()}. Set ports to close others"
        )
    try:
        tls = read_tls_state(settings_files_of(discover), profile)
    except SettingsError as e:
        raise XuError(f"{e}; set ports to the ports to close") from e
    ports = [tls.web_http_port, tls.web_https_port]
    if tls.config_server_port is not None:
        ports.append(tls.config_server_port)
    return ports


# -- comparing ----------------------------------------------------------------------------------


def port_set(entries: Iterable[object]) -> frozenset[int] | None:
    """The ports a rule's local_ports name (``8064-8065`` is a range); None for keywords like ``Any``."""
    ports: set[int] = set()
    for entry in entries:
        first, dash, last = str(entry).strip().partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            return None
        ports.update(range(int(first), int(last if dash else first) + 1))
    return frozenset(ports)


def _enabled(value: object) -> bool:
    # The protocol says bool; a string "True" is what PowerShell gives when a value is not converted.
    return value is True or (isinstance(value, str) and value.casefold() == "true")


def same_rule(current: dict[str, Any], desired: dict[str, Any]) -> bool:
    """Whether the host's rule is the desired one, however Windows writes ports and addresses."""
    return (
        str(current.get("name") or "").casefold() == desired["name"].casefold()
        and current.get("display_name") == desired["display_name"]
        and str(current.get("direction") or "").casefold() == desired["direction"].casefold()
        and str(current.get("action") or "").casefold() == desired["action"].casefold()
        and _enabled(current.get("enabled")) == desired["enabled"]
        and str(current.get("protocol") or "").casefold() == desired["protocol"].casefold()
        and port_set(current.get("local_ports") or []) == port_set(desired["local_ports"])
        and same_addresses(current.get("remote_addresses") or [], desired["remote_addresses"])
    )


def same_rules(current: list[dict[str, Any]], desired: list[dict[str, Any]]) -> bool:
    return len(current) == len(desired) and all(same_rule(c, d) for c, d in zip(current, desired, strict=True))


# -- in effect ----------------------------------------------------------------------------------

PROFILE_KEYS = ("name", "enabled", "local_rules_applied")


def _listed(names: Sequence[str]) -> str:
    """``Public``, ``Private and Public``, ``Domain, Private and Public``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def effect_unknown(state: GateState) -> str | None:
    """Why the host's answer does not say whether the group's rules are in effect, or None when it does."""
    missing = [key for key, value in (("profiles", state.profiles), ("active_rules", state.active_rules)) if value is None]
    if missing:
        return (
            f"The host's answer does not say whether the gate is in effect: its fw_get result has no {' and no '.join(missing)}"
            " (an older agent?)"
        )
    if not state.profiles or not all(all(key in profile for key in PROFILE_KEYS) for profile in state.profiles):
        return (
            "The host's answer does not say whether the gate is in effect: its fw_get result lists no Windows Firewall profiles"
            f" with {', '.join(PROFILE_KEYS)}"
        )
    return None


def profile_problems(profiles: Sequence[dict[str, Any]]) -> list[str]:
    """Why a block rule of the group would have no effect, one sentence per cause; empty when every profile applies it.

    The agent cannot tell which profile a connection arrives on (that depends on the network it
    comes through), so one profile that filters nothing, or ignores local rules, may be the one
    every client uses: any of them fails the gate.
    """
    off = [str(profile["name"]) for profile in profiles if not _enabled(profile["enabled"])]
    ignored = [str(profile["name"]) for profile in profiles if not _enabled(profile["local_rules_applied"])]
    problems = []
    if off:
        are, it = ("profiles are", "them") if len(off) > 1 else ("profile is", "it")
        problems.append(
            f"Windows Firewall's {_listed(off)} {are} off, so a block rule would have no effect on connections arriving on {it};"
            f" turn {it} on (Set-NetFirewallProfile -Profile {','.join(off)} -Enabled True)"
        )
    if ignored:
        plural = "s" if len(ignored) > 1 else ""
        problems.append(
            f"group policy ignores local firewall rules (AllowLocalFirewallRules False) on the {_listed(ignored)} profile{plural},"
            " so the gate's block rule, a local rule, would have no effect there; have the policy allow local firewall rules"
            " (AllowLocalFirewallRules True or not configured)"
        )
    return problems


def effect_problem(state: GateState) -> str | None:
    """Why a closed gate would not be in effect on the host, judged from its profiles; None when it would be."""
    unknown = effect_unknown(state)
    if unknown is not None:
        return unknown
    problems = profile_problems(state.profiles or [])
    if problems:
        return (
            f"The gate cannot take effect: {'; and '.join(problems)}. A connection may arrive on any profile, so every profile"
            " must be on and apply local rules"
        )
    return None


def inactive_problem(request: GateRequest, state: GateState, desired: list[dict[str, Any]]) -> str | None:
    """Why the closed gate the host reports is not in effect, or None when every rule of it is in the active store."""
    problem = effect_problem(state)
    if problem is not None:
        return problem
    active = {name.casefold() for name in state.active_rules or []}
    missing = [repr(rule["name"]) for rule in desired if str(rule["name"]).casefold() not in active]
    if missing:
        rules, them = (f"rules {_listed(missing)} are", "them") if len(missing) > 1 else (f"rule {missing[0]} is", "it")
        return (
            f"The gate's {rules} stored in group {request.group!r} but not in effect: Windows Firewall's active store does not"
            f" list {them}, so the ports are not blocked. Check for a group policy or another firewall product that overrides"
            " the host's local rules"
        )
    return None


# -- planning -----------------------------------------------------------------------------------


def block_rule(request: GateRequest, ports: Sequence[int], title: str) -> dict[str, Any]:
    return {
        "name": block_rule_name(request.group),
        "display_name": f"{title} maintenance gate ({COLLECTION})",
        "direction": "Inbound",
        "action": "Block",
        "enabled": True,
        "protocol": "TCP",
        "local_ports": [str(port) for port in ports],
        "remote_addresses": list(request.blocked_remote_addresses),
    }


def auto_open_deadline(host_now: datetime.datetime, minutes: float) -> str:
    """``host_now`` plus ``minutes``, rounded up to the whole second, as the host sets its trigger."""
    deadline = host_now + datetime.timedelta(minutes=minutes)
    if deadline.microsecond:
        deadline += datetime.timedelta(microseconds=1_000_000 - deadline.microsecond)
    return iso(deadline)


def task_registration(request: GateRequest) -> dict[str, Any]:
    """The auto-open task: the host runs it ``auto_open_after`` from its own now (a time from the controller's clock
    would be off by however far the host's clock is)."""
    delay_s = round(request.auto_open_after * 60, 3)
    description = json.dumps(
        {"collection": COLLECTION, "purpose": "reopen the maintenance gate", "group": request.group, "after_s": delay_s},
        separators=(",", ":"),
    )
    return {"name": request.task_name, "delay_s": delay_s, "fw_group_to_remove": request.group, "description": description}


def plan_gate(request: GateRequest, current: GateState, desired: list[dict[str, Any]], host_now: datetime.datetime) -> GatePlan:
    """What to change so the host has the ``desired`` rules and the auto-open task it should; ``host_now`` is the
    controller's estimate of the host's clock (only for the deadline check mode reports)."""
    rules = None if same_rules(current.rules, desired) else desired
    if request.state == "open":
        return GatePlan(rules, register_task=None, remove_task=current.task is not None)
    if request.auto_open_after == 0:
        return GatePlan(rules, register_task=None, remove_task=current.task is not None)
    # The deadline is set when the gate closes: re-running the play keeps it, so an
    # abandoned gate still opens in time. A task left from an earlier, reopened gate is renewed.
    already_closed = current.summary()["state"] == "closed"
    if current.task is not None and already_closed:
        return GatePlan(rules, register_task=None, remove_task=False)
    return GatePlan(rules, task_registration(request), remove_task=False, deadline=auto_open_deadline(host_now, request.auto_open_after))


def verify(request: GateRequest, plan: GatePlan, final: GateState, desired: list[dict[str, Any]], registered_at: str | None = None) -> None:
    """XuError when the host reports another state than the one just applied; ``registered_at`` is the trigger the host
    said it registered, which its Task Scheduler must report as the task's next run (a trigger shifted by a time zone
    would show here)."""
    if not same_rules(final.rules, desired):
        raise XuError(
            f"The host reports other rules in group {request.group!r} than were just set; the gate is {final.summary()['state']}",
            rules=final.rules,
        )
    if plan.register_task is not None and final.task is None:
        raise XuError(f"The auto-open task {request.task_name!r} was registered but the host does not report it", rules=final.rules)
    if plan.register_task is not None and final.task is not None and registered_at is not None and final.task.get("next_run_utc") != registered_at:
        raise XuError(
            f"The auto-open task {request.task_name!r} was registered for {registered_at} (the host's clock), but the host's Task"
            f" Scheduler reports its next run at {final.task.get('next_run_utc')}: the gate would not reopen when planned."
            " The gate's rules stay as set; open the gate (state=open) and report this",
            rules=final.rules,
        )
    if plan.remove_task and final.task is not None:
        raise XuError(f"The auto-open task {request.task_name!r} was removed but the host still reports it", rules=final.rules)


def apply_failure(results: Sequence[OperationResult]) -> XuError:
    """The first failed operation, with what the host had already done in the same call."""
    failed = next(r for r in results if not r.ok)
    done = [r.op for r in results if r.ok and r.op in ("task_register", "fw_set", "task_remove")]
    error = failed.error or {}
    msg = f"{failed.op} failed on the host: {error.get('type', 'Error')}: {error.get('message', '')}"
    msg += f". Already done on the host: {', '.join(done)}" if done else ". Nothing was changed before it"
    if "task_register" in done:
        msg += "; the auto-open task stays registered and removes the gate's rules at its deadline"
    return XuError(msg, operations=[{"op": r.op, "status": r.status} for r in results])


# -- the module -----------------------------------------------------------------------------------


def gate_event(run_id: str, request: GateRequest, plan: GatePlan, ports: tuple[int, ...], hold: GateRequest | None = None) -> EventNote:
    """The host's event log entry for the apply call: the gate's rules, its auto-open task, and the hold."""
    closed = request.state == "closed"
    if closed:
        spared = ", ".join(request.allow_from) or "no one but the host itself"
        summary = f"Maintenance gate '{request.group}' closed: ports {', '.join(map(str, ports))} admit {spared}"
    else:
        summary = f"Maintenance gate '{request.group}' opened"
    if hold is not None and hold.state == "closed":
        summary += f"; ports {', '.join(map(str, hold.ports or ()))} held closed for everyone in '{hold.group}'"
    elif hold is not None:
        summary += f"; hold '{hold.group}' released"
    after = f"{plan.register_task['delay_s']:g} s" if plan.register_task is not None else None
    return EventNote(
        module="xu_firewall_gate",
        run_id=run_id,
        event_id=GATE_CLOSED if closed else GATE_OPENED,
        summary=summary,
        details=(
            ("group", request.group), ("auto_open_after", after), ("auto_open_task_removed", "yes" if plan.remove_task else None),
            ("hold_group", hold.group if hold is not None else None),
        ),
    )


@dataclass
class _Part:
    """One rule group of the call (the gate, or the hold), with what was read and what is planned."""

    request: GateRequest
    current: GateState
    ports: tuple[int, ...]
    desired: list[dict[str, Any]]
    plan: GatePlan


def _plan_part(request: GateRequest, current: GateState, ports: tuple[int, ...], title: str, host_now: datetime.datetime) -> _Part:
    closed = request.state == "closed"
    desired = [block_rule(request, ports, title)] if closed else []
    return _Part(request, current, ports, desired, plan_gate(request, current, desired, host_now))


def _part_result(part: _Part, final: GateState) -> dict[str, Any]:
    closed = part.request.state == "closed"
    return {
        **final.summary(),
        "ports": list(part.ports),
        "allow_from": list(part.request.allow_from) if closed else [],
        "blocked_remote_addresses": list(part.request.blocked_remote_addresses) if closed else [],
        "profiles": final.profiles,
    }


def _apply_parts(
    run: ModuleRun, parts: list[_Part], journal_writes: list[Operation], journal_removals: list[Operation], entry: EventNote | None,
) -> dict[str, GateState]:
    """One call: the run's journal first (its lease before the change), its removal after; the hold closes before the
    gate and opens after it; the event log entry goes last. The state each group reports after it."""
    operations = list(journal_writes)
    closing = parts[-1].request.state == "closed"
    spans = []
    for part in parts if closing else list(reversed(parts)):
        part_ops = part.plan.operations(part.request) if part.plan.changed else []
        spans.append((part, len(operations), len(part_ops)))
        operations += part_ops
    removals_at = len(operations)
    operations += journal_removals
    applied = run.agent.call([*operations, *([entry.operation()] if entry is not None else [])])
    if journal_guard_failed(applied[:len(journal_writes)] + applied[removals_at:len(operations)]):
        raise StaleState("The run's journal was written by another run since it was read; nothing more was changed")
    if not all(result.ok for result in applied[:len(operations)]):
        raise apply_failure(applied[:len(operations)])
    for warning in event_warnings(applied[len(operations):]):
        run.warn(warning)
    finals = {}
    for part, start, count in spans:
        if count:
            finals[part.request.group] = gate_state(applied[start:start + count])
            registered = applied[start].value().get("run_at_utc") if part.plan.register_task is not None else None
            verify(part.request, part.plan, finals[part.request.group], part.desired, registered)
    return finals


def refuse_plain_http_release(run: ModuleRun, held: GateState) -> None:
    """XuError when a port the hold keeps closed serves plain HTTP: releasing it would expose that to every client.

    The renew engine releases its hold only once it has seen TLS served; a release by hand is checked here, in a read of
    its own (the ports are known only from the hold's rules).
    """
    ports = sorted({port for rule in held.rules if _enabled(rule.get("enabled")) for port in port_set(rule.get("local_ports") or []) or ()})
    if not ports:
        return
    probes = run.agent.call([probe_operation(port, False, "/") for port in ports], stop_on_error=False)
    serving = [port for port, probe in zip(ports, probes, strict=True) if probe.ok and (probe.result or {}).get("http_status") is not None]
    if serving:
        raise XuError(
            f"Port {', '.join(str(p) for p in serving)} serves plain HTTP (TLS is off), and the hold keeps it closed to every client;"
            " releasing it would expose plain HTTP. Nothing was changed. Turn TLS on first (or let the renewal that turned it off"
            " finish: xtractuniversal.tls.renew), then open the hold"
        )


def run_firewall_gate(run: ModuleRun, in_use: set[int]) -> dict[str, Any]:
    request = gate_request(run.params, in_use)
    hold = hold_request(run.params, request, in_use)
    journal = run.journal
    run_id = run.run_id  # checked before the host is read
    profile = resolve_profile(run.params)

    requests = [request] if hold is None else [hold, request]
    reads = read_operations(request, profile) + [op for r in requests[:-1] for op in state_operations(r)]
    # Releasing the HTTP hold by hand: first make sure no run holds the host (its TLS may be off behind the hold).
    watched = journal or (JournalRide(DEFAULT_JOURNAL, "absent", None, None) if hold is not None and hold.state == "open" else None)
    if watched is not None:
        reads.append(watched.read_operation())
    results = run.agent.call(reads)
    journal_raw = results[-1].value() if watched is not None else None
    gate_reads = results[:len(read_operations(request, profile))]
    current = gate_state(gate_reads)
    closed = request.state == "closed"
    # A gate that could not be in effect is refused before anything changes, in check mode too.
    # An open gate needs no such judgement: it blocks nothing either way.
    problem = effect_problem(current) if closed or (hold is not None and hold.state == "closed") else None
    if problem is not None:
        raise XuError(f"{problem}. Nothing was changed on the host", profiles=current.profiles)
    if watched is not None:
        watched.check_owner(journal_raw, run_id, run.agent.host_now())
    ports: tuple[int, ...] = ()
    if closed:
        ports = request.ports if request.ports is not None else check_ports(
            product_ports(gate_reads[0].value(), profile, run), in_use, "the product's ports (from its settings files)"
        )
    host_now = run.agent.host_now()
    parts = [_plan_part(request, current, ports, profile.title, host_now)]
    if hold is not None:
        hold_reads = results[len(gate_reads):len(gate_reads) + 2]
        held = gate_state(hold_reads)
        if hold.state == "open" and journal is None:
            refuse_plain_http_release(run, held)
        parts.insert(0, _plan_part(hold, held, hold.ports or (), profile.title, host_now))

    changed = any(part.plan.changed for part in parts)
    finals = {part.request.group: part.plan.predicted(part.current, part.request) for part in parts}
    writes = journal.write_operations(journal_raw, run_id, host_now) if journal is not None else []
    removals = journal.removal_operations(written_journal(writes, journal_raw), run_id) if journal is not None else []
    # Whether the finals are what the host reported (not a prediction of rules still to be written).
    reported = not changed
    if (changed or writes or removals) and not run.check_mode:
        entry = gate_event(run_id, request, parts[-1].plan, ports, hold) if changed else None
        finals.update(_apply_parts(run, parts, writes, removals, entry))
        reported = True

    gate_part = parts[-1]
    final = finals[request.group]
    result: dict[str, Any] = {"changed": changed, **_part_result(gate_part, final)}
    if hold is not None:
        result["hold"] = {"rule_group": hold.group, **_part_result(parts[0], finals[hold.group])}
    if run.diff:
        result["diff"] = {"before": current.summary(), "after": final.summary()}
    for part in parts:
        problem = inactive_problem(part.request, finals[part.request.group], part.desired) if part.request.state == "closed" and reported else None
        if problem is not None:
            # The state is reported as usual, and what was written stays changed.
            raise XuError(problem, **result)
    return result
