"""The public modules' logic run in-process on one shared agent, as the renewal engine composes them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.gate._firewall_gate import run_firewall_gate
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._action_base import ModuleRun, module_params
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._agent import AgentClient
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import XuError
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._host_state import CarriedStateAgent
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.journal._journal import JournalRide
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._cert_swap import ControllerFiles, run_cert_swap
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._tls_binding import run_tls_binding
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._tls_info import run_tls_info
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._tls_restore import run_tls_restore
from support.fake_host import FakeHost

RUNNERS: dict[str, Callable[[ModuleRun], dict[str, Any]]] = {
    "xu_tls_info": run_tls_info,
    "xu_tls_binding": run_tls_binding,
    "xu_tls_restore": run_tls_restore,
    "xu_firewall_gate": lambda run: run_firewall_gate(run, set()),
    "xu_cert_swap": lambda run: run_cert_swap(run, ControllerFiles()),
}


@dataclass
class Steps:
    """One run's steps on one host: every module shares the agent, so a step answers its reads from what the last call saw."""

    host: FakeHost
    agent: CarriedStateAgent = field(init=False)
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # As after an assessment: the first change decided from what was read is guarded by the settings files read.
        self.agent = CarriedStateAgent(AgentClient(self.host.transport), "xu01", chained=True, guard_pending=True)

    def run(self, module: str, params: dict[str, Any], journal: JournalRide | None = None) -> dict[str, Any]:
        run = ModuleRun(
            params=module_params(module, params), check_mode=False, diff=False, task_vars={}, agent=self.agent, host="xu01",
            journal=journal,
        )
        try:
            return RUNNERS[module](run)
        except XuError as e:
            return e.to_result() | {"error": e}
        finally:
            self.warnings += run.warnings
