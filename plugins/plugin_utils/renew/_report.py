# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a renewal reports for a host: the outcome of a failed step and the host's summary. Private to this collection.

The renewal engine hands the failed step's name to ``outcome``. ``STEPS`` are the names a
summary's ``failed_step`` can take (a unit test holds the engine's step table to them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._info import PLAIN_HTTP_PROTOCOL, as_dict, upper
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._plan import Plan
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._precheck import role_wording
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._recovery import COMPLETE, ROLLBACK, Recovery

# The steps of the act phase, in the order a renewal or a resume reaches them.
STEPS = (
    "journal",        # the journal is started on the controller
    "order",          # acme: the certificate is ordered on the controller
    "close_gate",     # reuse_key documented: the gate and the HTTP hold close
    "tls_off",
    "renew",          # reuse_key: AD CS renews the certificate with its key
    "install",        # replace: the new certificate is installed and referenced
    "bind_config",    # a separate configuration server certificate is replaced too
    "tls_on",
    "verify",
    "controller_check",
    "open_gate",
    "remove_old",
    "done",           # the journal is removed
    "resume",         # an interrupted run's journal is completed or rolled back
    "recover",
    "assess",         # the server is read again after a resume
    "finish",         # the gates open
)
UNKNOWN_STEP = "unknown"
PLAY_STOPPED = "the play stopped this host (another host's failure exceeded max_fail_percentage, or the host was unreachable)"


@dataclass(frozen=True)
class FailureOutcome:
    """A failed host: the step, the host's failure message, what was restored, and what it serves after the recovery."""

    step: str
    message: str
    restored: tuple[str, ...]
    recovered: bool
    serves: str | None

    def as_fact(self) -> dict[str, Any]:
        return {"step": self.step, "message": self.message, "restored": list(self.restored), "recovered": self.recovered, "serves": self.serves}


def parse_failure(value: Any) -> FailureOutcome | None:
    """The outcome the role recorded (xu_renew_failure); None when the host did not fail."""
    fact = as_dict(value)
    if not fact:
        return None
    restored = fact.get("restored")
    serves = fact.get("serves")
    return FailureOutcome(
        step=str(fact.get("step") or UNKNOWN_STEP),
        message=str(fact.get("message") or ""),
        restored=tuple(str(r) for r in restored) if isinstance(restored, list) else (),
        recovered=bool(fact.get("recovered")),
        serves=serves if isinstance(serves, str) else None,
    )


def outcome(
    step: str | None, failed_result: Mapping[str, Any], recovery: Recovery, verified: Mapping[str, Any] | None, recovery_errors: list[str]
) -> FailureOutcome:
    """The result of a failed host; ``step`` is the failed task's step, None when no task failed (the play stopped the host)."""
    cause = role_wording(str(failed_result.get("msg") or "failed").strip()) if step is not None else PLAY_STOPPED
    name = step or UNKNOWN_STEP
    restored = tuple(restore.backup_file for restore in recovery.restores)
    recovered = bool(verified and verified.get("ok")) and not recovery_errors
    parts = [f"step {name} failed: {cause}"]
    if recovery.acts and recovered:
        if restored:
            what = f"restored {', '.join(restored)}"
        elif recovery.action == COMPLETE:
            what = "the failed step's change had taken effect on the host, and it is kept"
        else:
            what = "the previous settings were still in force, so nothing was written back"
        imported = upper(failed_result.get("imported_thumbprint"))
        if imported and recovery.action == ROLLBACK:
            what += f"; the imported certificate {imported} stays in LocalMachine\\My"
        served = recovery.expect or ("plain HTTP" if recovery.web_protocol == PLAIN_HTTP_PROTOCOL else "the renewed certificate")
        parts.append(f"recovery: {recovery.reason} ({what}); verified: the server serves {served}")
    elif recovery.acts:
        problems = recovery_errors + [str(p) for p in as_dict(verified).get("problems") or []]
        parts.append(f"recovery did not complete ({recovery.reason}): {'; '.join(problems) or 'not verified'}; the journal is kept for the next run")
    else:
        parts.append(f"no recovery: {recovery.reason or 'nothing had been changed'}")
    return FailureOutcome(name, "; ".join(parts), restored, recovered, recovery.expect if recovered else None)


@dataclass(frozen=True)
class HostSummary:
    """The per-host summary xu_renew returns (``summary``), which the renew playbook hands to AWX."""

    result: str
    reason: str
    mode: str | None
    strategy: str | None
    old_thumbprint: str | None
    new_thumbprint: str | None
    new_expiry: Any
    days_left: Any
    outage_s: float | None
    resumed: str | None
    failed_step: str | None
    restored: tuple[str, ...]

    def as_fact(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "reason": self.reason,
            "mode": self.mode,
            "strategy": self.strategy,
            "old_thumbprint": self.old_thumbprint,
            "new_thumbprint": self.new_thumbprint,
            "new_expiry": self.new_expiry,
            "days_left": self.days_left,
            "outage_s": self.outage_s,
            "resumed": self.resumed,
            "failed_step": self.failed_step,
            "restored": list(self.restored),
        }


@dataclass(frozen=True)
class RunRecord:
    """What the role recorded while acting on a host, for its summary."""

    new_thumbprint: str | None = None
    outage_s: Any = None
    resumed: str | None = None
    resume_reason: str | None = None
    failure: FailureOutcome | None = None
    check_mode: bool = False
    gate_reopened: bool = False
    # The interrupted run's certificates (old, new): for a host whose resumed run was the only change, what the summary reports.
    resumed_thumbprints: tuple[str | None, str | None] | None = None


def summary_result(planned: Plan, new_thumbprint: str | None, resumed: str | None, failed: bool, check_mode: bool) -> str:
    """One word for what happened on the host."""
    action = planned.action
    outcomes = (
        (action == "unreachable", "unreachable"),
        # Another run holds the host (it took this run's lease over): whatever this run did is that run's to finish.
        (action == "busy", "busy"),
        (failed or action == "unreadable", "failed"),
        (upper(new_thumbprint) is not None, "tls_enabled" if planned.enable_tls else "renewed"),
        (check_mode and action == "renew" and planned.enable_tls, "would_enable_tls"),
        (check_mode and action in ("renew", "resume"), f"would_{action}"),
        (action == "blocked", "blocked"),
        (bool(resumed), "rolled_back" if resumed == "rolled_back" else "completed"),
        (planned.status == "skip", "skipped"),
    )
    return next((word for happened, word in outcomes if happened), "not_due")


def _outage(value: Any) -> float | None:
    if value in (None, ""):
        return None
    try:
        return round(float(value), 1)
    except (TypeError, ValueError):
        return None


def summary(planned: Plan, info: Mapping[str, Any], record: RunRecord) -> HostSummary:
    """The per-host summary: result, old -> new thumbprint, new expiry, outage seconds, and why."""
    web = as_dict(info.get("web_server"))
    certificate = as_dict(web.get("certificate"))
    new = upper(record.new_thumbprint)
    failure = record.failure
    result = summary_result(planned, new, record.resumed, failure is not None, record.check_mode)
    reason = planned.reason
    if result == "failed":
        reason = (failure.message if failure else "") or reason or "failed"
    elif result == "tls_enabled":
        reason = f"TLS turned on: {reason}"
    elif result == "renewed":
        reason = f"renewed: {reason}" if planned.status == "due" else "renewed"
    elif result in ("rolled_back", "completed"):
        reason = f"resumed an interrupted run ({record.resume_reason}); {reason}"
    if record.resumed and result == "renewed":
        reason = f"resumed an interrupted run: {record.resumed} ({record.resume_reason}); {reason}"
    if record.gate_reopened and result in ("not_due", "skipped", "blocked"):
        reason += "; the gate an earlier run left closed was opened"
    old = planned.old_thumbprint
    if result in ("completed", "rolled_back") and record.resumed_thumbprints:
        # The plan was made after the resume, from a server that serves the resumed run's outcome.
        resumed_old, resumed_new = record.resumed_thumbprints
        old = upper(resumed_old) or old
        new = upper(resumed_new) if result == "completed" else None
    served_new = new is not None and upper(web.get("certificate_thumbprint")) == new
    return HostSummary(
        result=result,
        reason=reason,
        mode=planned.mode,
        strategy=planned.strategy,
        old_thumbprint=old,
        new_thumbprint=new,
        new_expiry=certificate.get("not_after") if served_new else None,
        days_left=certificate.get("days_left") if certificate else planned.days_left,
        outage_s=_outage(record.outage_s),
        resumed=record.resumed,
        failed_step=failure.step if failure else None,
        restored=failure.restored if failure else (),
    )
