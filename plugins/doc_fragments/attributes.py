# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Attributes every module of the collection shares.
    DOCUMENTATION = r"""
options: {}
attributes:
  action:
    description: The module runs on the controller as an action plugin and reaches the host through its connection.
    support: full
  async:
    description: Whether the module can run with C(async).
    support: none
  become:
    description: Is usable alongside become keywords.
    support: none
    details:
      - C(become) is ignored. The module's PowerShell runs as the account of the host's connection (C(ansible_user)),
        which must be an administrator of the host. ansible-core applies C(become_method=runas) only inside its own
        module wrapper, which the collection does not use. Work that needs the machine's identity (certreq against
        AD CS) runs in a one-shot SYSTEM task.
  check_mode:
    description: Can run in check mode and return the changes it would make without modifying the host.
  diff_mode:
    description: Returns details on what has changed (or would change in check mode) when run with C(--diff).
  idempotent:
    description: Running the module twice with the same arguments changes nothing the second time.
  platform:
    description: The target operating system.
    platforms: windows
    support: full
"""

    # For modules that only read.
    INFO_MODULE = r"""
options: {}
attributes:
  check_mode:
    support: full
    details: The module only reads; it behaves the same in check mode.
  diff_mode:
    support: none
  idempotent:
    support: full
"""
