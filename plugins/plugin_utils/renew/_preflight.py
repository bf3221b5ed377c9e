# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the collection's playbooks check before any host is touched. Private to this collection.

A mistyped variable (``-e xu_renew_befor_days=400``) is otherwise ignored and the run passes; a
missing or empty target group makes a run that matches no host, which Ansible reports as a
warning and rc 0, forever green; a batch list Ansible cannot use is found only after every host
was read. The playbooks call ``preflight`` from their first play's ``hosts`` keyword: a play
keyword is templated when the play starts whatever ``--limit`` says and whether or not the group
has hosts, and an error there ends the run before any task (ansible-core 2.16 to 2.21 alike).

It sees the variables the play sees without a host: extra vars (``-e``, AWX survey answers and
credentials, the job template's variables) and play vars. Inventory variables are per host; the
role checks their values when it types them.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._fleet import BatchesError, batch_sizes
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._options import is_unset, role_internal_names, role_variable_names
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.report._tls_report import DEFAULT_GROUP, REPORT_VARIABLES

# Variables of the renew playbook itself (play keywords and its last play), beside the role's.
RENEW_PLAYBOOK_VARIABLES = ("xu_renew_hosts", "xu_renew_serial", "xu_renew_fail_on_blocked")
# Each playbook's variable naming its target group.
GROUP_VARIABLES = {"renew": "xu_renew_hosts", "report": "xu_report_hosts"}
# What ansible-playbook makes of an -e word without "=" (the "3" of -e "xu_renew_serial=1, 3").
RAW_PARAMS = "_raw_params"
CLOSE_MATCH = 0.6


class PreflightError(ValueError):
    """What stops the run before it starts, in one line naming each variable."""


def known_variables() -> frozenset[str]:
    """Every variable of the collection's playbooks and role, the secrets included, and the role's own (a play that
    imports the role sees them)."""
    return role_variable_names("main") | role_internal_names() | frozenset(RENEW_PLAYBOOK_VARIABLES) | frozenset(REPORT_VARIABLES)


def _closest(name: str, candidates: Iterable[str]) -> str | None:
    found = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=CLOSE_MATCH)
    return found[0] if found else None


def unknown_variables(names: Iterable[str]) -> list[str]:
    """A problem for each ``xu_renew_*``/``xu_report_*`` name that is not a variable of the collection, with the closest one."""
    known = known_variables()
    problems = []
    for name in sorted(set(names)):
        if not name.startswith(("xu_renew_", "xu_report_")) or name in known:
            continue
        closest = _closest(name, known)
        hint = f"did you mean {closest}?" if closest else "see ansible-doc -t role xtractuniversal.tls.renew and docs/report.md"
        problems.append(f"{name} is not a variable of this collection ({hint})")
    return problems


def target_group(playbook: str, value: Any, groups: Mapping[str, Sequence[str]]) -> tuple[str, str | None]:
    """The group the playbook runs on, and why it cannot (missing, empty, not a name), or None."""
    variable = GROUP_VARIABLES[playbook]
    if is_unset(value):
        group = DEFAULT_GROUP
    elif isinstance(value, str):
        group = value.strip()
    else:
        return DEFAULT_GROUP, f"{variable} must be the name of an inventory group, not {value!r}"
    if group not in groups:
        names = [name for name in groups if name not in ("all", "ungrouped")]
        closest = _closest(group, names)
        hint = f"did you mean {closest}?" if closest else f"its groups: {', '.join(sorted(names)) or 'none'}"
        return group, f"{variable}: the inventory has no group {group!r} ({hint})"
    if not groups[group]:
        return group, f"{variable}: the group {group!r} has no hosts"
    return group, None


def preflight(playbook: str, group_value: Any, groups: Mapping[str, Sequence[str]], names: Iterable[str], *,
              serial: Any = None, raw_params: Any = None) -> str:
    """The target group of ``playbook`` (``renew`` or ``report``); PreflightError with every problem, in one line.

    ``names`` are the variable names the play sees, ``groups`` the inventory's groups and their
    hosts, ``serial`` the renew playbook's ``xu_renew_serial`` (only its syntax is checked: the
    default batches follow the hosts' modes, known only once each host is typed).
    """
    if playbook not in GROUP_VARIABLES:
        raise PreflightError(f"preflight knows the playbooks {', '.join(GROUP_VARIABLES)}, not {playbook!r}")
    problems = unknown_variables(names)
    from ansible import context  # noqa: PLC0415  (the command line ansible-playbook was started with)

    # --syntax-check (ansible-lint runs it) templates the keyword without an inventory: the groups are not the run's.
    syntax_check = bool(context.CLIARGS.get("syntax"))
    if raw_params is not None:
        problems.append(
            f"an extra var without a name ({raw_params!r}): -e name=value ends the value at a space, so quote the whole"
            " value (-e 'xu_renew_serial=1,3')"
        )
    group, problem = target_group(playbook, group_value, groups)
    if problem and not syntax_check:
        problems.append(problem)
    if playbook == "renew":
        try:
            batch_sizes(serial)
        except BatchesError as error:
            problems.append(str(error))
    if problems:
        raise PreflightError("; ".join(problems))
    return group
