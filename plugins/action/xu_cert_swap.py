# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

from typing import Any, ClassVar

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._action_base import ModuleRun, XuActionBase
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._cert_swap import ControllerFiles, run_cert_swap


class ActionModule(XuActionBase):
    MODULE = "xu_cert_swap"
    # renew_reusing_key joins the exclusion in code: renew_reusing_key: false must count as absent.
    MUTUALLY_EXCLUSIVE: ClassVar[list[list[str]]] = [["new_thumbprint", "pfx_path", "pfx_content", "enroll"]]
    REQUIRED_ONE_OF: ClassVar[list[list[str]]] = [["new_thumbprint", "pfx_path", "pfx_content", "renew_reusing_key", "enroll"]]
    # Without old_thumbprint there is nothing to replace: the module only installs the new certificate.
    REQUIRED_IF: ClassVar[list[Any]] = [["update_references", True, ["old_thumbprint"]]]
    NO_LOG_OPTIONS: ClassVar[tuple[str, ...]] = ("pfx_password", "pfx_content")

    def run_module(self, run: ModuleRun) -> dict[str, Any]:
        pfx_path = run.params.get("pfx_path")
        ca_path = run.params.get("ca_path")
        files = ControllerFiles(
            pfx=self.read_controller_file(pfx_path, "pfx_path") if pfx_path else None,
            pfx_source=f"pfx_path {pfx_path}" if pfx_path else "the PFX",
            ca_bundle=self.read_controller_file(ca_path, "ca_path") if ca_path else None,
        )
        return run_cert_swap(run, files)
