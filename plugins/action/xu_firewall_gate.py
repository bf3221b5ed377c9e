# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

from typing import Any

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.gate._firewall_gate import connection_ports, run_firewall_gate
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._action_base import ModuleRun, XuActionBase


class ActionModule(XuActionBase):
    MODULE = "xu_firewall_gate"

    def run_module(self, run: ModuleRun) -> dict[str, Any]:
        # The gate must never close the port this very connection uses, whatever it is.
        in_use = connection_ports([run.task_vars.get("ansible_port"), self._play_context.port])
        return run_firewall_gate(run, in_use)
