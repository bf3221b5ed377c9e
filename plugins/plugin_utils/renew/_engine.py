# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The renewal engine: one host's renewal as the vendor's steps, run from one task. Private to this collection.

``STEPS`` is the vendor's sequence per mode and strategy, one ``Step`` a row: close the gate, turn TLS off, renew,
turn TLS on, verify, open the gate, remove the old certificate. ``Renewal.run`` walks the rows of a plan in one
``try``: each step is one remote call (or none: the verification reads what the last call saw), made by the module
logic the public modules run (xu_cert_swap, xu_tls_binding, xu_firewall_gate, xu_tls_restore), all sharing one
snapshot of the host. The run's journal rides in every call that changes the host: written before the change, it is
the run's lease, and a call whose journal another run has rewritten changes nothing. A failed step is recovered in
the ``except`` (rolled back, or completed when the previous certificate can no longer be served), and the gates open
in the ``finally``. The result lists every step with its start, duration, remote calls and outcome.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ansible.errors import AnsibleConnectionFailure

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._certificate import iso, utc_now
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.gate._firewall_gate import run_firewall_gate
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._action_base import ModuleRun, module_documentation, module_params
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._agent import Operation
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import XuError
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._host_state import CarriedStateAgent, StaleState
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._snapshot import Snapshot
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.journal._journal import JournalRide
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.journal._journal import parse_journal as journal_content
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.journal._keeper import RunJournal, after_step, parse_journal, start_journal
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.journal._lease import last_step_words, lease_owner
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._acme import AcmeSource, OrderedPfx
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._info import as_dict
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._plan import PFX_SOURCES, PfxInputs, Plan, RenewalRequest, plan, precheck
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._recovery import COMPLETE, ROLLBACK, Recovery, recover
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._report import FailureOutcome, RunRecord, outcome, summary
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._verify import Verification, verify
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._cert_swap import CERTREQ_TIMEOUT_S, ControllerFiles, run_cert_swap
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._tls_binding import run_tls_binding
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._tls_info import read_tls_info
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._tls_restore import run_tls_restore
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._tls_verify import run_tls_verify

# -- the step table -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One row of a sequence: its name (in results, the journal and failures), the vendor's words, and when it runs."""

    name: str
    says: str
    applies: Callable[[Plan], bool] = lambda plan: True
    # Whether the step changes the host (and so carries the journal); the verification and the controller's check do not.
    changes: bool = True


CLOSE_GATE = Step("close_gate", "Block external access to the server with the firewall (the plain HTTP port closed to everyone)")
TLS_OFF = Step("tls_off", "Set the protocol HTTP - Unrestricted (TLS off) and restart the service")
RENEW = Step("renew", "Renew the certificate with the same key through AD CS")
RENEW_AND_BIND = Step(
    "renew", "Renew the certificate with the same key through AD CS, reference it and restart the service once",
)
ORDER = Step(
    "order", "Order the new certificate from the ACME CA (DNS-01) and build its PFX on the controller",
    lambda plan: plan.source == "acme", changes=False,
)
INSTALL = Step("install", "Install the new certificate, reference it and restart the service once")
INSTALL_ONLY = Step("install", "Install the new certificate, readable by the service", lambda plan: plan.source != "thumbprint")
BIND_CONFIG = Step(
    "bind_config", "Reference the new certificate on the configuration server too", lambda plan: plan.config_separate,
)
TLS_ON = Step("tls_on", "Enable TLS with the new certificate and restart the service")
VERIFY = Step("verify", "Check the new certificate is bound, served on every TLS port, names the host and its key is readable", changes=False)
CONTROLLER_CHECK = Step(
    "controller_check", "Check from the controller, as a client, that the server's certificate chains to the CA bundle",
    lambda plan: plan.controller_check, changes=False,
)
OPEN_GATE = Step("open_gate", "Allow external access to the server again")
REMOVE_OLD = Step(
    "remove_old", "Delete the old certificate from the certificate store",
    lambda plan: plan.remove_old and not plan.remove_old_in_swap,
)

# The vendor's orders (the seed article): a new certificate is installed and referenced, then the old one deleted;
# the same key is renewed behind a closed gate with TLS off (documented) or, TLS staying on, with one restart.
SEQUENCES: dict[str, tuple[Step, ...]] = {
    "new_certificate": (ORDER, INSTALL, BIND_CONFIG, VERIFY, CONTROLLER_CHECK, REMOVE_OLD),
    "reuse_key/documented": (CLOSE_GATE, TLS_OFF, RENEW, TLS_ON, VERIFY, CONTROLLER_CHECK, OPEN_GATE),
    "reuse_key/minimal_outage": (RENEW_AND_BIND, BIND_CONFIG, VERIFY, CONTROLLER_CHECK),
    "enable_tls": (ORDER, INSTALL_ONLY, TLS_ON, VERIFY, CONTROLLER_CHECK),
}


# Steps that run on the controller only, before any change.
CONTROLLER_STEPS = frozenset({ORDER.name})


def sequence_of(plan: Plan) -> str:
    if plan.enable_tls:
        return "enable_tls"
    if plan.mode == "reuse_key":
        return f"reuse_key/{plan.strategy}"
    return "new_certificate"


def steps_for(plan: Plan) -> tuple[Step, ...]:
    """The steps a renewal of ``plan`` goes through, in order."""
    return tuple(step for step in SEQUENCES[sequence_of(plan)] if step.applies(plan))


def planned_steps(plan: Plan) -> list[dict[str, Any]]:
    """What --check and the assessment show: each step a host would go through."""
    if plan.action == "resume":
        return [{"step": "resume", "says": "Complete or roll back the run the host's journal records, then renew if still due"}]
    if plan.action != "renew":
        return []
    return [{"step": step.name, "says": step.says} for step in steps_for(plan)]


# -- what the engine needs from its action plugin -----------------------------------------------------------------------


@dataclass(frozen=True)
class Secrets:
    """The new PFX given as content, and its password: only ever handed to the swap."""

    pfx_content: str | None = None
    pfx_password: str | None = None


@dataclass
class EngineContext:
    """One host's renewal: where it runs and with what."""

    host: str
    agent: CarriedStateAgent
    options: Mapping[str, Any]  # the role's variables, typed (_renew_options)
    secrets: Secrets
    run_id: str
    task_vars: dict[str, Any]
    # A controller file (a PFX, the CA bundle), found as the copy module finds its src: (path, variable) -> bytes / path.
    read_file: Callable[[str, str], bytes]
    find_file: Callable[[str, str], str]
    # The ports the connection to the host uses: the gate never closes them.
    connection_ports: set[int]
    address: str
    # xu_renew_mode acme: the CA's side of this host (its verdict, the order); None in every other mode.
    acme: AcmeSource | None = None
    warnings: list[str] = field(default_factory=list)
    # The certificate the host serves now (DER), as the last read saw it: what the ACME CA is asked about and replaces.
    served_der: bytes | None = None
    # Secrets made during the run (an ordered PFX, its one-time password): the action masks them in the result.
    secrets_made: set[str] = field(default_factory=set)

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def note_snapshot(self, snapshot: Snapshot) -> None:
        self.served_der = served_der(snapshot)


def served_der(snapshot: Snapshot) -> bytes | None:
    """The certificate the web server presents on its HTTPS port, else the one its settings bind; None without TLS."""
    probe = snapshot.probes.get("web_https")
    if probe is not None and probe.certificate is not None and probe.certificate.der:
        return probe.certificate.der
    bound = snapshot.tls.web_certificate if snapshot.tls is not None and snapshot.tls.web_uses_tls else None
    stored = snapshot.certificates.get(bound) if bound else None
    return stored.facts.der if stored is not None and stored.facts.der else None


class StepFailed(XuError):
    """A step failed; ``cause`` is the module's error, with the fields its result would carry."""

    def __init__(self, step: str, cause: XuError) -> None:
        super().__init__(cause.msg, **cause.fields)
        self.step = step
        self.cause = cause


class LeaseLost(Exception):
    """Another run holds the host now: its lease is live, or a call found the journal rewritten since this run wrote it."""


class HostLost(Exception):
    """The connection to the host failed in ``step``: Ansible reports the host unreachable."""

    def __init__(self, step: str, error: AnsibleConnectionFailure) -> None:
        super().__init__(str(error))
        self.step = step
        self.error = error


@dataclass
class StepRecord:
    step: str
    started: str
    duration_s: float
    calls: int
    outcome: str  # ok, failed, unreachable
    detail: str | None = None

    def to_result(self) -> dict[str, Any]:
        return {"step": self.step, "started": self.started, "duration_s": self.duration_s, "calls": self.calls,
                "outcome": self.outcome, "detail": self.detail}


# -- the journal: one author --------------------------------------------------------------------------------------------


@dataclass
class JournalKeeper:
    """The run's journal and its copy on the host: the only writer of the renew journal.

    Every ride it hands out carries the whole record and renews the lease; the modules write it before their
    change, guarded by its hash as last read or written, so a call whose journal another run has rewritten since
    changes nothing (StaleState, or a busy XuError).
    """

    name: str
    run_id: str
    # The longest a call of this run may take: the lease outlives it by LEASE_MARGIN_S, renewed in every call.
    call_budget_s: float
    agent: CarriedStateAgent
    # The run an operator named as gone (xu_renew_take_over): its live lease may be replaced, by this run's first write.
    takes_over: str | None = None
    record: RunJournal | None = None
    # Whether a ride has written the journal in this run.
    written: bool = False
    # The interrupted run whose journal this run took over (resumed): its journal is this run's to remove.
    taken_over: str | None = None

    def ride(self, *, last: bool = False) -> JournalRide:
        """The journal for the next call that changes the host: written before its change (the lease renewed); with
        ``last`` also removed after the change succeeded, in the same call."""
        if self.record is None:
            raise RuntimeError("the journal is started before the first change")
        # Written in every call, the last one's included (then removed after its change): the write, guarded by the
        # journal's hash, comes before the call's change, so a call whose journal another run has rewritten changes nothing.
        self.written = True
        return JournalRide(self.name, "during" if last else "present", self.record.as_fact(), None, self.call_budget_s, self.takes_over)

    def start(self, record: RunJournal | None) -> None:
        """This run's record from now on (its own renewal, or an interrupted run's taken over); None once it is removed."""
        self.record = record
        self.written = False

    def note(self, step: str | None = None, *, new_thumbprint: Any = None, backup_file: Any = None, backup_files: Any = None) -> None:
        if self.record is not None:
            self.record = after_step(self.record, step, new_thumbprint=new_thumbprint, backup_file=backup_file, backup_files=backup_files)

    def note_sent(self) -> None:
        """Take in what the last journal sent to the host recorded (the backup a call was about to make, a renewed
        certificate): after a call whose answer was lost, the host may hold it, and only that record names it."""
        sent = self.agent.journal_sent.get(self.name)
        if self.record is None or sent is None:
            return
        with contextlib.suppress(ValueError):
            host_copy = parse_journal(json.loads(sent))
            if host_copy is not None and host_copy.run_id == self.run_id:
                self.note(None, new_thumbprint=host_copy.new_thumbprint, backup_files=host_copy.backup_files)

    @property
    def on_host(self) -> bool:
        """Whether the journal is on the host, as last read or written (unknown counts as there)."""
        return self.agent.journal_present.get(self.name, self.record is not None) is not False


# -- the engine ----------------------------------------------------------------------------------------------------------


@dataclass
class Gates:
    """What this run closed and must open again: the gate, and the hold on the plain HTTP port."""

    gate: bool = False
    hold: bool = False


class Renewal:
    """One host's act phase: renew (or finish an interrupted run) as ``plan`` says, recover, and report."""

    def __init__(self, context: EngineContext, plan: Plan, info: Mapping[str, Any], planner: Callable[[Mapping[str, Any]], Plan]) -> None:
        self.ctx = context
        self.options = context.options
        self.plan = plan
        self.info = info
        # How the plan is made again after a resume: the same options, a fresh report.
        self.planner = planner
        self.info_after: Mapping[str, Any] | None = None
        self.journal = JournalKeeper(
            str(self.options["journal_name"]), context.run_id, call_budget_s(self.options), context.agent,
            takes_over=str(self.options["take_over"]) or None,
        )
        self.steps: list[StepRecord] = []
        self.new: str | None = None
        self.outage_start: float | None = None
        self.outage_s: float | None = None
        self.serving_tls = False
        # The gate an earlier run left closed is opened too; never while another run holds the host (busy).
        self.gates = Gates(gate=as_dict(info.get("gate")).get("state") == "closed" and plan.action != "busy")
        self.gate_reopened = False
        self.failure: FailureOutcome | None = None
        self.resumed: str | None = None
        self.resume_reason: str | None = None
        self.resumed_thumbprints: tuple[str | None, str | None] | None = None
        self.lost: HostLost | None = None
        self.ordered: OrderedPfx | None = None

    # -- running steps --------------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[StepRecord]:
        """Record one step; a module's XuError becomes StepFailed naming it, a lost connection HostLost."""
        record = StepRecord(name, iso(utc_now()), 0.0, 0, "ok")
        began, calls = time.monotonic(), self.ctx.agent.calls
        self.steps.append(record)
        try:
            yield record
        except AnsibleConnectionFailure as e:
            record.outcome, record.detail = "unreachable", str(e)
            raise HostLost(name, e) from e
        except LeaseLost as e:
            record.outcome, record.detail = "busy", str(e)
            raise
        except StepFailed as e:
            record.outcome, record.detail = "failed", e.msg
            raise
        except XuError as e:
            record.outcome, record.detail = "failed", e.msg
            raise StepFailed(name, e) from e
        finally:
            record.duration_s = round(time.monotonic() - began, 2)
            record.calls = self.ctx.agent.calls - calls

    def module(self, name: str, params: dict[str, Any], journal: JournalRide | None = None) -> dict[str, Any]:
        """Run a public module's logic in-process on this host's shared snapshot, with the run's journal riding along."""
        documented = module_documentation(name).get("options") or {}
        # Every read names the server as the assessment did: the probes then match, and the carried snapshot answers them.
        given = (("product", self.options["product"]), ("run_id", self.ctx.run_id), ("fqdn", self._fqdn()))
        common = {key: value for key, value in given if key in documented}
        run = ModuleRun(
            params=module_params(name, {**common, **params}),
            check_mode=False, diff=False, task_vars=self.ctx.task_vars, agent=self.ctx.agent, host=self.ctx.host, journal=journal,
        )
        try:
            return _RUNNERS[name](run, self.ctx)
        except StaleState:
            if journal is not None and self.journal.written:
                self._check_journal_still_ours()
            raise
        finally:
            # A read's problems mid-run (the gate closed, TLS off) are the steps' own doing: the plan and the steps say it.
            for warning in run.warnings if name != "xu_tls_info" else ():
                self.ctx.warn(warning)

    def _check_journal_still_ours(self) -> None:
        """After a refused write of a call that carried this run's journal: LeaseLost unless the journal on the host is
        still this run's (or the run's it took over). Gone or another run's, the host was taken over meanwhile (this run
        stalled past its lease, say); a write planned afresh would then make a new journal, not renew this one."""
        self.ctx.agent.drop_carried()
        owner = (journal_content(_journal_answer(self.ctx.agent, self.journal.name)) or {}).get("run_id")
        if owner not in (self.ctx.run_id, *((self.journal.taken_over,) if self.journal.taken_over else ())):
            taker = f"the journal is now run {owner}'s" if owner else "the journal was removed by another run"
            raise LeaseLost(f"{taker} since this run wrote it")

    def read(self, *, fresh: bool = False) -> dict[str, Any]:
        """xu_tls_info's report; from what the last call saw, unless ``fresh``."""
        if fresh:
            self.ctx.agent.drop_carried()
        return self.module("xu_tls_info", {
            "fqdn": self.options["fqdn"] or None, "gate_rule_group": self.options["gate_rule_group"],
            "journal_name": self.options["journal_name"], "expiry_warning_days": int(self.options["before_days"]),
        })

    def _swap_source(self) -> dict[str, Any]:
        """Where the new certificate comes from, as xu_cert_swap takes it."""
        plan, secrets, options = self.plan, self.ctx.secrets, self.options
        content: str | None
        password: str | None
        if plan.source == "acme":
            if self.ordered is None:
                raise XuError("the order step has not ordered the certificate")
            content, password = self.ordered.content, self.ordered.password
        else:
            content, password = secrets.pfx_content, secrets.pfx_password
        pfx = plan.source in ("pfx", "pfx_content", "acme")
        return {
            "new_thumbprint": plan.new_thumbprint if plan.source == "thumbprint" else None,
            "enroll": dict(plan.enroll) if plan.source == "enroll" and plan.enroll else None,
            "pfx_path": plan.pfx_path if plan.source == "pfx" else None,
            "pfx_content": content if plan.source in ("pfx_content", "acme") else None,
            "pfx_password": password if pfx and password else None,
            "ca_path": options["ca_path"] if pfx and options["ca_path"] else None,
        }

    def _allow_shorter(self) -> bool:
        # A certificate the ACME CA has just issued is no stale file given by mistake: shorter than the bound one is
        # what an early renewal the CA asked for (a revocation) or a CA's shorter lifetime gives.
        return bool(self.options["allow_shorter"]) or self.plan.source == "acme"

    def _fqdn(self) -> str | None:
        return str(self.options["fqdn"]) if self.options["fqdn"] else None

    def _outage_began(self) -> None:
        if self.outage_start is None:
            self.outage_start = time.monotonic()

    def _outage_ended(self) -> None:
        if self.outage_start is not None:
            self.outage_s = round(time.monotonic() - self.outage_start, 1)

    # -- the steps ------------------------------------------------------------------------------------------------------

    def _last_change(self, steps: tuple[Step, ...], step: Step) -> bool:
        """Whether ``step`` is the sequence's last change: its call removes the journal once the host sees it served."""
        return [s for s in steps if s.changes][-1] is step and not self.plan.controller_check

    def run_step(self, step: Step, last: bool) -> None:
        getattr(self, f"_{step.name}")(last)

    def _close_gate(self, last: bool) -> None:
        self._outage_began()
        self.gates = Gates(gate=True, hold=True)
        self.module("xu_firewall_gate", {
            "state": "closed", "allow_from": list(self.options["gate_allow_from"]), "auto_open_after": self.options["gate_auto_open_after"],
            "rule_group": self.options["gate_rule_group"], "hold": {"state": "closed", "ports": [self.plan.http_port]},
        }, self.journal.ride(last=last))
        # Informational (the recovery reads the host, not the step): a run interrupted later says the gate was closed.
        self.journal.note("gate_closed")

    def _tls_off(self, last: bool) -> None:
        result = self.module("xu_tls_binding", {
            "web_protocol": "http_unrestricted", "restart": "if_changed", "wait_timeout": self.options["wait_timeout"],
        }, self.journal.ride(last=last))
        self.journal.note("tls_off", backup_file=result.get("backup_file"))

    def _renew(self, last: bool) -> None:
        documented = self.plan.strategy == "documented"
        if not documented:
            self._outage_began()
        result = self.module("xu_cert_swap", {
            "old_thumbprint": self.plan.old_thumbprint, "renew_reusing_key": True, "grant_key_access": True, "fqdn": self._fqdn(),
            # documented: TLS on names it in the settings, with the protocol, in one write.
            "update_references": not documented,
            "restart": "never" if self.plan.config_separate else "if_changed", "wait_timeout": self.options["wait_timeout"],
        }, self.journal.ride(last=last and not documented))
        self.new = str(result["new_thumbprint"])
        self.journal.note("renewed", new_thumbprint=self.new, backup_files=result.get("backup_files"))
        if not documented and not self.plan.config_separate:
            self._outage_ended()

    def _order(self, last: bool) -> None:
        del last
        # On the controller: a failure here leaves the host untouched (no call was made) and no challenge record.
        if self.ctx.acme is None:
            raise XuError("xu_renew_mode acme needs the xu_renew_acme_* variables")
        ordered = self.ctx.acme.order(self.info.get("fqdn"), self.ctx.served_der)
        self.ctx.secrets_made |= {ordered.content, ordered.password}
        self.ordered = ordered
        report = ordered.report
        seconds = ", ".join(f"{phase} {value:g} s" for phase, value in report["seconds"].items())
        self.steps[-1].detail = f"{', '.join(report['names'])} until {report['not_after']} from {report['issuer']} ({seconds})"

    def _install(self, last: bool) -> None:
        enable = self.plan.enable_tls
        if not enable:
            self._outage_began()
        result = self.module("xu_cert_swap", {
            "old_thumbprint": None if enable else self.plan.old_thumbprint, **self._swap_source(), "grant_key_access": True,
            "allow_shorter": self._allow_shorter(),
            "strict_san": self.options["strict_san"], "fqdn": self._fqdn(), "update_references": not enable,
            "remove_old": self.plan.remove_old_in_swap, "restart": "never" if enable or self.plan.config_separate else "if_changed",
            "wait_timeout": self.options["wait_timeout"],
        }, self.journal.ride(last=last))
        self.new = str(result["new_thumbprint"])
        self.journal.note("installed", new_thumbprint=self.new, backup_files=result.get("backup_files"))
        if not enable and not self.plan.config_separate:
            self._outage_ended()

    def _bind_config(self, last: bool) -> None:
        self.module("xu_tls_binding", {
            "web_certificate": self.new, "config_server_certificate": self.new, "grant_key_access": True,
            "strict_san": self.options["strict_san"], "fqdn": self._fqdn(), "restart": "if_changed", "wait_timeout": self.options["wait_timeout"],
        }, self.journal.ride(last=last))
        self._outage_ended()

    def _tls_on(self, last: bool) -> None:
        plan = self.plan
        if plan.enable_tls:
            self._outage_began()
            if plan.source == "thumbprint":
                self.new = plan.new_thumbprint
        config = plan.bind_config if plan.enable_tls else plan.config_tls
        result = self.module("xu_tls_binding", {
            "web_protocol": plan.web_protocol if plan.enable_tls else plan.previous_web_protocol, "web_certificate": self.new,
            "config_server_certificate": self.new if config else None, "grant_key_access": True, "strict_san": self.options["strict_san"],
            "fqdn": self._fqdn(), "restart": "if_changed", "wait_timeout": self.options["wait_timeout"],
        }, self.journal.ride(last=last))
        self.journal.note("tls_on", backup_file=result.get("backup_file"))
        if plan.enable_tls:
            self._outage_ended()

    def _verify(self, last: bool) -> None:
        del last
        # What the last call saw after its restart: no call of its own.
        self.info_after = self.read()
        verdict = verify(self.info_after, self.new, self.plan.web_protocol, self.plan.config_tls)
        if not verdict.ok:
            raise XuError("; ".join(verdict.problems))
        self.serving_tls = True

    def _controller_check(self, last: bool) -> None:
        del last
        info = as_dict(self.info_after)
        config = as_dict(info.get("config_server"))
        checked = self.module("xu_tls_verify", {
            "ca_path": self.options["ca_path"], "fqdn": info.get("fqdn"), "web_https_port": as_dict(info.get("web_server")).get("https_port"),
            "config_server_port": config.get("port") if self.plan.config_tls else None, "expected_thumbprint": self.new,
        })
        self.steps[-1].detail = "; ".join(
            f"{port['name']} {port['port']} presents {port['thumbprint']}, trusted" for port in checked["ports"]
        )

    def _open_gate(self, last: bool) -> None:
        self.module("xu_firewall_gate", {
            "state": "open", "rule_group": self.options["gate_rule_group"], "hold": {"state": "open"},
        }, self.journal.ride(last=last))
        self.gates = Gates()
        self._outage_ended()

    def _remove_old(self, last: bool) -> None:
        try:
            self.module("xu_cert_swap", {
                "old_thumbprint": self.plan.old_thumbprint, "new_thumbprint": self.new, "remove_old": True, "restart": "never",
                "allow_shorter": self._allow_shorter(),
            }, self.journal.ride(last=last))
        except StaleState:
            # The renewal is verified: the removal (guarded on the host by what is served) is planned again from a fresh read.
            self.ctx.agent.drop_carried()
            self.module("xu_cert_swap", {
                "old_thumbprint": self.plan.old_thumbprint, "new_thumbprint": self.new, "remove_old": True, "restart": "never",
                "allow_shorter": self._allow_shorter(),
            }, self.journal.ride(last=last))

    # -- the run --------------------------------------------------------------------------------------------------------

    def renew(self) -> None:
        """The plan's steps in order; any failure is recovered before the gates open."""
        self.journal.start(start_journal(self.plan, self.ctx.run_id, iso(utc_now())))
        self.gates.hold = self.plan.close_gate
        steps = steps_for(self.plan)
        for step in steps:
            with self.step(step.name):
                self.run_step(step, self._last_change(steps, step))
        if self.journal.on_host:
            with self.step("done"):
                self.remove_journal()

    def remove_journal(self) -> None:
        """The journal's removal in a call of its own (a sequence whose last call could not carry it), over its hash as known."""
        current = _journal_answer(self.ctx.agent, self.journal.name)
        try:
            removal = JournalRide(self.journal.name, "absent", None, None).removal_operations(current, self.ctx.run_id, self.journal.taken_over)
        except XuError as e:
            raise LeaseLost(e.msg) from e
        if removal:
            (answer,) = self.ctx.agent.call(removal)
            if not answer.ok and (answer.error or {}).get("type") == "HashMismatch":
                raise XuError(f"the journal {self.journal.name} was written by another run since this run wrote it; it is left to that run", busy=True)
            answer.value()
        self.ctx.agent.journal_present[self.journal.name] = False

    def run(self) -> None:
        """The act phase: finish an interrupted run first, then renew; recover from any failure; open the gates.

        HostLost (the connection failed) goes to the caller once recorded: the host is reported unreachable, its journal
        and lease let the next run complete or roll back, and the gate reopens by itself at its deadline.
        """
        try:
            try:
                if self.plan.action == "resume":
                    self.resume()
                if self.plan.action == "renew":
                    self.renew()
            except StepFailed as failure:
                self.rescue(failure)
            except HostLost as dropped:
                # One dropped connection is not yet a lost host: what the step did is unknown, so the host is read afresh
                # and recovered as after a failed step. A connection that fails again is a lost host.
                self.rescue(StepFailed(dropped.step, XuError(f"{dropped}; what the step did is not known")))
            except LeaseLost as lost:
                self._lease_lost(self.steps[-1].step if self.steps else "resume", str(lost))
        except HostLost as lost:
            self.lost = lost
            self.plan = replace(self.plan, action="unreachable", reason=(
                f"the connection was lost in step {lost.step} ({lost}); the journal on the host lets the next run complete"
                " or roll back what this one started" + ("; the gate reopens by itself at its deadline" if self.gates.gate else "")
            ))
            raise
        finally:
            if self.lost is None:
                self.open_gates()

    # -- recovery -------------------------------------------------------------------------------------------------------

    def rescue(self, failure: StepFailed) -> None:
        """Put back what the failed step left (or complete it, when the previous certificate is gone), and record it."""
        fields = failure.fields
        self.journal.note(None, new_thumbprint=fields.get("new_thumbprint"), backup_file=fields.get("backup_file"),
                          backup_files=fields.get("backup_files"))
        self.journal.note_sent()
        if failure.step in CONTROLLER_STEPS and not self.journal.written:
            # A step on the controller (the ACME order) failed before this renewal's first change: there is nothing to undo.
            self.failure = outcome(failure.step, {"msg": failure.msg, **fields}, _no_recovery("nothing had been changed"), None, [])
            return
        busy = bool(fields.get("busy")) or isinstance(failure.cause, StaleState)
        if busy and not self.journal.on_host:
            # Another run (or a hand edit) got there before this run's first change: nothing of this run is to undo.
            self._busy(fields.get("owner"), failure.msg)
            return
        try:
            if busy:
                raise LeaseLost(failure.msg)
            recovery, check, errors = self.recover(ROLLBACK, failure.step)
        except LeaseLost as lost:
            self._lease_lost(failure.step, str(lost))
            return
        self._outage_ended()
        self.failure = outcome(failure.step, {"msg": failure.msg, **fields}, recovery, check.as_fact() if check else None, errors)

    def recover(self, prefer: str, step: str) -> tuple[Recovery, Verification | None, list[str]]:
        """Read the host afresh, decide from the journal, and carry the recovery out; every call keeps the lease.

        LeaseLost when another run holds the host now (a live lease of its own, or a call refused on the journal's hash).
        """
        with self.step("recover") as record:
            try:
                info = self.read(fresh=True)
            except XuError as e:
                return _no_recovery(f"the server could not be read ({e.msg}); the journal stays for the next run"), None, [e.msg]
            owner = lease_owner(as_dict(info.get("journal")), self.ctx.run_id, self.ctx.agent.host_now())
            # The run this one took over (xu_renew_take_over) holds the lease until this run's first write replaces it.
            if owner is not None and owner["run_id"] != self.options["take_over"]:
                raise LeaseLost(f"run {owner['run_id']} holds its lease until {owner['lease_expires']}")
            journal = self.journal.record
            recovery = recover(journal, info, prefer) if journal is not None else _no_recovery("nothing had been changed")
            record.detail = f"{recovery.action}: {recovery.reason} (after {step})"
            if not recovery.acts:
                return recovery, None, []
            errors = self._carry_out(recovery)
            check = self._check_recovery(recovery, errors)
        if check.ok and not errors and self.journal.on_host:
            # After the gates: a run that dies before it opened them leaves its journal for the next one.
            self.open_gates()
            with contextlib.suppress(StepFailed), self.step("done"):
                self.remove_journal()
        return recovery, check, errors

    def _recovery_call(self, name: str, params: dict[str, Any], errors: list[str]) -> dict[str, Any] | None:
        """One call of the recovery, the journal riding in it; its error is collected, a lost lease ends the recovery."""
        try:
            return self.module(name, params, self.journal.ride())
        except StaleState as e:
            raise LeaseLost(e.msg) from e
        except XuError as e:
            if e.fields.get("busy"):
                raise LeaseLost(e.msg) from e
            errors.append(e.msg)
            return None

    def _carry_out(self, recovery: Recovery) -> list[str]:
        """The restores, then the swap, then the rebind; each goes on after an error, so a host gets as far back as it can."""
        errors: list[str] = []
        wait = self.options["wait_timeout"]
        for restore in recovery.restores:
            self._recovery_call("xu_tls_restore", {
                "backup_file": restore.backup_file, "path": restore.path, "restart": restore.restart, "wait_timeout": wait,
            }, errors)
        if recovery.swap is not None:
            swapped = self._recovery_call("xu_cert_swap", {
                "old_thumbprint": recovery.swap.old_thumbprint, "new_thumbprint": recovery.swap.new_thumbprint,
                "renew_reusing_key": recovery.swap.renew_reusing_key, "grant_key_access": True, "restart": recovery.swap.restart,
                "wait_timeout": wait,
            }, errors)
            self.new = self.new or (swapped or {}).get("new_thumbprint")
        if recovery.rebind is not None:
            rebind = recovery.rebind
            self._recovery_call("xu_tls_binding", {
                "web_protocol": rebind.web_protocol, "web_certificate": rebind.web_certificate,
                "config_server_certificate": rebind.config_server_certificate, "grant_key_access": True, "restart": rebind.restart,
                "wait_timeout": wait,
            }, errors)
        return errors

    def _check_recovery(self, recovery: Recovery, errors: list[str]) -> Verification:
        """What the server serves after the recovery; a completed run's old certificate goes once the new one is verified."""
        try:
            info = self.read(fresh=True)
        except XuError as e:
            errors.append(e.msg)
            return Verification(False, (e.msg,), None, False)
        self.info_after = info
        expected = recovery.expect or (self.new if recovery.action == COMPLETE else None)
        check = verify(info, expected, recovery.web_protocol, recovery.config_tls, recovery.require_valid)
        self.serving_tls = check.serving_tls
        if recovery.action == COMPLETE and check.ok:
            self.new = check.thumbprint
            if recovery.remove_old:
                self._recovery_call("xu_cert_swap", {
                    "old_thumbprint": recovery.old_thumbprint, "new_thumbprint": check.thumbprint, "remove_old": True, "restart": "never",
                }, [])
        return check

    def resume(self) -> None:
        """An interrupted run left its journal and its lease has expired: take it over, complete or roll it back, then
        read the server again; a host still due is renewed in this run."""
        interrupted = parse_journal(self.info.get("journal"))
        with self.step("resume") as record:
            if interrupted is None:
                raise XuError("the journal of the interrupted run cannot be read as this role's journal; check the host and remove it by hand")
            # Taken over: this run's lease replaces the interrupted run's, in the first call that changes anything.
            self.journal.start(replace(interrupted, run_id=self.ctx.run_id))
            self.journal.taken_over = str(interrupted.run_id) if interrupted.run_id else None
            self.gates = Gates(gate=self.gates.gate or bool(interrupted.gate), hold=bool(interrupted.gate))
            decided = recover(interrupted, self.info, COMPLETE)
            record.detail = f"{decided.action}: {decided.reason}"
            if decided.action == "manual":
                raise XuError(decided.reason)
        recovery, check, errors = self.recover(COMPLETE, "resume")
        if check is None or not check.ok or errors:
            problems = errors + list(check.problems if check else ())
            raise StepFailed("resume", XuError(f"the interrupted run could not be finished ({recovery.reason}): {'; '.join(problems)}"))
        self.resumed = "completed" if recovery.action == COMPLETE else "rolled_back"
        # Why the run resumed (an expired lease, or a take-over by name), then what it did.
        self.resume_reason = f"{self.plan.reason}: {recovery.reason}"
        # What is served now, as verified: an AD CS renewal's certificate is found by its key, so the journal may not name it.
        self.resumed_thumbprints = (interrupted.old, check.thumbprint if recovery.action == COMPLETE else None)
        # Read afresh: the resumed run's outcome decides whether this host is still due.
        self.info = self.read(fresh=True)
        self.plan = self.planner(self.info)
        self.journal.start(None)
        self.new = None

    def open_gates(self) -> None:
        """Open what this run (or the interrupted one) closed: the gate, and the HTTP hold once TLS is served; the host's
        auto-open task reopens the gate if this fails."""
        gates = self.gates
        if not (gates.gate or (gates.hold and self.serving_tls)):
            return
        release_hold = gates.hold and self.serving_tls
        ride = self.journal.ride() if self.journal.record is not None and self.journal.on_host else None
        try:
            with self.step("finish"):
                result = self.module("xu_firewall_gate", {
                    "state": "open", "rule_group": self.options["gate_rule_group"], "hold": {"state": "open"} if release_hold else None,
                }, ride)
        except (StepFailed, HostLost):
            return
        self.gate_reopened = self.gate_reopened or (gates.gate and bool(result.get("changed")))
        self.gates = Gates(gate=False, hold=gates.hold and not release_hold)
        # The clients' outage ends when the gate opens, after a failure too.
        self._outage_ended()

    def _lease_lost(self, step: str, why: str) -> None:
        """Another run holds the host now (it took the lease over, or wrote the journal since this run did): this run
        stops as busy, and neither undoes nor opens anything; the host is that run's to finish."""
        self.gates = Gates()
        self.plan = replace(self.plan, action="busy", reason=(
            f"another run holds the host now ({why}); this run stopped at step {step} and left the host to that run"
        ))

    def _busy(self, owner: Any, why: str) -> None:
        owner = as_dict(owner)
        self.gates = Gates()
        reason = (
            f"another run ({owner.get('run_id', 'unknown')}) is working on this host ({last_step_words(owner.get('step'))}),"
            f" lease until {owner.get('lease_expires') or 'unknown'}; this run changed nothing"
            if owner else f"the host changed after this run read it and before its first change (another run, or a hand edit; {why}); this run changed nothing"
        )
        self.plan = replace(self.plan, action="busy", owner=owner, reason=reason)

    # -- the result -----------------------------------------------------------------------------------------------------

    def summary(self, check_mode: bool = False) -> dict[str, Any]:
        info = self.info_after if self.new and self.info_after is not None else self.info
        record = RunRecord(
            new_thumbprint=self.new, outage_s=self.outage_s, resumed=self.resumed, resume_reason=self.resume_reason,
            failure=self.failure, check_mode=check_mode, gate_reopened=self.gate_reopened, resumed_thumbprints=self.resumed_thumbprints,
        )
        return {**summary(self.plan, info, record).as_fact(), "host": self.ctx.host}


def _no_recovery(reason: str) -> Recovery:
    return Recovery(action="none", reason=reason, expect=None, web_protocol=None, config_tls=False, require_valid=False)


def _journal_answer(agent: CarriedStateAgent, name: str) -> dict[str, Any] | None:
    """The journal as the host last reported it (answered from the carried state when the last call read it)."""
    return agent.call([Operation("journal_read", {"name": name})])[0].value()


# What a call costs beyond the waits it is given: the probes after a restart, the WinRM round trip, powershell.exe.
CALL_OVERHEAD_S = 120


def call_budget_s(options: Mapping[str, Any]) -> float:
    """The longest one call of a run may take: a restart's wait (its rollback is a call of its own), or certreq's."""
    certreq = CERTREQ_TIMEOUT_S if options["mode"] in ("reuse_key", "enroll") else 0
    return float(max(int(options["wait_timeout"]), certreq) + CALL_OVERHEAD_S)


def _read_report(run: ModuleRun, context: EngineContext) -> dict[str, Any]:
    snapshot, report = read_tls_info(run)
    context.note_snapshot(snapshot)
    return report


def _swap(run: ModuleRun, context: EngineContext) -> dict[str, Any]:
    params = run.params
    pfx_path, ca_path = params.get("pfx_path"), params.get("ca_path")
    files = ControllerFiles(
        pfx=context.read_file(pfx_path, str(context.options["pfx_variable"])) if pfx_path else None,
        pfx_source=f"{context.options['pfx_variable']} {pfx_path}" if pfx_path else "xu_renew_pfx_content",
        ca_bundle=context.read_file(ca_path, "xu_renew_ca_path") if ca_path else None,
    )
    return run_cert_swap(run, files)


def _verify_from_controller(run: ModuleRun, context: EngineContext) -> dict[str, Any]:
    return run_tls_verify(
        run, ca_path=context.find_file(run.params["ca_path"], "xu_renew_ca_path"), address=context.address, fqdn=str(run.params["fqdn"]),
    )


_RUNNERS: dict[str, Callable[[ModuleRun, EngineContext], dict[str, Any]]] = {
    "xu_tls_info": _read_report,
    "xu_tls_binding": lambda run, context: run_tls_binding(run),
    "xu_tls_restore": lambda run, context: run_tls_restore(run),
    "xu_firewall_gate": lambda run, context: run_firewall_gate(run, context.connection_ports),
    "xu_cert_swap": _swap,
    "xu_tls_verify": _verify_from_controller,
}

# -- the phases: what one task does on one host ---------------------------------------------------------------------------


def read_info(context: EngineContext) -> dict[str, Any]:
    """xu_tls_info's report of the host (from the carried snapshot when there is one); a failed read is reported, not raised."""
    options = context.options
    run = ModuleRun(
        params=module_params("xu_tls_info", {
            "product": options["product"], "fqdn": options["fqdn"] or None, "gate_rule_group": options["gate_rule_group"],
            "journal_name": options["journal_name"], "expiry_warning_days": int(options["before_days"]), "run_id": context.run_id,
        }),
        check_mode=False, diff=False, task_vars=context.task_vars, agent=context.agent, host=context.host,
    )
    try:
        return _read_report(run, context)
    except XuError as e:
        return {"failed": True, "msg": e.msg}


def plan_host(context: EngineContext, info: Mapping[str, Any]) -> Plan:
    """What this run does on the host, decided from its report and the role's variables; a PFX is judged as the swap will."""
    options = context.options
    request = RenewalRequest(
        before_days=float(options["before_days"]), before_percent=float(options["before_percent"]), force=bool(options["force"]),
        new_thumbprint=options["new_thumbprint"] or None, pfx_path=options["pfx_path"] or None, pfx_variable=str(options["pfx_variable"]),
        pfx_content_given=bool(context.secrets.pfx_content), ca_path=options["ca_path"] or None, remove_old=bool(options["remove_old"]),
        run_id=context.run_id, adopt_issuer=options["adopt_issuer"] or None, adopt_min_days=options["adopt_min_days"],
        template=options["template"] or None, ca_config=options["ca_config"] or None, key_provider=str(options["key_provider"]),
        extra_dns_names=tuple(str(name) for name in options["extra_dns_names"] or ()), enable_tls=bool(options["enable_tls"]),
        tls_off_only=bool(options["tls_off_only"]), web_protocol=str(options["web_protocol"]),
        bind_config_server=bool(options["bind_config_server"]), allow_shorter=bool(options["allow_shorter"]),
        take_over=str(options["take_over"]) or None,
    )
    if context.acme is not None and not (info.get("failed") or info.get("unreachable")):
        request = replace(
            request, ca_verdict=context.acme.verdict(info.get("fqdn"), context.served_der, utc_now()), ca_note=context.acme.note(),
        )
    decided = plan(info, str(options["mode"]), str(options["strategy"]), request)
    if decided.action != "renew" or decided.source not in PFX_SOURCES:
        return decided
    given = PfxInputs(
        pfx=_found(context, decided.pfx_path, str(options["pfx_variable"])) if decided.source == "pfx" else None,
        pfx_content=context.secrets.pfx_content, password=context.secrets.pfx_password,
        ca_bundle=_found(context, options["ca_path"], "xu_renew_ca_path") if options["ca_path"] else None,
        strict_san=bool(options["strict_san"]), allow_shorter=bool(options["allow_shorter"]), pfx_variable=str(options["pfx_variable"]),
    )
    return precheck(decided, given)


def _found(context: EngineContext, path: Any, variable: str) -> bytes | None:
    """A controller file's bytes, None when it cannot be found or read (the plan then says so)."""
    if not path:
        return None
    try:
        return context.read_file(str(path), variable)
    except XuError:
        return None


def assess(context: EngineContext, check_mode: bool) -> dict[str, Any]:
    """The assess phase: one read, the plan, the steps the host would go through; nothing is changed."""
    try:
        info = read_info(context)
    except AnsibleConnectionFailure:
        # One dropped connection is not yet a lost host: the read changes nothing, and is made once more (reconnected).
        info = read_info(context)
    decided = plan_host(context, info)
    result: dict[str, Any] = {
        "changed": False, "action": decided.action, "plan": decided.as_fact(), "steps": planned_steps(decided),
        "state": context.agent.state(), "run_id": context.run_id,
    }
    if decided.action not in ACTING and not decided.gate_closed:
        renewal = Renewal(context, decided, info, lambda report: plan_host(context, report))
        result["summary"] = renewal.summary(check_mode)
    if context.acme is not None:
        result["acme"] = {"assessment": context.acme.to_result()}
    return result


def act(context: EngineContext, check_mode: bool, halt: str | None = None) -> dict[str, Any]:
    """The act phase: the plan made again from the assessment's snapshot (no call of its own), then the steps."""
    info = read_info(context)
    decided = plan_host(context, info)
    renewal = Renewal(context, decided, info, lambda report: plan_host(context, report))
    if halt:
        renewal.plan = replace(decided, action="none")
        return {"changed": False, "summary": {**renewal.summary(), "result": "not_attempted", "reason": halt}, "steps": []}
    if check_mode:
        return _check(context, renewal)
    try:
        renewal.run()
    except HostLost as lost:
        return {
            "unreachable": True, "changed": context.agent.changing_calls > 0, "msg": f"step {lost.step}: {lost}",
            "summary": renewal.summary(), "steps": [s.to_result() for s in renewal.steps], **_acme_result(context, renewal),
        }
    return {
        "changed": context.agent.changing_calls > 0, "summary": renewal.summary(), "steps": [s.to_result() for s in renewal.steps],
        **_acme_result(context, renewal),
    }


def _check(context: EngineContext, renewal: Renewal) -> dict[str, Any]:
    """--check: the steps the host would go through; an ACME order is proven possible (account, names, DNS credentials)."""
    decided = renewal.plan
    result: dict[str, Any] = {"changed": decided.action in ACTING, "summary": renewal.summary(check_mode=True), "steps": planned_steps(decided)}
    if context.acme is None or decided.action != "renew" or decided.source != "acme":
        return result
    try:
        result["acme"] = {"assessment": context.acme.to_result(), "dry_run": context.acme.dry_run(renewal.info.get("fqdn"), context.served_der)}
    except XuError as e:
        result["acme"] = {"assessment": context.acme.to_result()}
        result["summary"] = {**result["summary"], "result": "failed", "reason": f"the ACME order would fail: {e.msg}"}
    return result


def _acme_result(context: EngineContext, renewal: Renewal) -> dict[str, Any]:
    if context.acme is None:
        return {}
    return {"acme": {"assessment": context.acme.to_result(), "order": renewal.ordered.report if renewal.ordered else None}}


def unreachable_summary(context: EngineContext, message: str) -> dict[str, Any]:
    """The summary of a host the run could not reach."""
    info = {"unreachable": True, "msg": message}
    return Renewal(context, plan_host(context, info), info, lambda report: plan_host(context, report)).summary()


# What makes a host part of the act phase: a renewal, or an interrupted run to finish.
ACTING = ("renew", "resume")
