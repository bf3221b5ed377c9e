# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A run's lease on a host, kept in its journal. Private to this collection.

A journal with ``run_id`` and ``lease_expires`` says: this run is working on the host until
then. Another run leaves such a host alone; only an expired lease may be taken over (the
journal of an interrupted run, resumed or rolled back by the next one).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._certificate import parse_iso
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._gate import MAX_AUTO_OPEN_MINUTES

# The journal the renew role and the modules keep, unless told another name.
DEFAULT_JOURNAL = "renew"

# The longest a lease may run: the gate's longest auto-open delay.
MAX_LEASE_MINUTES = MAX_AUTO_OPEN_MINUTES


def lease_owner(current: Mapping[str, Any] | None, run_id: str, now: datetime.datetime) -> dict[str, Any] | None:
    """The other run holding a live lease in ``current``; None when this run may write the journal."""
    if not current or current.get("run_id") in (None, run_id):
        return None
    expires = parse_iso(current.get("lease_expires"))
    if expires is None or expires <= now:
        return None
    return {"run_id": current.get("run_id"), "step": current.get("step"), "lease_expires": current.get("lease_expires")}
