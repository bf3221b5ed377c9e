# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A run's lease on a host, kept in its journal. Private to this collection.

A journal with ``run_id`` and ``lease_expires`` says: this run is working on the host until
then. Another run leaves such a host alone; only an expired lease may be taken over (the
journal of an interrupted run, resumed or rolled back by the next one).

The renew engine renews its lease in every call that changes the host (``lease_renewed``), for as long as its longest
call may take (``call_budget_s``: a restart's wait, certreq's) and ``LEASE_MARGIN_S`` more, so the lease outlives any
call by construction. An operator may take over a run that is gone (Ctrl-C, a cancelled AWX job) before its lease has
run out, by naming it (``xu_renew_take_over``), but only once its last call's time limit has passed: until then the run
may still be working, and is left alone.

``lease_expires`` is a time on the host's clock: written as the host's now plus the lease, and judged
against the host's now (``Agent.host_now``, ``Snapshot.host_now``, or ``host_now_from`` of a report's
``host_clock``), so that runs from controllers whose clocks differ, on a host whose clock is off, all see
the same lease.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._certificate import iso, parse_iso
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.gate._gate import MAX_AUTO_OPEN_MINUTES

# The journal the renew role and the modules keep, unless told another name.
DEFAULT_JOURNAL = "renew"

# The longest a lease may run: the gate's longest auto-open delay.
MAX_LEASE_MINUTES = MAX_AUTO_OPEN_MINUTES


# Beyond its longest call, a lease runs this long: the controller's own work between two calls, however loaded.
LEASE_MARGIN_S = 300


def lease_until(host_now: datetime.datetime, minutes: float) -> str:
    """The ``lease_expires`` of a lease of ``minutes`` taken at ``host_now`` (the host's time)."""
    return iso(host_now + datetime.timedelta(minutes=minutes))


def lease_terms(host_now: datetime.datetime, call_budget_s: float) -> dict[str, Any]:
    """What a write of the journal at ``host_now`` records of the lease: renewed now, for the longest call and the margin."""
    return {
        "lease_renewed": iso(host_now),
        "call_budget_s": round(call_budget_s),
        "lease_expires": iso(host_now + datetime.timedelta(seconds=call_budget_s + LEASE_MARGIN_S)),
    }


def takeover_refusal(owner: Mapping[str, Any], host_now: datetime.datetime) -> str | None:
    """Why the run ``owner`` (from ``lease_owner``) may still be working and must not be taken over; None once its last call's
    time limit has passed (or it recorded none: a run of an earlier version, whose lease alone says)."""
    renewed = parse_iso(owner.get("lease_renewed"))
    budget = owner.get("call_budget_s")
    if renewed is None or isinstance(budget, bool) or not isinstance(budget, (int, float)):
        return f"run {owner.get('run_id')} recorded no call limit; it is taken over once its lease runs out, at {owner.get('lease_expires')}"
    limit = renewed + datetime.timedelta(seconds=budget)
    if host_now >= limit:
        return None
    return (
        f"run {owner.get('run_id')} renewed its lease at {iso(renewed)}, and a call of its may take until {iso(limit)}:"
        " it may still be working; take it over after that time"
    )


def lease_owner(current: Mapping[str, Any] | None, run_id: str, host_now: datetime.datetime) -> dict[str, Any] | None:
    """The other run holding a live lease in ``current`` at ``host_now`` (the host's time); None when this run may write the journal."""
    if not current or current.get("run_id") in (None, run_id):
        return None
    expires = parse_iso(current.get("lease_expires"))
    if expires is None or expires <= host_now:
        return None
    return {
        "run_id": current.get("run_id"), "step": current.get("step"), "lease_expires": current.get("lease_expires"),
        "lease_renewed": current.get("lease_renewed"), "call_budget_s": current.get("call_budget_s"),
    }


def host_now_from(host_clock: Mapping[str, Any] | None, controller_now: datetime.datetime) -> datetime.datetime:
    """The host's time now, by the ``host_clock`` an xu_tls_info report carries (its ``offset_s``); the controller's
    time when the report has none (a host that could not be read)."""
    offset = (host_clock or {}).get("offset_s")
    if isinstance(offset, bool) or not isinstance(offset, (int, float)):
        return controller_now
    return controller_now + datetime.timedelta(seconds=offset)


def last_step_words(step: object) -> str:
    """A journal's ``step`` (the last step its run finished) for a message; ``started``: none finished yet."""
    if not step:
        return "last step finished unknown"
    return "no step finished yet" if step == "started" else f"last step finished: {step}"
