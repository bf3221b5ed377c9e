# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

from typing import Any

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._action_base import ModuleRun, XuActionBase
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._tls_binding import run_tls_binding


class ActionModule(XuActionBase):
    MODULE = "xu_tls_binding"

    def run_module(self, run: ModuleRun) -> dict[str, Any]:
        return run_tls_binding(run)
