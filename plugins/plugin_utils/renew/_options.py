# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The renew role's variables, checked and given their documented types once. Private to this collection.

Extra vars and AWX survey answers reach a role as strings (``-e xu_renew_force=false`` is the
string ``"false"``, which Jinja takes as true), and an empty AWX answer arrives as ``''``
(ansible-core 2.16 to 2.18) or as None (2.19 and later read AWX's ``!unsafe ''`` as null). An
extra var outranks every other variable and cannot be reset, so the role reads its variables
once, through ``renew_options``, and uses only the typed values from then on: an empty value
(None, ``''``, blanks) takes the variable's default, every other value its documented type.

The types and choices are the role's ``meta/argument_specs.yml``, the defaults its
``defaults/main.yml``. The argument specs carry no ``default`` key on purpose: ansible-core
validates them when the role starts and lets None through only for an option whose ``default``
is None (``_validate_argument_types`` in ``module_utils/common/parameters.py``, 2.16 to 2.21);
each description says its default instead.

Relative paths are taken from the directory of the user's playbook (the AWX project), not from
the collection: see ``user_base_dir``.
"""

from __future__ import annotations

import math
import os
import pathlib
import re
from collections.abc import Mapping
from functools import cache
from typing import Any

import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.gate._gate import MAX_AUTO_OPEN_MINUTES
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._eventlog import RUN_ID_PATTERN

COLLECTION_ROOT = pathlib.Path(__file__).resolve().parents[3]
ROLE_DIR = COLLECTION_ROOT / "roles" / "renew"
ROLE_SPECS = ROLE_DIR / "meta" / "argument_specs.yml"
ROLE_DEFAULTS = ROLE_DIR / "defaults" / "main.yml"
ROLE_VARS = ROLE_DIR / "vars" / "main.yml"
PREFIX = "xu_renew_"
_SPEC_KEYS = ("type", "required", "choices", "elements")
# The gate must reopen by itself if the controller dies: a deadline of at least a minute, at most a week.
GATE_AUTO_OPEN_MINUTES = (1.0, float(MAX_AUTO_OPEN_MINUTES))
# Variables holding a path on the controller, taken from the user's playbook directory when relative.
PATH_VARIABLES = ("xu_renew_pfx_path", "xu_renew_pfx_dir", "xu_renew_ca_path")
# The secrets, each with the variable a credential injects it as: an AWX credential injects every field, an empty
# one as an empty extra var, which would hide every host's own value; so the credential's is used only when set.
SECRETS = {"pfx_content": ("xu_renew_credential_pfx_content", "xu_renew_pfx_content"),
           "pfx_password": ("xu_renew_credential_pfx_password", "xu_renew_pfx_password")}
SECRET_VARIABLES = frozenset(name for names in SECRETS.values() for name in names)
# xu_renew_mode acme's variables: handed to the engine apart (they hold secrets) and typed by acme/settings.py.
ACME_PREFIX = "xu_renew_acme_"


class RoleOptionsError(ValueError):
    """A role variable that is missing, of the wrong type or out of range; the message names the variable."""


def is_unset(value: Any) -> bool:
    """An empty answer (None, or a string of blanks): the variable takes its default."""
    return value is None or (isinstance(value, str) and not value.strip())


@cache
def _role_options(entry_point: str) -> dict[str, dict[str, Any]]:
    document = yaml.safe_load(ROLE_SPECS.read_text(encoding="utf-8"))
    options: dict[str, dict[str, Any]] = document["argument_specs"][entry_point]["options"]
    return options


@cache
def role_defaults() -> dict[str, Any]:
    """The role's defaults (``defaults/main.yml``): what a variable that is not set, or set empty, takes."""
    defaults: dict[str, Any] = yaml.safe_load(ROLE_DEFAULTS.read_text(encoding="utf-8"))
    return defaults


def role_variable_names(entry_point: str = "main") -> frozenset[str]:
    """Every variable of the role's entry point, the secrets included."""
    return frozenset(_role_options(entry_point))


@cache
def role_internal_names() -> frozenset[str]:
    """The role's own variables (``vars/main.yml``): what it hands its module, never set by a user."""
    internal: dict[str, Any] = yaml.safe_load(ROLE_VARS.read_text(encoding="utf-8"))
    return frozenset(internal)


@cache
def role_options_spec(entry_point: str = "main") -> dict[str, dict[str, Any]]:
    """The entry point's options, but the secrets, as an argument spec (type, choices, elements, and the default).

    The secrets (SECRET_VARIABLES) are strings, which need no typing, and stay out: the typed
    options are an ordinary fact, shown at -v and in errors. So do the ACME variables (ACME_PREFIX), among which are
    secrets too; acme/settings.py types them.
    """
    defaults = role_defaults()
    spec = {}
    for name, option in _role_options(entry_point).items():
        if name in SECRET_VARIABLES or name.startswith(ACME_PREFIX):
            continue
        spec[name] = {key: option[key] for key in _SPEC_KEYS if key in option}
        if "choices" in option:
            # The spec lists null and '' so that ansible-core's own check lets an empty answer through; here it is unset.
            spec[name]["choices"] = [choice for choice in option["choices"] if not is_unset(choice)]
        if name in defaults and not ("choices" in spec[name] and is_unset(defaults[name])):
            # An empty default among choices is decided later (xu_renew_strategy's follows the mode).
            spec[name]["default"] = defaults[name]
    return spec


def user_base_dir(playbook_dir: Any = None) -> pathlib.Path:
    """The directory relative paths are taken from: the user's playbook's (in AWX, the project directory).

    ``playbook_dir`` is the directory of the playbook that holds the play, which is the
    collection's own ``playbooks/`` for a play imported from it (a project's wrapper playbook, or
    ``ansible-playbook xtractuniversal.tls.renew``). Then the first playbook file named on the
    command line outside the collection is the user's; with none (the collection's playbook run by
    its name), the directory ansible-playbook was started in, which AWX makes the project's.
    """
    if playbook_dir and not _in_collection(pathlib.Path(str(playbook_dir))):
        return pathlib.Path(str(playbook_dir))
    from ansible import context  # noqa: PLC0415  (the command line ansible-playbook was started with)

    for argument in context.CLIARGS.get("args", ()) or ():
        candidate = pathlib.Path(os.path.expanduser(str(argument)))
        if candidate.suffix in (".yml", ".yaml") and candidate.is_file() and not _in_collection(candidate):
            return candidate.resolve().parent
    return pathlib.Path.cwd()


def _in_collection(path: pathlib.Path) -> bool:
    try:
        return path.resolve().is_relative_to(COLLECTION_ROOT)
    except OSError:
        return False


def resolve_path(value: str, base_dir: pathlib.Path) -> str:
    """``value`` as an absolute path on the controller (``~`` expanded, a relative one taken from ``base_dir``)."""
    if not value:
        return ""
    return os.path.normpath(os.path.join(base_dir, os.path.expanduser(value)))


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


def renew_options(values: Mapping[str, Any], host: str, entry_point: str = "main", *, playbook_dir: Any = None) -> dict[str, Any]:
    """The role's variables, but the secrets, with their documented types, keyed without the ``xu_renew_`` prefix.

    ``values`` maps variable names to what the play holds; a variable that is not given, or is
    empty, takes its default. The paths come out absolute (relative ones taken from
    ``user_base_dir(playbook_dir)``), ``pfx_path`` resolved for ``host``, and ``pfx_variable``
    names the variable it came from. RoleOptionsError names every variable that is wrong.
    """
    spec = role_options_spec(entry_point)
    values = _plain(values)
    unknown = sorted(set(values) - set(spec))
    if unknown:
        raise RoleOptionsError(f"not variables of the renew role: {', '.join(unknown)}")
    given = {name: value for name, value in values.items() if not is_unset(value)}
    if "xu_renew_mode" not in given:
        choices = ", ".join(spec["xu_renew_mode"]["choices"])
        raise RoleOptionsError(f"xu_renew_mode is required and has no default: set it to one of {choices}")
    result = role_options_validator(entry_point).validate(_split_list_strings(given, spec))
    if result.error_messages:
        raise RoleOptionsError("; ".join(result.error_messages))
    options = dict(result.validated_parameters)
    if is_unset(options["xu_renew_strategy"]):
        # An ordered certificate goes in with one restart; every other mode follows the vendor's order unless told.
        options["xu_renew_strategy"] = "minimal_outage" if options["xu_renew_mode"] == "acme" else "documented"
    problems = _check_ranges(options)
    if problems:
        raise RoleOptionsError("; ".join(problems))
    base_dir = user_base_dir(playbook_dir)
    for name in PATH_VARIABLES:
        options[name] = resolve_path(options[name], base_dir)
    typed = {name[len(PREFIX) :]: value for name, value in options.items()}
    typed["pfx_path"] = pfx_path_for(options, host)
    typed["pfx_variable"] = "xu_renew_pfx_dir" if options["xu_renew_pfx_dir"] else "xu_renew_pfx_path"
    return typed


def pfx_secrets(values: Mapping[str, Any]) -> dict[str, str]:
    """The PFX and its password the role uses: a credential's (``xu_renew_credential_*``) when set, else the host's own.

    Empty values (None, ``''``) are empty strings.
    """
    secrets = {}
    for key, names in SECRETS.items():
        name = next((name for name in names if not is_unset(values.get(name))), None)
        value = values.get(name) if name else ""
        if isinstance(value, (Mapping, list, tuple, bool, int, float)):
            raise RoleOptionsError(f"{name} must be a string, not a {type(value).__name__}")
        # A vaulted value (ansible-core 2.16 to 2.18 hand it in as its own type) reads as its plain text.
        secrets[key] = str(value)
    return secrets
