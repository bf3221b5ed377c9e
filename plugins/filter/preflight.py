# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The check the collection's playbooks make before any host is touched, as a filter over plugin_utils/renew/_preflight.py.

``preflight``  the target group of a playbook; fails on unknown variable names, a missing or empty group, and batches
               Ansible cannot use (documented in ``plugins/filter/preflight.yml``)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._preflight import PreflightError
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._preflight import preflight as typed_preflight


def preflight(group_value: Any, playbook: str, groups: Any, names: Any, *, serial: Any = None, raw_params: Any = None) -> str:
    """The playbook's target group; AnsibleFilterError naming every problem, in one line."""
    if not isinstance(groups, Mapping):
        raise AnsibleFilterError("groups must be the inventory's groups (the magic variable groups)")
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise AnsibleFilterError("names must be a list of variable names (query('ansible.builtin.varnames', ...))")
    try:
        return typed_preflight(str(playbook), group_value, {str(name): list(hosts) for name, hosts in groups.items()},
                               [str(name) for name in names], serial=serial, raw_params=raw_params)
    except PreflightError as e:
        raise AnsibleFilterError(f"xtractuniversal.tls: {e}") from None


class FilterModule:
    """The check before any host is touched."""

    def filters(self) -> dict[str, Any]:
        return {"preflight": preflight}
