#!/usr/bin/python
# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# The module runs on the controller: see plugins/action/xu_journal.py.

from __future__ import annotations

DOCUMENTATION = r"""
module: xu_journal
short_description: Keep a small JSON journal on a Windows host
version_added: 0.1.0
description:
  - Writes or removes a small JSON document under C(%ProgramData%\xtractuniversal.tls) on the host.
  - Multi-step runs such as the C(xtractuniversal.tls.renew) role record the step they reached there, so that
    a run interrupted by a lost controller can be completed or rolled back by the next one.
    M(xtractuniversal.tls.xu_tls_info) reports a journal it finds.
  - The journal folder is readable only by SYSTEM and Administrators. Never put secrets in a journal.
extends_documentation_fragment:
  - xtractuniversal.tls.attributes
options:
  name:
    description:
      - The journal's name; the file is C(<name>.json). Letters, digits, dots, underscores and hyphens.
    type: str
    default: renew
  state:
    description:
      - C(present) writes O(content); C(absent) removes the journal.
    type: str
    choices: [present, absent]
    default: present
  content:
    description:
      - The journal's content. Required with O(state=present).
    type: dict
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  idempotent:
    support: full
author:
  - xtractuniversal.tls maintainers (@xtractuniversal)
"""

EXAMPLES = r"""
- name: Record the step a maintenance run reached
  xtractuniversal.tls.xu_journal:
    content:
      step: gate_closed
      old_thumbprint: AD3B9B0C9F6E3F1A2B3C4D5E6F708192A3B4ECE6

- name: The run is over
  xtractuniversal.tls.xu_journal:
    state: absent
"""

RETURN = r"""
name:
  description: The journal's name.
  returned: always
  type: str
  sample: renew
previous:
  description: The journal's content before the task, or null when there was none.
  returned: always
  type: dict
content:
  description: The journal's content now (null after O(state=absent)).
  returned: always
  type: dict
path:
  description: The journal's path on the host, when the task wrote or removed it.
  returned: changed and not in check mode
  type: str
  sample: C:\ProgramData\xtractuniversal.tls\renew.json
"""
