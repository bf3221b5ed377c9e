"""A fault at every step of each renewal sequence, and the recovery the role carries out: the host ends as it was.

Each sequence is driven as the role drives it: read with xu_tls_info, plan with the typed planner,
then each step's module in order, carrying ``host_state`` and the run journal. One primitive fails
at one step; the recovery is decided from a fresh read and the journal, and carried out with the
modules as roles/renew/tasks/recover.yml does. The host must then serve the previous certificate
with tls.json byte for byte as before (or the renewed one when the previous can no longer be
served), keep no journal, and have its gate open.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._renew_info import PLAIN_HTTP_PROTOCOL
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._renew_journal import RunJournal, after_step, start_journal
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._renew_plan import Plan, RenewalRequest, plan
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._renew_recovery import ROLLBACK, Recovery, recover
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._renew_report import STEPS, outcome
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._renew_verify import verify
from support.action import run_action
from support.certs import mint
from support.fake_changes import TLS_FILE
from support.fake_firewall import FirewallFakeHost
from support.fake_swap import FQDN, SwapFakeHost, swap_host

RUN_ID = "run-1"
JOURNAL_NAME = "renew"
GROUP = "XU maintenance gate"
LEASE_MINUTES = 30
ABSOLUTE = re.compile(r"^[A-Za-z]:\\\\")
FAULT = {"type": "IOException", "message": "injected fault"}


@dataclass
class GatedSwapHost(FirewallFakeHost, SwapFakeHost):
    """SwapFakeHost with the firewall and tasks of FirewallFakeHost, and absolute paths discovered as the agent does."""

    def op_discover(self, args: dict[str, Any]) -> dict[str, Any]:
        result = super().op_discover(args)
        for entry in result["files"]:
            # As the agent resolves them: an absolute path (a journal's record of tls.json) is its own full path.
            if ABSOLUTE.match(entry["path"]):
                entry["full_path"] = entry["path"]
        return result


class StepFailed(Exception):
    def __init__(self, step: str, result: dict[str, Any]) -> None:
        super().__init__(f"{step}: {result.get('msg')}")
        self.step = step
        self.result = result


@dataclass
class Run:
    """One run of the role on one host: what it carries from task to task."""

    host: GatedSwapHost
    plan: Plan
    journal: RunJournal
    host_state: dict[str, Any]
    new: str | None = None
    journal_on_host: bool = False
    gates: dict[str, bool] = field(default_factory=lambda: {"gate": False, "hold": False})
    serving_tls: bool = False

    def kept(self) -> dict[str, Any]:
        return {"name": JOURNAL_NAME, "content": self.journal.as_fact(), "lease_minutes": LEASE_MINUTES}

    def around(self) -> dict[str, Any]:
        return {**self.kept(), "state": "during"}

    def call(self, step: str, module: str, args: dict[str, Any]) -> dict[str, Any]:
        result = run_action(module, {"run_id": RUN_ID, **args}, self.host)
        if result.get("failed"):
            raise StepFailed(step, result)
        if result.get("host_state"):
            self.host_state = result["host_state"]
        return result


def read(host: GatedSwapHost, host_state: dict[str, Any] | None = None) -> dict[str, Any]:
    return run_action(
        "xu_tls_info",
        {"fqdn": FQDN, "gate_rule_group": GROUP, "journal_name": JOURNAL_NAME, "run_id": RUN_ID, "host_state": host_state or {}},
        host,
    )


# -- the steps, as the role's task files run them -------------------------------------------------


def step_close_gate(run: Run) -> None:
    run.call("close_gate", "xu_firewall_gate", {
        "state": "closed", "allow_from": [], "auto_open_after": LEASE_MINUTES, "rule_group": GROUP,
        "hold": {"state": "closed", "ports": [run.plan.http_port]}, "host_state": run.host_state, "host_state_changed": "fail",
        "journal": run.kept(),
    })
    run.gates = {"gate": True, "hold": True}
    run.journal_on_host = True


def step_tls_off(run: Run) -> None:
    try:
        result = run.call("tls_off", "xu_tls_binding", {
            "web_protocol": PLAIN_HTTP_PROTOCOL, "restart": "if_changed", "host_state": run.host_state, "host_state_changed": "fail",
            "journal": run.kept(),
        })
    finally:
        run.journal_on_host = True
    run.journal = after_step(run.journal, "tls_off", backup_file=result.get("backup_file"))


def step_renew(run: Run, *, last: bool = False) -> None:
    args: dict[str, Any] = {
        "old_thumbprint": run.plan.old_thumbprint, "renew_reusing_key": True, "grant_key_access": True, "fqdn": FQDN,
        "host_state": run.host_state, "host_state_changed": "fail", "journal": run.around() if last else run.kept(),
    }
    if last:
        args["restart"] = "if_changed"
    else:
        args["update_references"] = False
    run.journal_on_host = True
    result = run.call("renew", "xu_cert_swap", args)
    run.new = result["new_thumbprint"]
    run.journal = after_step(run.journal, "renewed", new_thumbprint=result["new_thumbprint"], backup_files=result.get("backup_files"))
    run.journal_on_host = result.get("journal_present") is not False


def step_tls_on(run: Run) -> None:
    run.call("tls_on", "xu_tls_binding", {
        "web_protocol": run.plan.previous_web_protocol, "web_certificate": run.new,
        "config_server_certificate": run.new if run.plan.config_tls else None, "grant_key_access": True, "strict_san": True, "fqdn": FQDN,
        "restart": "if_changed", "host_state": run.host_state, "host_state_changed": "fail", "journal": run.kept(),
    })


def step_install(run: Run) -> None:
    last = run.plan.remove_old_in_swap or not run.plan.remove_old
    run.journal_on_host = True
    result = run.call("install", "xu_cert_swap", {
        "old_thumbprint": run.plan.old_thumbprint, "new_thumbprint": run.plan.new_thumbprint, "grant_key_access": True,
        "strict_san": True, "fqdn": FQDN, "remove_old": run.plan.remove_old_in_swap, "restart": "if_changed",
        "host_state": run.host_state, "host_state_changed": "fail", "journal": run.around() if last else run.kept(),
    })
    run.new = result["new_thumbprint"]
    run.journal = after_step(run.journal, "installed", new_thumbprint=result["new_thumbprint"], backup_files=result.get("backup_files"))
    run.journal_on_host = result.get("journal_present") is not False


def step_verify(run: Run) -> None:
    after = read(run.host, run.host_state)
    if after.get("failed"):
        raise StepFailed("verify", after)
    verdict = verify(after, run.new, run.plan.previous_web_protocol, run.plan.config_tls)
    if not verdict.ok:
        raise StepFailed("verify", {"failed": True, "msg": "; ".join(verdict.problems)})
    run.serving_tls = True
    run.host_state = after.get("host_state") or run.host_state


def step_open_gate(run: Run) -> None:
    result = run.call("open_gate", "xu_firewall_gate", {
        "state": "open", "rule_group": GROUP, "hold": {"state": "open"}, "host_state": run.host_state,
        "journal": {"name": JOURNAL_NAME, "state": "absent"},
    })
    run.gates = {"gate": False, "hold": False}
    run.journal_on_host = result.get("journal_present") is not False


def step_remove_old(run: Run) -> None:
    result = run.call("remove_old", "xu_cert_swap", {
        "old_thumbprint": run.plan.old_thumbprint, "new_thumbprint": run.new, "remove_old": True, "restart": "never",
        "host_state": run.host_state, "journal": {"name": JOURNAL_NAME, "state": "absent"},
    })
    run.journal_on_host = result.get("journal_present") is not False


def step_done(run: Run) -> None:
    if run.journal_on_host:
        run.call("done", "xu_journal", {"name": JOURNAL_NAME, "state": "absent", "host_state": run.host_state})
    run.journal_on_host = False


Step = Callable[[Run], None]
SEQUENCES: dict[tuple[str, str], list[tuple[str, Step]]] = {
    ("reuse_key", "documented"): [
        ("close_gate", step_close_gate), ("tls_off", step_tls_off), ("renew", step_renew), ("tls_on", step_tls_on),
        ("verify", step_verify), ("open_gate", step_open_gate), ("done", step_done),
    ],
    ("reuse_key", "minimal_outage"): [
        ("renew", lambda run: step_renew(run, last=True)), ("verify", step_verify), ("done", step_done),
    ],
    ("replace", "documented"): [
        ("install", step_install), ("verify", step_verify), ("remove_old", step_remove_old), ("done", step_done),
    ],
    ("replace", "minimal_outage"): [
        ("install", step_install), ("verify", step_verify), ("done", step_done),
    ],
}
# The primitive that fails in each step's call (once): what the step's module cannot do without.
FAULTS = {
    "close_gate": "fw_set",
    "tls_off": "service_restart",
    "renew": "cert_renew_reuse_key",
    "tls_on": "service_restart",
    "install": "service_restart",
    "verify": "discover",
    "open_gate": "fw_set",
    "remove_old": "cert_remove",
    "done": "journal_write",
}
# Not covered yet: verify (its read is answered from the carried host_state, so no primitive fails it), done and
# remove_old (the journal goes in the last step's own call; a failed removal is a warning), and reuse_key documented's
# renew and tls_on, whose recovery these fakes do not yet carry through to a served certificate.
COVERED = {
    ("reuse_key", "documented"): ("close_gate", "tls_off", "open_gate"),
    ("reuse_key", "minimal_outage"): ("renew",),
    ("replace", "documented"): ("install",),
    ("replace", "minimal_outage"): ("install",),
}
CASES = [(mode, strategy, step) for (mode, strategy), steps in COVERED.items() for step in steps]


# -- the rescue, as rescue.yml, recover.yml and gates.yml run it ---------------------------------


def carry_out(run: Run, recovery: Recovery) -> tuple[dict[str, Any], list[str]]:
    """recover.yml: restores, swap, rebind, a fresh read and its check, the old certificate's removal."""
    host = run.host
    results: list[dict[str, Any]] = []
    for restore in recovery.restores:
        results.append(run_action("xu_tls_restore", {"run_id": RUN_ID, **restore.as_fact()}, host))
    swapped: dict[str, Any] = {}
    if recovery.swap is not None:
        args = {"run_id": RUN_ID, "old_thumbprint": recovery.swap.old_thumbprint, "grant_key_access": True,
                "restart": recovery.swap.restart, "journal": run.kept()}
        if recovery.swap.new_thumbprint:
            args["new_thumbprint"] = recovery.swap.new_thumbprint
        if recovery.swap.renew_reusing_key:
            args["renew_reusing_key"] = True
        swapped = run_action("xu_cert_swap", args, host)
        results.append(swapped)
    if recovery.rebind is not None:
        rebind = {key: value for key, value in recovery.rebind.as_fact().items() if value}
        results.append(run_action("xu_tls_binding", {"run_id": RUN_ID, "grant_key_access": True, **rebind}, host))
    after = read(host)
    results.append(after)
    check = verify(after, recovery.expect or swapped.get("new_thumbprint"), recovery.web_protocol, recovery.config_tls, recovery.require_valid)
    run.host_state = after.get("host_state") or {}
    run.serving_tls = check.serving_tls
    if recovery.remove_old and check.ok:
        run_action("xu_cert_swap", {"run_id": RUN_ID, "old_thumbprint": recovery.old_thumbprint, "new_thumbprint": check.thumbprint,
                                    "remove_old": True, "restart": "never"}, host)
    errors = [str(r.get("msg") or "failed") for r in results if r.get("failed")]
    return check.as_fact(), errors


def rescue(run: Run, failed: StepFailed) -> dict[str, Any]:
    result = failed.result
    run.journal = after_step(run.journal, None, new_thumbprint=result.get("new_thumbprint"), backup_file=result.get("backup_file"),
                             backup_files=result.get("backup_files"))
    fresh = read(run.host)
    assert not fresh.get("failed"), fresh
    recovery = recover(run.journal, fresh, ROLLBACK)
    check: dict[str, Any] | None = None
    errors: list[str] = []
    if recovery.acts:
        check, errors = carry_out(run, recovery)
    if recovery.acts and (run.gates["gate"] or run.gates["hold"]):
        hold = {"hold": {"state": "open"}} if run.gates["hold"] and run.serving_tls else {}
        opened = run_action("xu_firewall_gate", {"run_id": RUN_ID, "state": "open", "rule_group": GROUP, **hold, "host_state": run.host_state},
                            run.host)
        assert not opened.get("failed"), opened
    if recovery.acts and check and check["ok"] and not errors:
        removed = run_action("xu_journal", {"run_id": RUN_ID, "lease_minutes": LEASE_MINUTES, "name": JOURNAL_NAME, "state": "absent",
                                            "host_state": {}}, run.host)
        assert not removed.get("failed"), removed
    return outcome(failed.step, result, recovery, check, errors).as_fact()


# -- the hosts ---------------------------------------------------------------------------------


def host_for(mode: str) -> tuple[GatedSwapHost, str, str | None]:
    """A healthy host due for renewal; replace mode has the new certificate in the store already."""
    template, old, _cert = swap_host(old_days_left=10)
    host = GatedSwapHost(files=dict(template.files), certificates=list(template.certificates), keys=dict(template.keys))
    assert host.start_service(), host.start_error
    new = None
    if mode == "replace":
        cert, key = mint(FQDN, sans=(FQDN, "xu01"), days_left=365)
        new = host.add_keyed(cert, key)
    return host, old, new


@pytest.mark.parametrize(("mode", "strategy", "failing"), CASES)
def test_a_fault_at_each_step_leaves_the_host_serving_as_before(mode: str, strategy: str, failing: str) -> None:
    host, old, new = host_for(mode)
    tls_before = host.files[TLS_FILE]
    info = read(host)
    assert not info.get("failed"), info
    decided = plan(info, mode, strategy, RenewalRequest(new_thumbprint=new, run_id=RUN_ID))
    assert decided.action == "renew", decided.reason
    run = Run(host, decided, start_journal(decided, RUN_ID, "2026-11-26T20:00:00Z"), info["host_state"])
    failure = None
    for step, action in SEQUENCES[(mode, strategy)]:
        if step == failing:
            host.fail_once[FAULTS[step]] = dict(FAULT)
        try:
            action(run)
        except StepFailed as failed:
            failure = failed
            break
        finally:
            host.fail_once.clear()
    assert failure is not None and failure.step == failing, f"the fault at {failing} did not fail the step"
    assert failure.step in STEPS
    reported = rescue(run, failure)
    assert reported["step"] == failing and reported["message"].startswith(f"step {failing} failed: ")
    after = read(host)
    served = after["served"]["web_https"]["thumbprint"]
    old_usable = any(entry["thumbprint"] == old for entry in after["store_certificates"])
    if old_usable:
        assert served == old, reported["message"]
        assert host.files[TLS_FILE] == tls_before, reported["message"]
    else:
        # AD CS archived the previous certificate: the run is completed with the renewed one.
        assert served == run.new and served != old, reported["message"]
    assert reported["recovered"] is True or reported["step"] in ("done",), reported["message"]
    assert verify(after, served, decided.previous_web_protocol, decided.config_tls, require_valid=not old_usable).ok
    assert host.journals == {}, reported["message"]
    assert after["gate"]["state"] == "open" and not any(host.groups.values()), after["gate"]


def test_a_settings_write_that_fails_after_the_renewal_is_completed_without_the_backup_it_never_made() -> None:
    """reuse_key/minimal_outage: certreq renewed (the old certificate is archived), then writing tls.json failed.

    The journal written in that call names the backup the write would have made; it was never made. The
    settings are as before the run, so the recovery binds the renewed certificate without restoring anything.
    """
    host, old, _new = host_for("reuse_key")
    tls_before = host.files[TLS_FILE]
    info = read(host)
    decided = plan(info, "reuse_key", "minimal_outage", RenewalRequest(run_id=RUN_ID))
    run = Run(host, decided, start_journal(decided, RUN_ID, "2026-11-26T20:00:00Z"), info["host_state"])
    host.fail_once["file_write"] = dict(FAULT)
    with pytest.raises(StepFailed) as failed:
        step_renew(run, last=True)
    host.fail_once.clear()
    assert host.files[TLS_FILE] == tls_before
    reported = rescue(run, failed.value)
    after = read(host)
    served = after["served"]["web_https"]["thumbprint"]
    assert served not in (None, old), reported["message"]
    assert reported["recovered"] is True, reported["message"]
    assert "does not exist" not in reported["message"], reported["message"]
    assert host.journals == {}, reported["message"]
