"""The renew decisions with dicts in and out, as the engine's phases see them: a thin conversion over the typed
functions of plugins/plugin_utils/renew/, so that their unit tests read as tables of reports and plans."""

from __future__ import annotations

import datetime
import pathlib
from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._certificate import utc_now
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.journal._keeper import RunJournal, after_step, parse_journal, start_journal
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._info import as_dict
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._plan import (
    PfxInputs,
    Plan,
    PlanError,
    RenewalRequest,
    due,
    plan,
    precheck,
)
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._recovery import (
    ALWAYS,
    COMPLETE,
    NEVER,
    ROLLBACK,
    Rebind,
    Recovery,
    Restore,
    Swap,
    recover,
)
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._report import RunRecord, outcome, parse_failure, summary
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._verify import verify


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
        pfx_variable=pfx_variable,
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


def renew_precheck(
    plan_fact: Any, *, pfx_path: Any = None, pfx_content: Any = None, pfx_password: Any = None, ca_path: Any = None, strict_san: Any = True,
) -> dict[str, Any]:
    """The plan, ``blocked`` with the reason when the swap would refuse the host's new PFX; unchanged otherwise.

    ``pfx_path`` and ``ca_path`` are files on the controller (empty: not found), read as the engine reads them.
    """
    given = PfxInputs(
        pfx=pathlib.Path(pfx_path).read_bytes() if pfx_path else None, pfx_content=_text(pfx_content), password=_text(pfx_password),
        ca_bundle=pathlib.Path(ca_path).read_bytes() if ca_path else None, strict_san=bool(strict_san),
    )
    planned = parse_plan(plan_fact)
    checked = precheck(planned, given)
    fact = as_dict(plan_fact)
    if checked is not planned:
        fact.update(action=checked.action, reason=checked.reason)
    return fact


# -- the plan and the recovery back from their dicts (as a result carries them): the tests' tables compare them ----------


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def parse_plan(value: Any) -> Plan:
    """A plan from its dict (``Plan.as_fact``, as an assessment returns it)."""
    fact = as_dict(value)
    owner = fact.get("owner")
    return Plan(
        action=str(fact.get("action") or "none"),
        status=_string(fact.get("status")),
        reason=str(fact.get("reason") or ""),
        mode=_string(fact.get("mode")),
        strategy=_string(fact.get("strategy")),
        old_thumbprint=_string(fact.get("old_thumbprint")),
        days_left=fact.get("days_left"),
        not_after=fact.get("not_after"),
        previous_web_protocol=_string(fact.get("previous_web_protocol")),
        config_tls=bool(fact.get("config_tls")),
        config_separate=bool(fact.get("config_separate")),
        http_port=fact.get("http_port"),
        original_sha256=_string(fact.get("original_sha256")),
        tls_path=_string(fact.get("tls_path")),
        fqdn=_string(fact.get("fqdn")),
        source=_string(fact.get("source")),
        new_thumbprint=_string(fact.get("new_thumbprint")),
        pfx_path=_string(fact.get("pfx_path")),
        close_gate=bool(fact.get("close_gate")),
        remove_old=bool(fact.get("remove_old")),
        remove_old_in_swap=bool(fact.get("remove_old_in_swap")),
        controller_check=bool(fact.get("controller_check")),
        gate_closed=bool(fact.get("gate_closed")),
        owner=dict(owner) if isinstance(owner, Mapping) else None,
        enroll=dict(fact["enroll"]) if isinstance(fact.get("enroll"), Mapping) else None,
        web_protocol=_string(fact.get("web_protocol")) or _string(fact.get("previous_web_protocol")),
        enable_tls=bool(fact.get("enable_tls")),
        bind_config=bool(fact.get("bind_config")),
    )


_RECOVERY_KEYS = frozenset(Recovery.__dataclass_fields__) - {"extra"}


def parse_recovery(value: Any) -> Recovery:
    """A recovery from its dict (``Recovery.as_fact``); a missing one is ``none``."""
    fact = as_dict(value)
    restores = tuple(
        Restore(str(r.get("path") or ""), str(r.get("backup_file") or ""), str(r.get("restart") or NEVER))
        for r in fact.get("restores") or [] if isinstance(r, Mapping) and r.get("backup_file")
    ) if isinstance(fact.get("restores"), list) else ()
    swap = as_dict(fact.get("swap"))
    rebind = as_dict(fact.get("rebind"))
    return Recovery(
        action=str(fact.get("action") or "none"),
        reason=str(fact.get("reason") or ""),
        expect=_string(fact.get("expect")),
        web_protocol=fact.get("web_protocol"),
        config_tls=bool(fact.get("config_tls")),
        require_valid=bool(fact.get("require_valid")),
        restores=restores,
        swap=Swap(str(swap.get("old_thumbprint") or ""), _string(swap.get("new_thumbprint")), swap.get("renew_reusing_key"),
                  str(swap.get("restart") or ALWAYS)) if swap else None,
        rebind=Rebind(_string(rebind.get("web_protocol")), _string(rebind.get("web_certificate")),
                      _string(rebind.get("config_server_certificate")), str(rebind.get("restart") or ALWAYS)) if rebind else None,
        remove_old=bool(fact.get("remove_old")),
        old_thumbprint=_string(fact.get("old_thumbprint")),
        new_thumbprint=_string(fact.get("new_thumbprint")),
        extra={key: item for key, item in fact.items() if key not in _RECOVERY_KEYS},
    )
