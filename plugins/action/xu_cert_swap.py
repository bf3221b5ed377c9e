# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

from typing import Any, ClassVar

from ansible.errors import AnsibleError

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._action_base import ModuleRun, XuActionBase
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._cert_swap import ControllerFiles, run_cert_swap
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._errors import XuError


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
            pfx=self._read_controller_file(pfx_path, "pfx_path") if pfx_path else None,
            pfx_source=f"pfx_path {pfx_path}" if pfx_path else "the PFX",
            ca_bundle=self._read_controller_file(ca_path, "ca_path") if ca_path else None,
        )
        return run_cert_swap(run, files)

    def _read_controller_file(self, path: str, option: str) -> bytes:
        """A file on the controller, found like the copy module finds its src (a role's or play's files/), vault decrypted."""
        try:
            found = self._find_needle("files", path)
            real = self._loader.get_real_file(found, decrypt=True)
        except AnsibleError as e:
            raise XuError(f"{option} {path} cannot be read on the controller: {e.message}") from e
        try:
            with open(real, "rb") as handle:
                return handle.read()
        except OSError as e:
            raise XuError(f"{option} {path} cannot be read on the controller: {e.strerror}") from e
        finally:
            self._loader.cleanup_tmp_file(real)
