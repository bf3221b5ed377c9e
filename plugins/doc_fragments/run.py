# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The run a change belongs to; shared by every module that changes a host.
    DOCUMENTATION = r"""
options:
  run_id:
    description:
      - An identifier of the run this change belongs to. Each change also leaves an entry in the host's
        Windows Application event log (source C(xtractuniversal.tls), registered on first use), naming
        what changed, the old and new thumbprints and this run id, so that the host's own log tells which
        run did what.
      - The renew role passes its run id (C(xu_renew_run_id), or the AWX job id). Defaults to a new id per
        task, made of the UTC time and a random suffix.
      - Letters, digits, C(.), C(_), C(-) and C(:), at most 64 characters.
    type: str
"""
