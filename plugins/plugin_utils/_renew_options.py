# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The renew role's variables, checked and given their documented types once. Private to this collection.

Extra vars and AWX survey answers reach a role as strings (``-e xu_renew_force=false`` is the
string ``"false"``, which Jinja takes as true), and ansible-core's role argument validation
checks that a value converts without converting it. So the role reads its variables once,
through ``renew_options``, and uses only the typed values from then on. The types, defaults
and choices are the role's own ``meta/argument_specs.yml``, so the documentation and the
checks cannot drift apart.
"""

from __future__ import annotations

import math
import pathlib
import re
from collections.abc import Mapping
from functools import cache
from typing import Any

import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._eventlog import RUN_ID_PATTERN
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._gate import MAX_AUTO_OPEN_MINUTES

ROLE_SPECS = pathlib.Path(__file__).resolve().parents[2] / "roles" / "renew" / "meta" / "argument_specs.yml"
PREFIX = "xu_renew_"
_SPEC_KEYS = ("type", "required", "default", "choices", "elements")
# The gate must reopen by itself if the controller dies: a deadline of at least a minute, at most a week.
GATE_AUTO_OPEN_MINUTES = (1.0, float(MAX_AUTO_OPEN_MINUTES))


class RoleOptionsError(ValueError):
    """A role variable that is missing, of the wrong type or out of range; the message names the variable."""


@cache
def role_options_spec(entry_point: str = "main") -> dict[str, dict[str, Any]]:
    """The entry point's options, but the secrets, as an argument spec (type, default, choices, elements).

    The secrets (``no_log``) are strings, which need no typing, and stay out: the typed options
    are an ordinary fact, shown at -v and in errors.
    """
    document = yaml.safe_load(ROLE_SPECS.read_text(encoding="utf-8"))
    options = document["argument_specs"][entry_point]["options"]
    return {
        name: {key: option[key] for key in _SPEC_KEYS if key in option}
        for name, option in options.items()
        if not option.get("no_log")
    }


@cache
def role_options_validator(entry_point: str) -> ArgumentSpecValidator:
    """Built once (it deep-copies the spec); validating with it changes nothing in it."""
    return ArgumentSpecValidator(role_options_spec(entry_point))


def _check_ranges(options: Mapping[str, Any]) -> list[str]:
    problems = []
    low, high = GATE_AUTO_OPEN_MINUTES
    auto_open = options["xu_renew_gate_auto_open_after"]
    if not math.isfinite(auto_open) or not low <= auto_open <= high:
        problems.append(
            f"xu_renew_gate_auto_open_after must be from {low:g} to {high:g} minutes, not {auto_open:g}: the gate always reopens"
            " by itself in case the controller dies during the run"
        )
    if options["xu_renew_before_days"] < 0:
        problems.append(f"xu_renew_before_days must be 0 or more, not {options['xu_renew_before_days']}")
    if not 0 <= options["xu_renew_before_percent"] < 100:
        problems.append(f"xu_renew_before_percent must be from 0 to less than 100, not {options['xu_renew_before_percent']:g}")
    if options["xu_renew_wait_timeout"] < 1:
        problems.append(f"xu_renew_wait_timeout must be at least 1 second, not {options['xu_renew_wait_timeout']}")
    if not 0 <= options["xu_renew_max_fail_percentage"] <= 100:
        problems.append(f"xu_renew_max_fail_percentage must be from 0 to 100, not {options['xu_renew_max_fail_percentage']}")
    if options["xu_renew_pfx_path"] and options["xu_renew_pfx_dir"]:
        problems.append("set xu_renew_pfx_path or xu_renew_pfx_dir, not both")
    for name in ("xu_renew_run_id", "xu_renew_take_over"):
        if options[name] and not RUN_ID_PATTERN.match(options[name]):
            problems.append(f"{name} {options[name]!r} must be a run id: 1 to 64 letters, digits, '.', '_', '-' or ':'")
    return problems


def pfx_path_for(options: Mapping[str, Any], host: str) -> str:
    """The host's PFX: xu_renew_pfx_path as given, or ``<xu_renew_pfx_dir>/<host>.pfx``; empty when neither is set."""
    if options["xu_renew_pfx_dir"]:
        return str(pathlib.PurePosixPath(options["xu_renew_pfx_dir"]) / f"{host}.pfx")
    return str(options["xu_renew_pfx_path"])


def _split_list_strings(values: Mapping[str, Any], spec: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A list given as one string (``-e``, an AWX text or textarea answer): its entries split at commas and line breaks."""
    split = dict(values)
    for name, value in values.items():
        if isinstance(value, str) and spec.get(name, {}).get("type") == "list":
            split[name] = [entry.strip() for entry in re.split(r"[,\n]", value) if entry.strip()]
    return split


def _plain(value: Any) -> Any:
    """``value`` with Ansible's lazy containers turned into plain dicts and lists.

    A lazy container carries the templating machinery with it: the argument validator's deep copy of one copies
    that too, at a cost of up to a second of CPU.
    """
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def renew_options(values: Mapping[str, Any], host: str, entry_point: str = "main") -> dict[str, Any]:
    """The role's variables, but the secrets, with their documented types, keyed without the ``xu_renew_`` prefix.

    ``values`` maps variable names to what the play holds; a variable that is not given takes
    its documented default. ``pfx_path`` comes out resolved for ``host``. RoleOptionsError names
    every variable that is wrong.
    """
    spec = role_options_spec(entry_point)
    values = _plain(values)
    # An empty value (an AWX survey's empty answer, which ansible-core 2.19+ reads as None) means the default.
    values = {name: value for name, value in values.items() if value is not None and value != ""}
    unknown = sorted(set(values) - set(spec))
    if unknown:
        raise RoleOptionsError(f"not variables of the renew role: {', '.join(unknown)}")
    result = role_options_validator(entry_point).validate(_split_list_strings(values, spec))
    if result.error_messages:
        raise RoleOptionsError("; ".join(result.error_messages))
    options = result.validated_parameters
    problems = _check_ranges(options)
    if problems:
        raise RoleOptionsError("; ".join(problems))
    typed = {name[len(PREFIX) :]: value for name, value in options.items()}
    typed["pfx_path"] = pfx_path_for(options, host)
    return typed
