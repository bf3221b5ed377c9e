# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The decisions of the C(xtractuniversal.tls.renew) role, as filters.

The role's YAML only sequences module calls; every decision is made in typed modules of
plugin_utils, from the report of M(xtractuniversal.tls.xu_tls_info) and the role's journal.
Each filter here only converts what the role hands in, calls its typed function and returns
the dict the role reads:

``renew_options``   the role's variables, checked and given their documented types (_renew_options)
``renew_secrets``   the PFX and its password the role uses: a credential's when set, else the host's own (_renew_options)
``renew_precheck``  the plan, blocked when the real run would refuse the host's new PFX (_renew_plan)
``renew_due``       whether a host's bound certificate needs renewing (_renew_plan)
``renew_plan``      what the role does on a host: renew (and how), resume a journal, nothing, or why it cannot (_renew_plan)
``renew_journal_start``, ``renew_journal``  the run journal, started and after each step (_renew_journal)
``renew_verify``    whether a host serves what a renewal (or a rollback) should have left (_renew_verify)
``renew_resume``    what to do with the journal of an interrupted run: complete it or roll it back (_renew_recovery)
``renew_recovery``  the same after a failed step, preferring the rollback (_renew_recovery)
``renew_outcome``   the message and result of a failed host, from its step and what the recovery did (_renew_report)
``renew_summary``   the per-host summary the role returns as facts and through set_stats (_renew_report)
``renew_totals``    how many hosts ended with each result, for the fleet summary (_renew_report)
``renew_errors``    the messages of the registered results that failed (_renew_report)
``renew_batches``   the renew play's batch sizes, from xu_renew_serial or the default for its hosts' modes (_renew_fleet)
``renew_halt``      whether the earlier batches failed more than allowed, so this one must not start (_renew_fleet)
``renew_fleet``     the fleet summary's lines, totals and the hosts that fail the run (_renew_fleet)

Each filter has its documentation in ``plugins/filter/<name>.yml``.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._certificate import utc_now
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._renew_fleet import (
    BatchesError,
    batch_halt,
    batch_sizes,
    fail_on_blocked_option,
    fleet_report,
)
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._renew_info import as_dict
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._renew_journal import RunJournal, after_step, parse_journal, start_journal
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._renew_options import RoleOptionsError, pfx_secrets
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._renew_options import renew_options as typed_renew_options
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._renew_plan import (
    PfxInputs,
    PlanError,
    RenewalRequest,
    due,
    parse_plan,
    plan,
    precheck,
)
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._renew_recovery import COMPLETE, ROLLBACK, parse_recovery, recover
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._renew_report import (
    RunRecord,
    failed_messages,
    outcome,
    parse_failure,
    result_totals,
    summary,
)
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._renew_verify import verify


class RenewFilterError(AnsibleFilterError):
    """A filter was called with arguments it cannot work with (a bug in the caller, not a host state)."""


def _number(name: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise RenewFilterError(f"{name} must be a number, not {value!r}") from None


def _text(value: Any) -> str | None:
    return str(value) if value else None


def renew_due(
    info: Mapping[str, Any], before_days: float = 30, force: bool = False, before_percent: float = 0, *, now: datetime.datetime | None = None
) -> dict[str, Any]:
    """Whether the host's bound certificate needs renewing: {status, due, reason, old_thumbprint, days_left, not_after}."""
    window = (_number("before_days", before_days), _number("before_percent", before_percent))
    return due(as_dict(info), window[0], bool(force), window[1], now or utc_now()).as_fact()


def _plain(value: Any) -> Any:
    """``value`` with Ansible's lazy containers turned into plain dicts, lists and tuples.

    A lazy container carries the templating machinery with it: the argument validator's deep copy of one
    copies that too, at a cost of up to a second of CPU.
    """
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return tuple(_plain(item) for item in value)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def renew_options(values: Any, host: str, entry_point: str = "main", playbook_dir: Any = None) -> dict[str, Any]:
    """The role's variables with their documented types (see _renew_options); AnsibleFilterError names a wrong one."""
    if not isinstance(values, Mapping):
        raise AnsibleFilterError(f"renew_options takes a dict of the role's variables, not {type(values).__name__}")
    try:
        return typed_renew_options(_plain(values), str(host), entry_point, playbook_dir=playbook_dir)
    except RoleOptionsError as e:
        raise AnsibleFilterError(f"The renew role's variables: {e}") from None


def renew_secrets(values: Any) -> dict[str, str]:
    """{pfx_content, pfx_password}: a credential's when set, else the host's own (see _renew_options.pfx_secrets)."""
    if not isinstance(values, Mapping):
        raise AnsibleFilterError(f"renew_secrets takes a dict of the role's secret variables, not {type(values).__name__}")
    try:
        return pfx_secrets(values)
    except RoleOptionsError as e:
        raise AnsibleFilterError(f"The renew role's variables: {e}") from None


def renew_plan(
    info: Mapping[str, Any],
    mode: str,
    *,
    strategy: str = "documented",
    before_days: float = 30,
    before_percent: float = 0,
    force: bool = False,
    new_thumbprint: Any = None,
    pfx_path: Any = None,
    pfx_variable: str = "xu_renew_pfx_path",
    pfx_content_given: bool = False,
    ca_path: Any = None,
    remove_old: bool = True,
    run_id: Any = None,
    adopt_issuer: Any = None,
    adopt_min_days: Any = 0,
    template: Any = None,
    ca_config: Any = None,
    extra_dns_names: Any = (),
    enable_tls: bool = False,
    tls_off_only: bool = False,
    web_protocol: str = "https_unrestricted",
    bind_config_server: bool = False,
) -> dict[str, Any]:
    """What the role does on one host, decided from xu_tls_info's report (see _renew_plan.plan)."""
    request = RenewalRequest(
        before_days=_number("before_days", before_days),
        before_percent=_number("before_percent", before_percent),
        force=bool(force),
        new_thumbprint=new_thumbprint,
        pfx_path=pfx_path,
        pfx_variable=str(pfx_variable),
        pfx_content_given=bool(pfx_content_given),
        ca_path=ca_path,
        remove_old=bool(remove_old),
        run_id=run_id,
        adopt_issuer=adopt_issuer,
        adopt_min_days=adopt_min_days,
        template=template,
        ca_config=ca_config,
        extra_dns_names=tuple(str(name) for name in extra_dns_names or ()),
        enable_tls=bool(enable_tls),
        tls_off_only=bool(tls_off_only),
        web_protocol=str(web_protocol),
        bind_config_server=bool(bind_config_server),
    )
    try:
        return plan(as_dict(info), mode, strategy, request).as_fact()
    except PlanError as e:
        raise RenewFilterError(str(e)) from None


def renew_precheck(
    plan: Any,
    *,
    pfx_path: Any = None,
    pfx_content: Any = None,
    pfx_password: Any = None,
    ca_path: Any = None,
    strict_san: Any = True,
) -> dict[str, Any]:
    """The plan, ``blocked`` with the reason when the swap would refuse the host's new PFX; unchanged otherwise.

    ``pfx_path`` and ``ca_path`` are the files as found on the controller (empty: not found).
    """
    given = PfxInputs(_text(pfx_path), _text(pfx_content), _text(pfx_password), _text(ca_path), bool(strict_san))
    planned = parse_plan(plan)
    checked = precheck(planned, given)
    # Only the action and the reason can change: the plan the role holds goes back with them, key for key.
    fact = as_dict(plan)
    if checked is not planned:
        fact.update(action=checked.action, reason=checked.reason)
    return fact


def renew_journal_start(plan: Mapping[str, Any], run_id: str, started: str) -> dict[str, Any]:
    """The journal written before a renewal changes anything: what a later run needs to complete or undo it."""
    return start_journal(parse_plan(plan), run_id, started).as_fact()


def renew_journal(
    journal: Mapping[str, Any] | None,
    step: str | None = None,
    new_thumbprint: Any = None,
    backup_file: Any = None,
    backup_files: Any = None,
) -> dict[str, Any]:
    """The journal after a step: the step reached, the new thumbprint once known, and every backup made."""
    current = parse_journal(journal) or RunJournal()
    return after_step(current, step, new_thumbprint, backup_file, backup_files).as_fact()


def renew_verify(
    info: Mapping[str, Any],
    expected: str | None,
    web_protocol: str | None = None,
    config_tls: bool | None = None,
    require_valid: bool = True,
) -> dict[str, Any]:
    """Whether the host serves ``expected`` as a renewal (or a rollback) should leave it: {ok, problems, thumbprint, serving_tls}."""
    return verify(as_dict(info), expected, web_protocol, None if config_tls is None else bool(config_tls), bool(require_valid)).as_fact()


def renew_resume(journal: Mapping[str, Any] | None, info: Mapping[str, Any]) -> dict[str, Any]:
    """What to do with the journal an interrupted run left: complete it or roll it back (see _renew_recovery)."""
    return recover(parse_journal(journal), as_dict(info), COMPLETE).as_fact()


def renew_recovery(journal: Mapping[str, Any] | None, info: Mapping[str, Any]) -> dict[str, Any]:
    """What to undo after a failed step: as renew_resume, but a new certificate is rolled back even when served."""
    return recover(parse_journal(journal), as_dict(info), ROLLBACK).as_fact()


def renew_outcome(
    step: Any,
    failed_result: Mapping[str, Any] | None,
    recovery: Mapping[str, Any] | None,
    verify: Mapping[str, Any] | None,
    recovery_errors: list[Any] | None = None,
) -> dict[str, Any]:
    """The result of a failed host: {step, message, restored, recovered, serves}.

    ``step`` is the failed task's step (its ``xu_renew_step``; empty when no task failed: the
    play stopped the host), ``failed_result`` its result, ``recovery`` what renew_recovery
    decided, ``verify`` renew_verify after the recovery, ``recovery_errors`` the messages of
    recovery tasks that failed.
    """
    if step is not None and not isinstance(step, str):
        raise RenewFilterError(f"renew_outcome takes the failed step's name, not {type(step).__name__}")
    errors = [str(e) for e in recovery_errors or [] if e]
    verified = verify if isinstance(verify, Mapping) else None
    return outcome((step or "").strip() or None, as_dict(failed_result), parse_recovery(recovery), verified, errors).as_fact()


def renew_summary(
    plan: Mapping[str, Any],
    *,
    info: Mapping[str, Any] | None = None,
    new_thumbprint: str | None = None,
    outage_s: Any = None,
    resumed: str | None = None,
    resume_reason: str | None = None,
    failure: Mapping[str, Any] | None = None,
    check_mode: bool = False,
    gate_reopened: bool = False,
    resumed_thumbprints: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The per-host summary: result, old -> new thumbprint, new expiry, outage seconds, and why (see renew_summary.yml)."""
    thumbprints = as_dict(resumed_thumbprints)
    record = RunRecord(
        new_thumbprint=new_thumbprint if isinstance(new_thumbprint, str) else None,
        outage_s=outage_s,
        resumed=str(resumed) if resumed else None,
        resume_reason=None if resume_reason is None else str(resume_reason),
        failure=parse_failure(failure),
        check_mode=bool(check_mode),
        gate_reopened=bool(gate_reopened),
        resumed_thumbprints=(thumbprints.get("old"), thumbprints.get("new")) if thumbprints else None,
    )
    return summary(parse_plan(plan), as_dict(info), record).as_fact()


def renew_errors(results: Any) -> list[str]:
    """The messages of the registered results (or loop results) that failed; skipped and missing ones count as fine."""
    return failed_messages(results)


def renew_totals(summaries: Any) -> dict[str, int]:
    """How many hosts ended with each result; a host without a summary counts as ``unreachable``."""
    return result_totals(summaries)


def _host_lists(value: Any, what: str) -> dict[str, list[str]]:
    if not isinstance(value, Mapping) or not all(isinstance(hosts, list) for hosts in value.values()):
        raise AnsibleFilterError(f"{what} must map host names to lists of host names")
    return {str(host): [str(h) for h in hosts] for host, hosts in value.items()}


def _summaries(value: Any) -> dict[str, Mapping[str, Any]]:
    if not isinstance(value, Mapping):
        raise AnsibleFilterError("the summaries must map host names to their xu_renew_summary")
    return {str(host): summary for host, summary in value.items() if isinstance(summary, Mapping)}


def renew_batches(serial: Any, hosts_options: Any = None) -> list[int | str]:
    """The renew play's ``serial``: xu_renew_serial as batch sizes, or the default for the typed options of its hosts."""
    options = [] if hosts_options is None else hosts_options
    if not isinstance(options, list) or not all(isinstance(entry, Mapping) for entry in options):
        raise AnsibleFilterError("hosts_options must be the list of the hosts' xu_renew_options")
    try:
        return batch_sizes(serial, options)
    except BatchesError as error:
        raise AnsibleFilterError(str(error)) from None


def renew_halt(summaries: Any, batches: Any, current: Any, max_fail_percentage: Any) -> dict[str, Any]:
    """{halt, reason}: whether this batch must not start, because the earlier ones failed more than allowed."""
    try:
        percentage = int(max_fail_percentage)
    except (TypeError, ValueError):
        raise AnsibleFilterError(f"xu_renew_max_fail_percentage must be a whole number, not {max_fail_percentage!r}") from None
    if not isinstance(current, list):
        raise AnsibleFilterError("current must be the list of the hosts of this batch")
    reason = batch_halt(_host_lists(batches, "batches"), _summaries(summaries), [str(h) for h in current], percentage)
    return {"halt": reason is not None, "reason": reason}


def renew_fleet(summaries: Any, group_hosts: Any, targeted: Any, fail_on_blocked: Any = True) -> dict[str, Any]:
    """{lines, totals, results, failures}: the fleet summary of a renew run over every host of the group."""
    if not isinstance(group_hosts, list) or not isinstance(targeted, list):
        raise AnsibleFilterError("group_hosts and targeted must be lists of host names")
    try:
        fail = fail_on_blocked_option(fail_on_blocked)
    except BatchesError as e:
        raise AnsibleFilterError(str(e)) from None
    return fleet_report(_summaries(summaries), [str(h) for h in group_hosts], [str(h) for h in targeted], fail)


class FilterModule:
    """The decisions of the renew role."""

    def filters(self) -> dict[str, Any]:
        return {
            "renew_options": renew_options,
            "renew_secrets": renew_secrets,
            "renew_due": renew_due,
            "renew_plan": renew_plan,
            "renew_precheck": renew_precheck,
            "renew_journal_start": renew_journal_start,
            "renew_journal": renew_journal,
            "renew_verify": renew_verify,
            "renew_resume": renew_resume,
            "renew_recovery": renew_recovery,
            "renew_outcome": renew_outcome,
            "renew_summary": renew_summary,
            "renew_errors": renew_errors,
            "renew_totals": renew_totals,
            "renew_batches": renew_batches,
            "renew_halt": renew_halt,
            "renew_fleet": renew_fleet,
        }
