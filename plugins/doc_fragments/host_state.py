# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The state a task hands to the next, so that a step of a run costs one remote call.
    DOCUMENTATION = r"""
options:
  host_state:
    description:
      - The RV(host_state) an earlier task of the same run returned for this host. The module then plans from it
        instead of reading the host, and a step that changes the host costs one remote call.
      - Used only when it was read from this host less than 15 minutes ago; otherwise the host is read, with a warning.
      - Every write stays guarded on the host by what was read (the settings file's hash, the journal's hash, the
        certificate each port serves before one is removed), and the first change planned from O(host_state) first
        checks, in the same call, that every settings file is as O(host_state) read it. When a guard finds the host
        changed since, nothing of the change is made; in a module that changes the host, its C(host_state_changed)
        option says what follows.
      - Omitted, the module reads the host first, as usual.
    type: dict
"""

    CHANGING = r"""
options:
  host_state_changed:
    description:
      - What the module does when a guard finds that the host changed since O(host_state) was read (nothing of the
        change has been made then).
      - V(replan) reads the host again and runs the module once more from that read, which suits a task whose options
        say all it wants.
      - V(fail) fails the task with RV(stale) set, for a caller whose own decisions rest on O(host_state) (the renew
        role), which reads the host again and decides again.
    type: str
    choices: [replan, fail]
    default: replan
"""

    JOURNAL = r"""
options:
  journal:
    description:
      - The run's journal on the host (see M(xtractuniversal.tls.xu_journal)), kept in the same remote call as the change,
        so that it costs no call of its own.
      - With O(journal.state=present) the journal is written before the change, as this run's lease on the host.
        With O(journal.state=absent) it is removed after the change, in the same call, and only when the change
        succeeded (after a restart, only when the host itself sees its ports serve what the settings name).
        With O(journal.state=during) it is both written before and removed after, for a run whose only change is this one.
      - A journal that another run holds with a live lease makes the module fail with RV(busy) before any change.
    type: dict
    suboptions:
      name:
        description: The journal's name (letters, digits, C(.), C(_), C(-)).
        type: str
        default: renew
      state:
        description: Whether the journal is written before the change, removed after it, or both.
        type: str
        choices: [present, absent, during]
        default: present
      content:
        description:
          - The journal's content; required with O(journal.state=present) and O(journal.state=during). C(run_id) (and C(lease_expires)) are added.
        type: dict
      lease_minutes:
        description:
          - How long the journal holds the host for this run, from the write on (1 to 10080).
        type: int
"""
