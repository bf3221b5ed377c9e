# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleError

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._action_base import ModuleRun, XuActionBase
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import XuError
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._tls_verify import run_tls_verify


class ActionModule(XuActionBase):
    MODULE = "xu_tls_verify"
    # Everything happens on the controller: no connection to the host is opened.
    _requires_connection = False

    def run_module(self, run: ModuleRun) -> dict[str, Any]:
        try:
            ca_path = self._find_needle("files", run.params["ca_path"])
        except AnsibleError as e:
            raise XuError(f"ca_path {run.params['ca_path']} cannot be found on the controller: {e.message}") from e
        address = run.params.get("address") or run.task_vars.get("ansible_host") or run.host
        fqdn = run.params.get("fqdn") or run.host
        return run_tls_verify(run, ca_path=ca_path, address=str(address), fqdn=str(fqdn))
