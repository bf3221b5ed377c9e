# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import datetime
import functools
import secrets
from typing import Any, ClassVar

from ansible.errors import AnsibleConnectionFailure
from ansible.utils.display import Display

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.gate._firewall_gate import connection_ports
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._action_base import ModuleRun, XuActionBase, module_validator
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._agent import AgentClient
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import XuError
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._eventlog import RUN_ID_PATTERN
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._host_state import CarriedStateAgent
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._acme import AcmeSource, secret_values
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._engine import _RUNNERS as COMPOSED_MODULES
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._engine import EngineContext, Secrets, act, assess, unreachable_summary
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._options import (
    RoleOptionsError,
    renew_options,
    role_options_spec,
    role_options_validator,
)

display = Display()


class ActionModule(XuActionBase):
    MODULE = "xu_renew"
    NO_LOG_OPTIONS: ClassVar[tuple[str, ...]] = ("pfx_content", "pfx_password")

    @classmethod
    def prepare_before_forks(cls) -> None:
        super().prepare_before_forks()
        # Every task of the engine checks the role's variables against the role's argument spec and composes these modules.
        # The cache tells role_options_spec() (the renew filters') from role_options_spec("main") (the validator's).
        role_options_spec()
        role_options_validator("main")
        for name in COMPOSED_MODULES:
            module_validator(name)

    def make_agent(self, params: dict[str, Any], host: str, client: AgentClient) -> CarriedStateAgent:
        # The act phase decides from the snapshot the assessment read (no call of its own, unless it is too old).
        carried = (params.get("assessment") or {}).get("state")
        agent, _ignored = CarriedStateAgent.wrap(client, host, carried)
        # Each step is a link of one chain: a call that changes the host reads back, in the same call, what the next step needs.
        agent.chained = True
        return agent

    def run_module(self, run: ModuleRun) -> dict[str, Any]:
        acme_variables = run.params.get("acme") or {}
        # Masked from here on, even in a message about a wrong value.
        run.secrets |= secret_values(acme_variables)
        try:
            options = renew_options(run.params["options"], run.host, playbook_dir=run.task_vars.get("playbook_dir"))
        except RoleOptionsError as e:
            raise XuError(f"The renew role's variables: {e}") from None
        acme = None
        if options["mode"] == "acme":
            acme = AcmeSource.from_variables(acme_variables, run.host, lambda message: display.vv(message, host=run.host))
            run.secrets |= set(acme.settings.secrets)
        context = EngineContext(
            host=run.host,
            agent=self._carried(run),
            options=options,
            secrets=Secrets(run.params.get("pfx_content") or None, run.params.get("pfx_password") or None),
            run_id=self._run_id(run, options),
            task_vars=run.task_vars,
            read_file=self.read_controller_file,
            find_file=self.find_controller_file,
            # The gate must never close the port this very connection uses, whatever it is.
            connection_ports=connection_ports([run.task_vars.get("ansible_port"), self._play_context.port]),
            address=str(run.task_vars.get("ansible_host") or run.host),
            acme=acme,
        )
        phase = assess if run.params["phase"] == "assess" else functools.partial(act, halt=run.params.get("halt"))
        try:
            result = phase(context, run.check_mode)
        except AnsibleConnectionFailure as e:
            # The host could not be read at all: reported unreachable, with a summary that says so.
            result = {"unreachable": True, "msg": str(e), "changed": False, "summary": unreachable_summary(context, str(e))}
        finally:
            run.secrets |= context.secrets_made
        for warning in context.warnings:
            run.warn(warning)
        summary = result.get("summary") or {}
        if summary.get("result") == "failed" and not options["defer_failure"]:
            result.update(failed=True, msg=summary.get("reason") or "failed")
        return result

    @staticmethod
    def _carried(run: ModuleRun) -> CarriedStateAgent:
        if not isinstance(run.agent, CarriedStateAgent):
            raise TypeError("xu_renew runs on the agent make_agent returned")
        return run.agent

    @staticmethod
    def _run_id(run: ModuleRun, options: dict[str, Any]) -> str:
        """The run's id: given (one for every host of the run), the AWX job's, or a new one for this task."""
        given = run.params.get("run_id") or options.get("run_id")
        if not given and run.task_vars.get("awx_job_id"):
            given = f"awx-{run.task_vars['awx_job_id']}"
        if not given:
            stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            return f"{stamp}-{secrets.token_hex(3)}"
        if not RUN_ID_PATTERN.match(str(given)):
            raise XuError(f"run_id {given!r} must be 1 to 64 letters, digits, '.', '_', '-' or ':'")
        return str(given)
