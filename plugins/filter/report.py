# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The decisions of the tls_report playbook, as filters over typed code in plugins/plugin_utils/report/_tls_report.py.

``report_options``  the report's variables, checked and given their documented types (extra vars arrive as strings)
``report_fleet``    a row per host of the group, most urgent first: the table, the set_stats data, the files, the failures

Each filter has its documentation in ``plugins/filter/<name>.yml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._certificate import utc_now
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.report._tls_report import ReportOptions, ReportOptionsError, fleet_report
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.report._tls_report import report_options as typed_report_options

OPTION_FIELDS = ("fail_within_days", "fail_on_problems", "product", "dir", "hosts")


def report_options(values: Any, playbook_dir: Any = None) -> dict[str, Any]:
    """The report's variables with their documented types, keyed without the ``xu_report_`` prefix."""
    if not isinstance(values, Mapping):
        raise AnsibleFilterError(f"report_options takes a dict of the report's variables, not {type(values).__name__}")
    try:
        return typed_report_options(values, playbook_dir).to_result()
    except ReportOptionsError as e:
        raise AnsibleFilterError(f"The report's variables: {e}") from None


def _options(value: Any) -> ReportOptions:
    if not isinstance(value, Mapping) or not all(name in value for name in OPTION_FIELDS):
        raise AnsibleFilterError("options must be the result of report_options")
    try:
        # Typed again: a dict from anywhere else must not slip past the checks.
        return typed_report_options({f"xu_report_{name}": value[name] for name in OPTION_FIELDS})
    except ReportOptionsError as e:
        raise AnsibleFilterError(f"The report's variables: {e}") from None


def _host_names(value: Any, what: str) -> list[str]:
    if not isinstance(value, list):
        raise AnsibleFilterError(f"{what} must be a list of host names")
    return [str(host) for host in value]


def report_fleet(infos: Any, group_hosts: Any, targeted: Any, options: Any) -> dict[str, Any]:
    """{lines, stats, failures, files}: the report over every host of the group (files only when options.dir is set)."""
    if not isinstance(infos, Mapping):
        raise AnsibleFilterError("the results must map host names to their registered xu_tls_info result")
    typed = _options(options)
    report = fleet_report(
        {str(host): info for host, info in infos.items()},
        _host_names(group_hosts, "group_hosts"),
        _host_names(targeted, "targeted"),
        typed,
        now=utc_now(),
        group=typed.hosts,
    )
    return {
        "lines": report.lines(),
        "stats": report.stats(),
        "failures": dict(report.failures),
        "files": report.files() if typed.dir else {},
    }


class FilterModule:
    """The decisions of the report playbook."""

    def filters(self) -> dict[str, Any]:
        return {
            "report_options": report_options,
            "report_fleet": report_fleet,
        }
