#!/usr/bin/python
# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# The module runs on the controller: see plugins/action/xu_tls_restore.py.

from __future__ import annotations

DOCUMENTATION = r"""
module: xu_tls_restore
short_description: Put an XU settings file back from a backup, byte for byte
version_added: 0.1.0
description:
  - Restores a settings file (by default C(config\servers\tls.json)) from a backup that
    M(xtractuniversal.tls.xu_tls_binding) or M(xtractuniversal.tls.xu_cert_swap) made, restarts the service,
    and checks that the ports serve what the restored settings name.
  - This is the undo step of multi-step runs such as the C(xtractuniversal.tls.renew) role, which record the
    backup in their journal (see M(xtractuniversal.tls.xu_journal)).
  - One remote call reads the state, one more restores the file, restarts the service and probes its ports.
  - When the service does not come back serving what the restored settings say, the restore is undone. The content
    the file had before is written back (only over the restored backup, checked by its SHA-256), the service is
    restarted and checked again (a third call), and the module fails with RV(rolled_back=true).
  - Nothing is changed when the read was incomplete, or when the backup holds a protocol or authentication value this
    collection does not know (what the service serves could then not be checked).
  - The restore itself copies the backup byte for byte; the agent's C(file_restore) takes no hash, so a file changed
    between the read and the restore is overwritten.
extends_documentation_fragment:
  - xtractuniversal.tls.attributes
  - xtractuniversal.tls.product
  - xtractuniversal.tls.run
options:
  backup_file:
    description:
      - The backup on the host, as an absolute path (the C(backup_file) another module returned).
    type: str
    required: true
  path:
    description:
      - The settings file to restore, relative to the install dir or absolute.
    type: str
    default: config\servers\tls.json
  restart:
    description:
      - C(if_changed) restarts the service when the file was restored; C(always) also when it already matched;
        C(never) only restores (the service keeps serving its current settings until it restarts).
    type: str
    choices: [never, if_changed, always]
    default: if_changed
  wait_timeout:
    description:
      - Seconds to wait for the service and its ports after the restart.
    type: int
    default: 120
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  idempotent:
    support: full
    details: A file that already equals the backup is left alone; O(restart=always) restarts every time.
author:
  - xtractuniversal.tls maintainers (@xtractuniversal)
"""

EXAMPLES = r"""
- name: Undo a change
  xtractuniversal.tls.xu_tls_restore:
    backup_file: "{{ binding.backup_file }}"
"""

RETURN = r"""
path:
  description: The settings file on the host.
  returned: always
  type: str
  sample: C:\Program Files\XtractUniversal\config\servers\tls.json
backup_file:
  description: The backup restored from.
  returned: always
  type: str
current_backup_file:
  description: Where the file that was replaced is kept (null when there was no file to replace).
  returned: always
  type: str
  sample: C:\Program Files\XtractUniversal\config\servers\tls.json.20261128T120000Z.bak
restored:
  description: Whether the file differed from the backup (and was, or in check mode would be, restored).
  returned: always
  type: bool
restarted:
  description: Whether the service was restarted.
  returned: always
  type: bool
restart_required:
  description: The file was restored but not put in force (O(restart=never)).
  returned: always
  type: bool
served:
  description: The thumbprint each checked port serves after the restart (null for a plain HTTP port).
  returned: when restarted
  type: dict
  sample: {"web_https": "AD3B9B0C9F6E3F1A2B3C4D5E6F708192A3B4ECE6", "config_server": "AD3B9B0C9F6E3F1A2B3C4D5E6F708192A3B4ECE6"}
rolled_back:
  description:
    - False when the restore took. When the module fails after changing the host, whether the content the file had
      before was written back and the service serves what that content says again.
  returned: always
  type: bool
restored_files:
  description: The settings files that were put back as they were before the restore.
  returned: when a failed restore was undone
  type: list
  elements: str
rollback_problems:
  description: What went wrong while undoing a failed restore.
  returned: when undoing a failed restore did not complete
  type: list
  elements: str
"""
