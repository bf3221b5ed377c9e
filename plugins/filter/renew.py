# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The renew playbook's fleet-wide decisions, as filters.

Each host's renewal is one task of xtractuniversal.tls.xu_renew; what spans hosts is decided here, in typed code of
plugin_utils/renew/_fleet.py, each filter converting what the play hands in:

``renew_secrets``   the PFX and its password the role uses: a credential's when set, else the host's own (_renew_options)
``renew_batches``   the renew play's batch sizes, from xu_renew_serial or the default (a canary, then the rest)
``renew_halt``      whether the earlier batches failed more than allowed, so this one must not start
``renew_fleet``     the fleet summary's lines, totals and the hosts that fail the run

Each filter has its documentation in ``plugins/filter/<name>.yml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._fleet import (
    BatchesError,
    batch_halt,
    batch_sizes,
    fail_on_blocked_option,
    fleet_report,
    summary_of,
)
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._options import RoleOptionsError, pfx_secrets, role_options_spec


def _by_host(value: Any, what: str) -> dict[str, Mapping[str, Any]]:
    if not isinstance(value, Mapping):
        raise AnsibleFilterError(f"{what} must map host names to the hosts' results")
    return {str(host): entry if isinstance(entry, Mapping) else {} for host, entry in value.items()}


def renew_secrets(values: Any) -> dict[str, str]:
    """{pfx_content, pfx_password}: a credential's when set, else the host's own (see _renew_options.pfx_secrets)."""
    if not isinstance(values, Mapping):
        raise AnsibleFilterError(f"renew_secrets takes a dict of the role's secret variables, not {type(values).__name__}")
    try:
        return pfx_secrets(values)
    except RoleOptionsError as e:
        raise AnsibleFilterError(f"The renew role's variables: {e}") from None


def renew_batches(serial: Any) -> list[int | str]:
    """The renew play's ``serial``: xu_renew_serial as batch sizes, or the default (a canary, then the rest)."""
    try:
        return batch_sizes(serial)
    except BatchesError as error:
        raise AnsibleFilterError(str(error)) from None


def renew_halt(results: Any, current: Any, max_fail_percentage: Any, halts: Any = None) -> dict[str, Any]:
    """{halt, reason, batch}: whether this batch must not start, because the earlier ones failed more than allowed.

    ``results`` maps each host of the play to its act result ({} before it acted), ``halts`` to the verdict its batch
    got (``batch``: the hosts of that batch; {} for the hosts of batches not started).
    """
    if max_fail_percentage is None or max_fail_percentage == "":
        # An empty answer means the documented default.
        max_fail_percentage = role_options_spec()["xu_renew_max_fail_percentage"]["default"]
    try:
        percentage = int(max_fail_percentage)
    except (TypeError, ValueError):
        raise AnsibleFilterError(f"xu_renew_max_fail_percentage must be a whole number, not {max_fail_percentage!r}") from None
    if not isinstance(current, list):
        raise AnsibleFilterError("current must be the list of the hosts of this batch")
    acted = _by_host(results, "results")
    batches = {
        host: [str(h) for h in verdict["batch"]]
        for host, verdict in _by_host(halts or {}, "halts").items() if isinstance(verdict.get("batch"), list)
    }
    summaries = {host: summary for host, result in acted.items() if (summary := summary_of(result, {})) is not None}
    reason = batch_halt(batches, summaries, [str(h) for h in current], percentage)
    return {"halt": reason is not None, "reason": reason, "batch": [str(h) for h in current]}


def renew_fleet(results: Any, group_hosts: Any, targeted: Any, fail_on_blocked: Any = True) -> dict[str, Any]:
    """{lines, totals, results, failures}: the fleet summary of a renew run.

    ``results`` maps each targeted host to its act result and its assessment, as a pair (either may be {}).
    """
    if not isinstance(group_hosts, list) or not isinstance(targeted, list):
        raise AnsibleFilterError("group_hosts and targeted must be lists of host names")
    try:
        fail = fail_on_blocked_option(fail_on_blocked)
    except BatchesError as e:
        raise AnsibleFilterError(str(e)) from None
    if not isinstance(results, Mapping):
        raise AnsibleFilterError("results must map host names to (act result, assessment) pairs")
    summaries = {}
    for host, pair in results.items():
        result, assessment = (pair[0], pair[1]) if isinstance(pair, (list, tuple)) and len(pair) == 2 else ({}, {})
        summary = summary_of(result if isinstance(result, Mapping) else {}, assessment if isinstance(assessment, Mapping) else {})
        if summary is not None:
            summaries[str(host)] = summary
    return fleet_report(summaries, [str(h) for h in group_hosts], [str(h) for h in targeted], fail)


class FilterModule:
    """The renew playbook's fleet-wide decisions."""

    def filters(self) -> dict[str, Any]:
        return {
            "renew_secrets": renew_secrets,
            "renew_batches": renew_batches,
            "renew_halt": renew_halt,
            "renew_fleet": renew_fleet,
        }
