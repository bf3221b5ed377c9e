"""What a host does with one WS-Man command: run our bootstrap and agent, or fail like Windows.

The bootstrap is recognised by its first line, the agent by the first line of the text it
receives on stdin. A PowerShell whose whole script starts another `PowerShell ... -EncodedCommand`
(what ansible-core 2.16 to 2.18 send: their winrm connection encodes every command again) runs
that inner PowerShell as Windows does: it inherits the outer one's stdin, stdout and stderr, and
the outer exits 0 when it succeeded, else 1. Everything else is a command this host does not
have: PowerShell answers with a CLIXML error record on stderr and exit code 1, cmd.exe with its
own text. Only command lines and decoded scripts are recorded (transcript.log); stdin never.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import re
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

from .certreq_tasks import CallKilled
from .errors import ABSENT_ERRORS, PrimitiveError
from .host import Host
from .primitives import PRIMITIVES
from .psvalues import as_text
from .timefmt import iso_utc_ms
from .wsman import CommandResult

BOOTSTRAP_MARKER = "# xtractuniversal.tls bootstrap 1"
AGENT_MARKER = "# xtractuniversal.tls agent 1"
AGENT_NAME = "xtractuniversal.tls"
# What the bootstrap throws when stdin is not JSON (the parser's own message would quote stdin).
NOT_JSON = "the payload on stdin is not JSON"
PROTOCOL = 1
CLIXML_HEADER = "#< CLIXML\r\n"
CLIXML_NAMESPACE = "http://schemas.microsoft.com/powershell/2004/04"

# How much of a call's overhead Windows pays at shell Create (a winrshost process); the rest
# goes to each powershell.exe start-up (.NET and PowerShell load before the script runs).
SHELL_CREATE_SHARE = 0.25
# A script that only starts another PowerShell: one native command with literal arguments.
_NESTED_POWERSHELL = re.compile(r"^(?:&\s*)?(?:[A-Za-z]:\\(?:[^\s\\]+\\)*)?powershell(?:\.exe)?(?:\s+[A-Za-z0-9+/=_.:-]+)+$", re.IGNORECASE)

# `chcp.com 65001 > $null ;` before a command: the console's code page set to UTF-8, with no output.
_UTF8_CODE_PAGE = re.compile(r"^chcp(?:\.com)?\s+65001\s*>\s*\$null\s*;\s*", re.IGNORECASE)
# Win32-OpenSSH's DefaultShell as the documented setup names it.
DEFAULT_SHELL = "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"

log = logging.getLogger(__name__)


def split_call_overhead(seconds: float) -> tuple[float, float]:
    """(shell Create, each powershell.exe start) for a call overhead of `seconds`."""
    if seconds < 0:
        raise ValueError("a call overhead is at least 0 seconds")
    create = seconds * SHELL_CREATE_SHARE
    return create, seconds - create


def _clixml_text(text: str) -> str:
    """Escape for a CLIXML string: XML entities, control characters as _xHHHH_."""
    text = escape(text).replace("_x", "_x005F_x")
    return "".join(f"_x{ord(char):04X}_" if ord(char) < 32 else char for char in text)


def clixml_error(lines: list[str]) -> bytes:
    """stderr as PowerShell writes an error record to a redirected stream."""
    records = "".join(f'<S S="Error">{_clixml_text(line + chr(13) + chr(10))}</S>' for line in lines)
    return f'{CLIXML_HEADER}<Objs Version="1.1.0.1" xmlns="{CLIXML_NAMESPACE}">{records}</Objs>'.encode()


def _is_parameter(token: str, name: str, shortest: int, aliases: tuple[str, ...] = ()) -> bool:
    """PowerShell.exe takes any prefix of a parameter name down to its shortest unambiguous one."""
    if token[:1] not in ("-", "/"):
        return False
    given = token[1:].casefold()
    return given in aliases or (len(given) >= shortest and name.startswith(given))


def error_record(
    command: str,
    message: str,
    *,
    script_line: str,
    line_number: int,
    column: int,
    category: str,
    error_id: str,
    extent: int | None = None,
) -> list[str]:
    """The lines of PowerShell 5.1's NormalView for an error; `extent` is the underlined length (default: the command's)."""
    marker = "~" * max(1, len(command) if extent is None else extent)
    prefix = f"{command} : " if command else ""
    return [
        f"{prefix}{message}",
        f"At line:{line_number} char:{column}",
        f"+ {script_line}",
        f"+ {' ' * (column - 1)}{marker}",
        f"    + CategoryInfo          : {category}",
        f"    + FullyQualifiedErrorId : {error_id}",
        " ",
    ]


def command_not_found(script: str) -> CommandResult:
    """`The term '...' is not recognized`, for the first command of a script this host cannot run."""
    for number, raw_line in enumerate(script.splitlines(), start=1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        term = line.lstrip("&. ").split()[0].strip("'\"") if line.lstrip("&. ") else line
        column = raw_line.find(term) + 1 if term in raw_line else 1
        lines = error_record(
            term,
            f"The term '{term}' is not recognized as the name of a cmdlet, function, script file, or operable program. "
            "Check the spelling of the name, or if a path was included, verify that the path is correct and try again.",
            script_line=raw_line.rstrip(),
            line_number=number,
            column=column,
            category=f"ObjectNotFound: ({term}:String) [], CommandNotFoundException",
            error_id="CommandNotFoundException",
        )
        return CommandResult(rc=1, stderr=clixml_error(lines))
    return CommandResult(rc=0)


@dataclass
class ParsedCommand:
    """A WS-Man command: PowerShell with its script, or some other program."""

    program: str
    script: str | None
    error: str | None = None


# PowerShell.exe parameters that take a value: (name, shortest accepted prefix, aliases).
_VALUE_PARAMETERS = (
    ("executionpolicy", 2, ("ep",)),
    ("windowstyle", 1, ()),
    ("version", 1, ()),
    ("inputformat", 2, ("if",)),
    ("outputformat", 1, ("of",)),
    ("psconsolefile", 2, ()),
    ("configurationname", 2, ()),
)
_NOT_BASE64 = (
    "Cannot process the command because the value specified with -EncodedCommand is not properly encoded. "
    "The value must be Base64 encoded."
)


def _decoded(program: str, value: str | None) -> ParsedCommand:
    if value is None:
        return ParsedCommand(program, None, "Missing argument for parameter -EncodedCommand.")
    try:
        return ParsedCommand(program, base64.b64decode(value, validate=True).decode("utf-16-le"))
    except (binascii.Error, UnicodeDecodeError):
        return ParsedCommand(program, None, _NOT_BASE64)


def parse_command(command: str, arguments: list[str]) -> ParsedCommand:
    """The script a `PowerShell ...` command line runs (None for any other program).

    WinRM's cmd shell runs the command line as a whole: the program may come alone with
    its arguments apart, or the whole line may be the command.
    """
    line = " ".join([command, *arguments]).strip()
    try:
        tokens = shlex.split(line, posix=False)
    except ValueError:
        tokens = line.split()
    program = tokens[0].strip('"') if tokens else ""
    tokens = tokens[1:]
    if re.split(r"[\\/]", program)[-1].casefold() not in ("powershell", "powershell.exe"):
        return ParsedCommand(program, None)
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if _is_parameter(token, "encodedcommand", 2, aliases=("e", "ec")):
            return _decoded(program, tokens[index + 1] if index + 1 < len(tokens) else None)
        if _is_parameter(token, "command", 1) or _is_parameter(token, "file", 1):
            return ParsedCommand(program, " ".join(part.strip('"') for part in tokens[index + 1 :]))
        if token[:1] not in ("-", "/"):
            return ParsedCommand(program, " ".join(part.strip('"') for part in tokens[index:]))
        takes_value = any(_is_parameter(token, name, shortest, aliases) for name, shortest, aliases in _VALUE_PARAMETERS)
        index += 2 if takes_value else 1
    return ParsedCommand(program, "")


def _first_line(text: str) -> str:
    return text.lstrip("\ufeff").split("\n", 1)[0].strip()


def reads_stdin(script: str) -> bool:
    """Whether a script reads its stdin to the end before it answers: our bootstrap, or a PowerShell that starts it."""
    return _first_line(script) == BOOTSTRAP_MARKER or nested_command_line(script) is not None


def nested_command_line(script: str) -> str | None:
    """The command line of the PowerShell a script does nothing but start (after setting the code page), else None."""
    lines = [line.strip() for line in script.lstrip("\ufeff").splitlines() if line.strip()]
    if len(lines) != 1:
        return None
    # ansible-core 2.16 and 2.17 over ssh: `chcp.com 65001 > $null ; PowerShell ... -EncodedCommand ...` (UTF-8 output).
    line = _UTF8_CODE_PAGE.sub("", lines[0], count=1)
    if _NESTED_POWERSHELL.match(line) is None:
        return None
    return line.lstrip("&").strip()


class CommandShell:
    """Runs the commands WinRM hands to one host.

    `process_start_delay`: the seconds each powershell.exe takes to start before its script
    runs (`--call-overhead`); waited with asyncio, so other hosts carry on meanwhile.
    """

    def __init__(self, host: Host, *, process_start_delay: float = 0.0) -> None:
        self.host = host
        self.process_start_delay = process_start_delay
        # The commands running now, whichever endpoint they came through: `end_running` ends them, as a reboot would.
        self._running: set[asyncio.Task[Any]] = set()

    @contextlib.contextmanager
    def _running_command(self) -> Iterator[None]:
        task = asyncio.current_task()
        if task is None:
            yield
            return
        self._running.add(task)
        try:
            yield
        finally:
            self._running.discard(task)

    def end_running(self) -> list[asyncio.Task[Any]]:
        """Cancel every command still running on the host; the tasks, to wait for."""
        running = list(self._running)
        for task in running:
            task.cancel()
        self._running.clear()
        return running

    async def run_command(
        self, command: str, arguments: list[str], stdin: bytes, client: tuple[str, int], user: str
    ) -> CommandResult:
        """A WinRS command (WinRM's cmd shell): the program and its arguments."""
        with self._running_command():
            outcome = await self._run_program(command, arguments, stdin, client, user)
            return self._called(outcome, stdin, client, user, "winrm")

    async def run_default_shell_command(self, command: str, stdin: bytes, client: tuple[str, int], user: str) -> CommandResult:
        """An SSH exec request, as Win32-OpenSSH with powershell.exe as its DefaultShell runs it.

        sshd starts the default shell with its command option and the request's command as one argument
        (``do_exec_windows`` in contrib/win32/win32compat/w32-doexec.c: ``powershell.exe -c <command>``), so the
        command is the script that PowerShell runs, with the channel as its stdin, stdout and stderr.
        """
        command_line = f'"{DEFAULT_SHELL}" -c {command}'
        with self._running_command():
            outcome = await self._run_parsed(ParsedCommand(DEFAULT_SHELL, command), command_line, stdin, client, user)
            return self._called(outcome, stdin, client, user, "ssh")

    def _called(
        self, outcome: tuple[CommandResult, list[str], list[str], bool], stdin: bytes, client: tuple[str, int], user: str, via: str
    ) -> CommandResult:
        result, ops, statuses, dropped = outcome
        self.host.emit(
            "remote_call",
            ops=ops,
            statuses=statuses,
            bytes_in=len(stdin),
            bytes_out=len(result.stdout),
            rc=result.rc,
            auth=user,
            client=client[0],
            dropped=dropped,
            via=via,
        )
        if dropped:
            result.drop_connection = True
        return result

    async def _run_program(
        self, command: str, arguments: list[str], stdin: bytes, client: tuple[str, int], user: str
    ) -> tuple[CommandResult, list[str], list[str], bool]:
        """One process: PowerShell with its script, or another program this host does not have."""
        return await self._run_parsed(parse_command(command, arguments), " ".join([command, *arguments]), stdin, client, user)

    async def _run_parsed(
        self, parsed: ParsedCommand, command_line: str, stdin: bytes, client: tuple[str, int], user: str
    ) -> tuple[CommandResult, list[str], list[str], bool]:
        if parsed.script is not None or parsed.error is not None:
            await self._start_powershell()
        self.host.record_transcript(user, client[0], command_line, parsed.script)
        if parsed.error is not None:
            return CommandResult(rc=1, stderr=(parsed.error + "\r\n").encode("utf-8")), [], [], False
        if parsed.script is None:
            name = parsed.program.split("\\")[-1]
            message = f"'{name}' is not recognized as an internal or external command,\r\noperable program or batch file.\r\n"
            return CommandResult(rc=1, stderr=message.encode("utf-8")), [], [], False
        if _first_line(parsed.script) == BOOTSTRAP_MARKER:
            return await self._run_bootstrap(parsed.script, stdin)
        inner = nested_command_line(parsed.script)
        if inner is None:
            return _unsupported_or_not_found(parsed.script), [], [], False
        # The inner process inherits the outer one's handles: it reads the same stdin and writes
        # to the same stdout and stderr. -EncodedCommand ends with the last command's $?: 0 or 1.
        result, ops, statuses, dropped = await self._run_program(inner, [], stdin, client, user)
        return CommandResult(rc=0 if result.rc == 0 else 1, stdout=result.stdout, stderr=result.stderr), ops, statuses, dropped

    async def _start_powershell(self) -> None:
        if self.process_start_delay > 0:
            await asyncio.sleep(self.process_start_delay)

    async def _run_bootstrap(self, script: str, stdin: bytes) -> tuple[CommandResult, list[str], list[str], bool]:
        """stdin's lines joined and parsed by JavaScriptSerializer, then the agent runs the request.

        No cmdlet sees stdin. Empty stdin parses to null: no agent, an empty script, nothing
        printed. Anything else that is not JSON stops the bootstrap with its fixed message.
        """
        text = "\n".join(stdin.decode("utf-8", errors="replace").splitlines())
        try:
            payload: object = json.loads(text) if text.strip() else None
        except ValueError:
            return _not_json(script), [], [], False
        # $xuPayload.agent: a key of the dictionary; null when it is missing or the payload is no object.
        fields: dict[str, object] = payload if isinstance(payload, dict) else {}
        agent = fields.get("agent")
        if not agent:
            # PowerShell hands $null to a string parameter as "": [ScriptBlock]::Create makes an empty script, which prints nothing.
            return CommandResult(rc=0), [], [], False
        if _first_line(as_text(agent)) != AGENT_MARKER:
            return command_not_found(as_text(agent)), [], [], False
        request = fields.get("request")
        answer, ops, statuses, dropped = await self.run_request(request if isinstance(request, dict) else {})
        stdout = json.dumps(answer, ensure_ascii=True, separators=(",", ":")).encode("utf-8")
        return CommandResult(rc=0, stdout=stdout), ops, statuses, dropped

    async def run_request(self, request: dict[str, object]) -> tuple[dict[str, object], list[str], list[str], bool]:
        """The agent's main loop: ops in order, `skipped` after the first error when stop_on_error."""
        absent = request.get("absent_errors")
        token = ABSENT_ERRORS.set(tuple(m for m in (absent if isinstance(absent, list) else []) if isinstance(m, dict)))
        try:
            return await self._run_ops(request)
        finally:
            ABSENT_ERRORS.reset(token)

    async def _run_ops(self, request: dict[str, object]) -> tuple[dict[str, object], list[str], list[str], bool]:
        started = time.perf_counter()
        stop_on_error = True if request.get("stop_on_error") is None else bool(request.get("stop_on_error"))
        operations = request.get("ops")
        entries = operations if isinstance(operations, list) else ([] if operations is None else [operations])
        results: list[dict[str, object]] = []
        names: list[str] = []
        dropped = False
        failed = False
        for operation in entries:
            spec = operation if isinstance(operation, dict) else {}
            name = as_text(spec.get("op"))
            names.append(name)
            entry: dict[str, object] = {"id": spec.get("id"), "op": name}
            if failed and stop_on_error:
                entry["status"] = "skipped"
                results.append(entry)
                continue
            began = time.perf_counter()
            args = spec.get("args")
            try:
                outcome = await self._run_op(request, name, args if isinstance(args, dict) else {})
                entry["status"] = "ok"
                entry["result"] = outcome
            except CallKilled:
                # The agent's process is gone: nothing after this operation runs and no answer reaches the controller.
                dropped = True
                break
            except PrimitiveError as error:
                # As the agent does: only `"optional": true` itself (not 1, not "true") spares the operations after it.
                failed = failed or spec.get("optional") is not True
                entry["status"] = "error"
                entry["error"] = _redacted(error, args)
            if name in PRIMITIVES and self.host.faults.take_drop(name):
                dropped = True
            entry["elapsed_ms"] = int((time.perf_counter() - began) * 1000)
            results.append(entry)
        # The host's own time as the answer is written, and how long the agent ran (docs/agent-protocol.md, Answer).
        answer = {
            "agent": AGENT_NAME, "protocol": PROTOCOL, "results": results,
            "host_time": iso_utc_ms(self.host.clock.now()), "host_elapsed_ms": int((time.perf_counter() - started) * 1000),
        }
        return answer, names, [str(r["status"]) for r in results], dropped

    async def _run_op(self, request: dict[str, object], name: str, args: dict[str, object]) -> dict[str, object]:
        if request.get("protocol") != PROTOCOL and as_text(request.get("protocol")) != str(PROTOCOL):
            raise PrimitiveError("InvalidArgument", f"unsupported protocol {as_text(request.get('protocol'))}")
        primitive = PRIMITIVES.get(name)
        if primitive is None:
            raise PrimitiveError("UnknownOperation", f"unknown operation {name}")
        if self.host.faults.take_fail(name):
            raise PrimitiveError("UnauthorizedAccessException", "Access is denied.")
        try:
            return await primitive(self.host, args)
        except (PrimitiveError, CallKilled):
            raise
        except Exception as exc:  # a lab defect must not look like a host's answer
            log.exception("%s: primitive %s failed inside the lab", self.host.name, name)
            raise PrimitiveError("LabInternalError", f"{type(exc).__name__}: {exc}") from exc


def _unsupported_or_not_found(script: str) -> CommandResult:
    """PowerShell exists on every host: a script that starts it in a way the lab does not follow fails, loudly."""
    first = next((line.strip() for line in script.splitlines() if line.strip() and not line.strip().startswith("#")), "")
    term = first.lstrip("&. ").split()[0].strip("'\"") if first.lstrip("&. ") else ""
    if re.split(r"[\\/]", term)[-1].casefold() not in ("powershell", "powershell.exe"):
        return command_not_found(script)
    message = "xulab runs only the collection's bootstrap, or a PowerShell that does nothing but start it with literal arguments"
    lines = error_record(
        "",
        message,
        script_line=first,
        line_number=1,
        column=1,
        category="NotImplemented: (:String) [], LabUnsupportedScript",
        error_id="LabUnsupportedScript",
        extent=len(first),
    )
    return CommandResult(rc=1, stderr=clixml_error(lines))


def _redacted(error: PrimitiveError, args: object) -> dict[str, object]:
    """The agent never lets a PFX password out, not even inside an error text."""
    answer = error.as_json()
    secret = args.get("password") if isinstance(args, dict) else None
    if isinstance(secret, str) and secret:
        for key in ("message", "fqid"):
            if isinstance(answer.get(key), str):
                answer[key] = str(answer[key]).replace(secret, "********")
    return answer


def _not_json(script: str) -> CommandResult:
    """The bootstrap's `throw` when stdin is not JSON, placed where the received script has it."""
    statement = f"throw '{NOT_JSON}'"
    lines = script.splitlines()
    line_number, line = next(((n, text) for n, text in enumerate(lines, start=1) if statement in text), (1, statement))
    record = error_record(
        "",
        NOT_JSON,
        script_line=line.rstrip(),
        line_number=line_number,
        column=line.index(statement) + 1,
        category=f"OperationStopped: ({NOT_JSON}:String) [], RuntimeException",
        error_id=NOT_JSON,
        extent=len(statement),
    )
    return CommandResult(rc=1, stderr=clixml_error(record))
