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
  - With O(lease_minutes) the journal is also the run's lease on the host. The journal records the run
    (O(run_id)) and until when it holds the host (C(lease_expires)); each write renews it. Another run finds
    the lease live and leaves the host alone (the task fails with RV(busy)); only a lease that has expired
    may be taken over. Every write is made only over the journal the task read (or over none), so two runs
    that read at the same moment cannot both take the host.
extends_documentation_fragment:
  - xtractuniversal.tls.attributes
  - xtractuniversal.tls.run
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
  lease_minutes:
    description:
      - Hold the host for this many minutes from now (1 to 10080); the written journal gets C(run_id) (this
        task's O(run_id)) and C(lease_expires). Without it the journal is written as given, but a live lease of
        another run is still respected.
    type: int
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
- name: Take the host for an hour, or fail as busy when another run holds it
  xtractuniversal.tls.xu_journal:
    run_id: "maintenance-{{ ansible_date_time.iso8601_basic_short }}"
    lease_minutes: 60
    content:
      step: started

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
busy:
  description: Another run holds a live lease on the host (its journal); nothing was changed.
  returned: failed
  type: bool
owner:
  description: The run that holds the host, when RV(busy) (C(run_id), C(step), C(lease_expires)).
  returned: failed
  type: dict
  sample: {"run_id": "awx-4711", "step": "tls_off", "lease_expires": "2026-11-28T12:30:00Z"}
lease_expires:
  description: Until when this run holds the host (with O(lease_minutes)), else null.
  returned: always
  type: str
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
