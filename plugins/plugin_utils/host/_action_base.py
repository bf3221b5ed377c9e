# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The base every action plugin of the collection shares. Private to this collection.

It gives a controller-side module what AnsibleModule gives a remote one: argument
validation (against the module stub's DOCUMENTATION, so docs and spec cannot drift),
no_log masking, check mode, diff, warnings, and one place where ``XuError`` becomes a
failed result.
"""

from __future__ import annotations

import functools
import importlib
import json
import pathlib
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.parameters import remove_values
from ansible.plugins.action import ActionBase
from ansible.plugins.loader import fragment_loader
from ansible.utils.display import Display
from ansible.utils.plugin_docs import get_docstring

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._certificate import CRYPTOGRAPHY_IMPORT_ERROR, iso, parse_iso, utc_now
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._agent import (
    Agent,
    AgentClient,
    agent_payload_texts,
    format_host_time,
    parse_host_time,
)
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import XuError
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._eventlog import run_id_of
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._host_state import CarriedStateAgent
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._transport import (
    ALLOW_VARIABLE,
    SecretsGuard,
    allow_unprotected,
    connection_protection,
)

if TYPE_CHECKING:
    from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.journal._journal import JournalRide

display = Display()

COLLECTION = "xtractuniversal.tls"
MODULES_DIR = pathlib.Path(__file__).resolve().parents[2] / "modules"

# DOCUMENTATION option keys that carry into an argument spec, and the ones that are
# documentation only. Anything else is a mistake in a stub and fails loudly.
# No aliases: the validator would warn about them, and one name per option is clearer anyway.
_SPEC_KEYS = ("type", "required", "default", "choices", "elements")
_DOC_ONLY_KEYS = frozenset({"description", "version_added", "suboptions", "notes", "seealso"})


@functools.cache
def module_documentation(module: str) -> dict[str, Any]:
    """The stub's DOCUMENTATION with its doc fragments merged in (parsed once per process)."""
    path = MODULES_DIR / f"{module}.py"
    doc: dict[str, Any] = get_docstring(str(path), fragment_loader, collection_name=COLLECTION, is_module=True)[0]
    if not doc:
        raise RuntimeError(f"{path} has no DOCUMENTATION")
    return doc


def argument_spec_from_options(options: dict[str, Any]) -> dict[str, Any]:
    """Turn DOCUMENTATION ``options`` into an AnsibleModule argument spec."""
    spec: dict[str, Any] = {}
    for name, option in options.items():
        unknown = set(option) - set(_SPEC_KEYS) - _DOC_ONLY_KEYS
        if unknown:
            raise RuntimeError(f"Option {name} documents keys an argument spec cannot express: {sorted(unknown)}")
        entry = {key: option[key] for key in _SPEC_KEYS if key in option}
        entry.setdefault("type", "str")
        if "suboptions" in option:
            entry["options"] = argument_spec_from_options(option["suboptions"])
        spec[name] = entry
    return spec


@functools.cache
def module_validator(module: str) -> ArgumentSpecValidator:
    """A validator of the module's options that fills in their defaults, for a caller that composes modules in-process
    (the renewal engine): what it passes is built in code, so the constraints between options need no second check."""
    return ArgumentSpecValidator(argument_spec_from_options(module_documentation(module).get("options") or {}))


def module_params(module: str, given: dict[str, Any]) -> dict[str, Any]:
    """``given`` (None meaning not given) with the module's documented types and defaults; XuError names a wrong option."""
    result = module_validator(module).validate({key: value for key, value in given.items() if value is not None})
    if result.error_messages:
        raise XuError(f"{module}: " + "; ".join(result.error_messages))
    return dict(result.validated_parameters)


@dataclass
class ModuleRun:
    """What a module's logic receives, and collects its warnings."""

    params: dict[str, Any]
    check_mode: bool
    diff: bool
    task_vars: dict[str, Any]
    agent: Agent
    host: str
    warnings: list[str] = field(default_factory=list)
    # The run journal the module keeps in the calls it makes anyway; only the renewal engine hands one in.
    journal: JournalRide | None = None
    # What protects the host's connection, and whether the play lets secrets cross one that protects nothing.
    transport: dict[str, Any] = field(default_factory=dict)
    # Secrets the module's logic came across (in a dict option, or made during the run): masked in the result too.
    secrets: set[str] = field(default_factory=set)

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    @functools.cached_property
    def run_id(self) -> str:
        """The run the task's changes belong to (the run_id option, else one new id for the whole task)."""
        return run_id_of(self.params)


def plain_arguments(args: Mapping[str, Any]) -> dict[str, Any]:
    """The task's arguments as a remote module receives them: JSON's plain types.

    ansible-core 2.19 and later hand an action its templated arguments with their origin attached (tagged subclasses
    of str, int, dict, ...), and the validator deep-copies what it is given: copying a tagged value rebuilds its tags,
    20 to 30 ms of a renewal task whose assessment is a registered result. Arguments JSON cannot carry stay as given,
    for the validator to judge.
    """
    try:
        plain: dict[str, Any] = json.loads(json.dumps(dict(args)))
    except (TypeError, ValueError):
        return dict(args)
    return plain


def _masked(result: dict[str, Any], no_log_values: set[str]) -> dict[str, Any]:
    """The result with every no_log value replaced, wherever it appears."""
    masked: dict[str, Any] = remove_values(result, no_log_values)
    return masked


class XuActionBase(ActionBase):
    """Subclasses name their module and implement ``run_module``."""

    MODULE: str = ""
    # Set when a remote call's connection failed: the next call resets the connection first.
    _reconnect: bool = False
    # Constraints between options, as ArgumentSpecValidator takes them.
    MUTUALLY_EXCLUSIVE: ClassVar[list[list[str]]] = []
    REQUIRED_ONE_OF: ClassVar[list[list[str]]] = []
    REQUIRED_TOGETHER: ClassVar[list[list[str]]] = []
    REQUIRED_IF: ClassVar[list[Any]] = []
    REQUIRED_BY: ClassVar[dict[str, Any]] = {}
    # Secrets, masked wherever they appear in a result. DOCUMENTATION has no key for this
    # (validate-modules rejects one), so the action names them.
    NO_LOG_OPTIONS: ClassVar[tuple[str, ...]] = ()

    TRANSFERS_FILES = False
    _requires_connection = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # An action plugin's module is loaded in the controller's main process, once its own imports are
        # complete (so the filters' imports cannot come back to a module half loaded).
        _load_filters_before_forks()
        cls.prepare_before_forks()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._supports_check_mode = True
        self._supports_async = False

    @classmethod
    def prepare_before_forks(cls) -> None:
        """Make what every task of the module needs, once, in the controller's main process (see ``__init_subclass__``).

        A forked worker inherits it; made in the worker, it is made again for every host and task: the stub's
        DOCUMENTATION parsed with its fragments is about 25 ms of YAML, its validator a deep copy of the spec, the
        agent's text a read of 75 kB, strptime's first use an import.
        """
        if cls.MODULE:
            cls.validator()
        agent_payload_texts()
        # strptime's first use in a process imports and compiles its locale tables (5 ms), and each format's first use
        # compiles its pattern; every module reads times, and every answer of the agent carries the host's.
        now = utc_now()
        parse_iso(iso(now))
        parse_host_time(format_host_time(now))

    @classmethod
    def argument_spec(cls) -> dict[str, Any]:
        spec = argument_spec_from_options(module_documentation(cls.MODULE).get("options") or {})
        for name in cls.NO_LOG_OPTIONS:
            spec[name]["no_log"] = True
        return spec

    @classmethod
    def validator(cls) -> ArgumentSpecValidator:
        """The module's validator, built once per class (it deep-copies the spec; validating with it changes nothing in it)."""
        return _validator_of(cls)

    @classmethod
    def build_validator(cls) -> ArgumentSpecValidator:
        return ArgumentSpecValidator(
            cls.argument_spec(),
            mutually_exclusive=cls.MUTUALLY_EXCLUSIVE or None,
            required_together=cls.REQUIRED_TOGETHER or None,
            required_one_of=cls.REQUIRED_ONE_OF or None,
            required_if=cls.REQUIRED_IF or None,
            required_by=cls.REQUIRED_BY or None,
        )

    def run_module(self, run: ModuleRun) -> dict[str, Any]:
        raise NotImplementedError

    def make_agent(self, params: dict[str, Any], host: str, client: AgentClient) -> CarriedStateAgent:
        """The agent the module's logic calls; the renewal engine's answers its reads from the assessment's snapshot."""
        del params
        return CarriedStateAgent(client, host)

    def read_controller_file(self, path: str, variable: str) -> bytes:
        """A file on the controller, found like the copy module finds its src (a role's or play's files/), vault decrypted."""
        real = self._loader.get_real_file(self.find_controller_file(path, variable), decrypt=True)
        try:
            with open(real, "rb") as handle:
                return handle.read()
        except OSError as e:
            raise XuError(f"{variable} {path} cannot be read on the controller: {e.strerror}") from e
        finally:
            self._loader.cleanup_tmp_file(real)

    def find_controller_file(self, path: str, variable: str) -> str:
        try:
            return str(self._find_needle("files", path))
        except AnsibleError as e:
            raise XuError(f"{variable} {path} cannot be read on the controller: {e.message}") from e

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        del tmp
        raw_args = plain_arguments(self._task.args)
        # The secrets as given, whatever happens next: masked in every result, a failed validation's included.
        no_log_values = {str(raw_args[name]) for name in self.NO_LOG_OPTIONS if raw_args.get(name) not in (None, "")}
        validation = self.validator().validate(raw_args)
        if validation.error_messages:
            result.update(failed=True, msg="Invalid arguments: " + "; ".join(validation.error_messages), changed=False)
            return _masked(result, no_log_values)
        params = validation.validated_parameters
        no_log_values |= {str(params[name]) for name in self.NO_LOG_OPTIONS if params.get(name) not in (None, "")}

        if CRYPTOGRAPHY_IMPORT_ERROR is not None:
            result.update(
                failed=True,
                changed=False,
                msg=f"The Python library cryptography is required on the controller ({CRYPTOGRAPHY_IMPORT_ERROR});"
                " install the collection's requirements.txt into the Python that runs Ansible",
            )
            return result
        host = str((task_vars or {}).get("inventory_hostname", ""))
        try:
            guard = SecretsGuard(host, connection_protection(self._connection), allow_unprotected(self._task_variable(task_vars, ALLOW_VARIABLE)))
        except XuError as e:
            # A bad opt-in fails the task before the host is contacted.
            result.update(e.to_result(), changed=False)
            return _masked(result, no_log_values)
        agent = self.make_agent(params, host, AgentClient(self._remote, before_secrets=guard.before_secrets))
        run = ModuleRun(
            params=params,
            check_mode=bool(self._task.check_mode),
            diff=bool(self._task.diff),
            task_vars=task_vars or {},
            agent=agent,
            host=host,
            transport=guard.to_result(),
        )
        try:
            if "run_id" in run.params:
                # A bad run id fails the task before the host is contacted.
                run_id_of(run.params)
            module_result = self.run_module(run)
        except XuError as e:
            module_result = e.to_result()
        except AnsibleConnectionFailure:
            # Ansible reports the host unreachable: the one failure that is not the module's to report.
            raise
        except Exception as e:
            module_result = {
                "failed": True,
                "msg": f"Unexpected error in {COLLECTION}.{self.MODULE}: {type(e).__name__}: {e}",
                "exception": traceback.format_exc(),
                # The host was sent a change before the failure: what it did is not known, so it counts as changed.
                "changed": agent.changing_calls > 0,
            }
        module_result.setdefault("changed", False)
        for warning in guard.warnings:
            run.warn(warning)
        result.update(module_result)
        if run.warnings:
            result["warnings"] = result.get("warnings", []) + run.warnings
        return _masked(result, no_log_values | run.secrets)

    def _task_variable(self, task_vars: dict[str, Any] | None, name: str) -> Any:
        """A variable of the task (inventory, play, role, extra vars), templated."""
        value = (task_vars or {}).get(name)
        if isinstance(value, str) and ("{{" in value or "{%" in value):
            value = self._templar.template(value)
        return value

    def _remote(self, command: str, stdin: bytes) -> tuple[int, str, str]:
        """One remote call; after a call whose connection failed, the connection is made anew first."""
        if self._reconnect:
            self._reconnect = False
            self._reset_connection()
        try:
            return self._execute_remote(command, stdin)
        except AnsibleConnectionFailure:
            self._reconnect = True
            raise

    def _execute_remote(self, command: str, stdin: bytes) -> tuple[int, str, str]:
        """One remote command through the host's connection, whatever plugin that is."""
        display.vvv(f"{self.MODULE}: running the agent", host=self._play_context.remote_addr)
        # executable='' keeps ansible from wrapping the command in /bin/sh for ssh. Connection failures propagate as
        # AnsibleConnectionFailure: a transport library's own error (pywinrm lets requests' ConnectionError through when
        # the server drops the connection mid-call) is one too, whatever the host did with the call meanwhile.
        try:
            raw = self._low_level_execute_command(command, sudoable=False, in_data=stdin, executable="")
        except AnsibleError:
            raise
        except Exception as e:
            raise AnsibleConnectionFailure(f"the connection to the host failed during the call: {type(e).__name__}: {e}") from e
        return int(raw.get("rc", 1)), str(raw.get("stdout", "")), str(raw.get("stderr", ""))

    def _reset_connection(self) -> None:
        """A new connection after one that failed: with NTLM message encryption, a message encrypted for the lost
        session means nothing on a new TCP connection (the lab answers HTTP 400); a new shell and authentication do."""
        try:
            self._connection.reset()
        except AnsibleError:
            raise
        except Exception as e:
            raise AnsibleConnectionFailure(f"the connection to the host could not be made again: {type(e).__name__}: {e}") from e


_VALIDATORS: dict[type[XuActionBase], ArgumentSpecValidator] = {}


def _validator_of(action: type[XuActionBase]) -> ArgumentSpecValidator:
    if action not in _VALIDATORS:
        _VALIDATORS[action] = action.build_validator()
    return _VALIDATORS[action]


def _load_filters_before_forks() -> None:
    """Import the collection's filter modules in the controller's main process (where action plugins are loaded).

    Ansible runs each task in a freshly forked worker and loads a collection's filter module there anew,
    compiling its source and the modules it imports: about 0.1 s of CPU for every task that uses a role
    filter, which a fleet run pays thousands of times. Action plugins, though, are loaded in the main
    process before it forks, and a worker finds a module imported there ready.
    """
    for name in ("renew", "report"):
        importlib.import_module(f"ansible_collections.{COLLECTION}.plugins.filter.{name}")
