# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

from typing import Any, ClassVar

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._action_base import ModuleRun, XuActionBase
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.journal._journal import run_journal


class ActionModule(XuActionBase):
    MODULE = "xu_journal"
    REQUIRED_IF: ClassVar[list[Any]] = [["state", "present", ["content"]]]

    def run_module(self, run: ModuleRun) -> dict[str, Any]:
        return run_journal(run)
