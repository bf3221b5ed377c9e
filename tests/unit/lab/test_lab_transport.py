"""How each ansible-core's winrm connection delivers our command, and what each call costs.

The forms below follow ansible-core's own `Connection.exec_command` (plugins/connection/winrm.py)
for `_low_level_execute_command(cmd, in_data=..., executable="")`; winrm has no
`allow_executable`, so `cmd` reaches `exec_command` unchanged:

* 2.16, 2.17, 2.18: `cmd_parts = self._shell._encode_script(cmd, as_list=True, strict_mode=False,
  preserve_rc=False)`: our whole command line becomes the script of a second PowerShell
  (lines stripped, blank lines dropped, UTF-16-LE, base64), sent as `Command="PowerShell"` and the
  rest as pywinrm's one `Arguments` element.
* 2.19, 2.20: a command starting with `PowerShell -NoProfile -NonInteractive -ExecutionPolicy
  Unrestricted -EncodedCommand ` is split on spaces and sent as it is.
* 2.21: a command containing ` -EncodedCommand ` is sent whole as `Command`, with no arguments.

stdin (`in_data`) is sent unchanged in every version, in 200,000-byte Send chunks.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time

import pytest
from lab.labkit import HostFactory, bootstrap_command, encoded_command, events, payload, results, run

from xulab.shell import CommandShell, split_call_overhead
from xulab.wsman import CommandResult

CLIENT = ("127.0.0.1", 50124)
USER = "XULAB\\xuadmin"
COMMON_ARGS = "PowerShell -NoProfile -NonInteractive -ExecutionPolicy Unrestricted"
VERSIONS = ["2.16", "2.17", "2.18", "2.19", "2.20", "2.21"]

# Recorded for a command whose script is only the bootstrap's marker line.
MARKER_COMMAND = f"{COMMON_ARGS} -EncodedCommand IwAgAHgAdAByAGEAYwB0AHUAbgBpAHYAZQByAHMAYQBsAC4AdABsAHMAIABiAG8AbwB0AHMAdAByAGEAcAAgADEA"
RECORDED_2_17 = (
    "PowerShell",
    [
        "-NoProfile -NonInteractive -ExecutionPolicy Unrestricted -EncodedCommand "
        "UABvAHcAZQByAFMAaABlAGwAbAAgAC0ATgBvAFAAcgBvAGYAaQBsAGUAIAAtAE4AbwBuAEkAbgB0AGUAcgBhAGMAdABpAHYAZQAgAC0ARQB4AGUAYwB1AHQA"
        "aQBvAG4AUABvAGwAaQBjAHkAIABVAG4AcgBlAHMAdAByAGkAYwB0AGUAZAAgAC0ARQBuAGMAbwBkAGUAZABDAG8AbQBtAGEAbgBkACAASQB3AEEAZwBBAEgA"
        "ZwBBAGQAQQBCAHkAQQBHAEUAQQBZAHcAQgAwAEEASABVAEEAYgBnAEIAcABBAEgAWQBBAFoAUQBCAHkAQQBIAE0AQQBZAFEAQgBzAEEAQwA0AEEAZABBAEIA"
        "cwBBAEgATQBBAEkAQQBCAGkAQQBHADgAQQBiAHcAQgAwAEEASABNAEEAZABBAEIAeQBBAEcARQBBAGMAQQBBAGcAQQBEAEUAQQA="
    ],
)


def sent_by(version: str, cmd: str) -> tuple[str, list[str]]:
    """(WS-Man Command, Arguments) that ansible-core `version`'s winrm connection sends for `cmd`."""
    if version in ("2.16", "2.17", "2.18"):
        script = "\n".join(line.strip() for line in cmd.splitlines() if line.strip())
        encoded = base64.b64encode(script.encode("utf-16-le")).decode("ascii")
        return "PowerShell", [f"-NoProfile -NonInteractive -ExecutionPolicy Unrestricted -EncodedCommand {encoded}"]
    if version in ("2.19", "2.20"):
        program, arguments = cmd.split(" ", 1)
        return program, [arguments]
    return cmd, []


def test_the_recorded_2_17_form_is_what_sent_by_builds() -> None:
    assert sent_by("2.17", MARKER_COMMAND) == RECORDED_2_17
    assert sent_by("2.19", MARKER_COMMAND) == ("PowerShell", [MARKER_COMMAND.split(" ", 1)[1]])
    assert sent_by("2.21", MARKER_COMMAND) == (MARKER_COMMAND, [])


@pytest.mark.parametrize("version", VERSIONS)
def test_every_ansible_core_form_runs_the_agent_with_its_stdin(host_factory: HostFactory, version: str) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            command, arguments = sent_by(version, bootstrap_command())
            stdin = payload([("journal_write", {"name": "transport-check", "content": "{\"v\": 1}"})])

            result = await CommandShell(host).run_command(command, arguments, stdin, CLIENT, USER)

            assert (result.rc, result.stderr) == (0, b""), result.stderr[:400]
            assert [entry["status"] for entry in results(json.loads(result.stdout))] == ["ok"]
            assert host.journals() == {"transport-check": "{\"v\": 1}"}
            (call,) = events(host, "remote_call")
            assert call["ops"] == ["journal_write"] and call["rc"] == 0
            transcript = (host.directory / "transcript.log").read_text()
            command_lines = [line for line in transcript.splitlines() if line.startswith("CommandLine: ")]
            nested = version in ("2.16", "2.17", "2.18")
            # Windows logs each powershell.exe it starts: the outer one, then the inner one ours is.
            assert command_lines == ([f"CommandLine: {' '.join([command, *arguments])}"] if nested else []) + [
                f"CommandLine: {bootstrap_command()}"
            ]
            assert "transport-check" not in transcript  # stdin is never recorded

    run(scenario())


def test_a_failing_inner_powershell_fails_the_outer_with_exit_code_1(host_factory: HostFactory) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            shell = CommandShell(host)
            command, arguments = sent_by("2.17", bootstrap_command())
            broken = await shell.run_command(command, arguments, b"not json", CLIENT, USER)
            assert broken.rc == 1 and broken.stdout == b""
            assert b"the payload on stdin is not JSON" in broken.stderr  # the inner process's own stderr
            command, arguments = sent_by("2.17", f"{COMMON_ARGS} -EncodedCommand not-base64")
            garbled = await shell.run_command(command, arguments, b"", CLIENT, USER)
            assert garbled.rc == 1 and b"-EncodedCommand is not properly encoded" in garbled.stderr

    run(scenario())


@pytest.mark.parametrize(
    "outer_script",
    [
        f"{MARKER_COMMAND} | Out-String",  # a pipeline: not a bare start of PowerShell
        f"$x = 1; {MARKER_COMMAND}",
        f"{MARKER_COMMAND}\nWrite-Output done",
        "PowerShell -NoProfile -EncodedCommand $env:PAYLOAD",
    ],
)
def test_wrappers_the_lab_does_not_follow_fail(host_factory: HostFactory, outer_script: str) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            stdin = payload([("journal_write", {"name": "never", "content": "{}"})])
            result = await CommandShell(host).run_command(encoded_command(outer_script), [], stdin, CLIENT, USER)
            assert result.rc == 1 and result.stdout == b""
            assert result.stderr.startswith(b"#< CLIXML\r\n")
            assert host.journals() == {}
            assert events(host, "remote_call")[-1]["ops"] == []

    run(scenario())


def test_a_foreign_program_inside_the_wrapper_is_not_recognized(host_factory: HostFactory) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            result = await CommandShell(host).run_command(encoded_command("cmd.exe /c whoami"), [], b"", CLIENT, USER)
            assert result.rc == 1 and b"The term 'cmd.exe' is not recognized" in result.stderr

    run(scenario())


# --- what a call costs -------------------------------------------------------------------------


async def _timed_call(shell: CommandShell, command: tuple[str, list[str]]) -> tuple[float, CommandResult]:
    began = time.perf_counter()
    result = await shell.run_command(command[0], command[1], payload([("task_get", {"name": "x"})]), CLIENT, USER)
    return time.perf_counter() - began, result


def test_each_powershell_start_costs_the_overhead_without_blocking_other_hosts(host_factory: HostFactory) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as first, host_factory("healthy") as second:
            plain = sent_by("2.21", bootstrap_command())
            free, _result = await _timed_call(CommandShell(first), plain)
            costly, result = await _timed_call(CommandShell(first, process_start_delay=0.3), plain)
            assert free < 0.3 and result.rc == 0 and costly >= 0.3
            # 2.16 to 2.18 start two powershell.exe per call: both start-ups are paid.
            nested, result = await _timed_call(CommandShell(first, process_start_delay=0.3), sent_by("2.17", bootstrap_command()))
            assert result.rc == 0 and nested >= 0.6
            began = time.perf_counter()
            both = await asyncio.gather(
                _timed_call(CommandShell(first, process_start_delay=0.3), plain),
                _timed_call(CommandShell(second, process_start_delay=0.3), plain),
            )
            assert all(result.rc == 0 for _elapsed, result in both)
            assert time.perf_counter() - began < 0.55  # overlapped, not 0.6 in a row

    run(scenario())


def test_the_overhead_is_split_between_shell_create_and_process_start() -> None:
    assert split_call_overhead(0) == (0, 0)
    create, start = split_call_overhead(2.0)
    assert (create, start) == (0.5, 1.5)
    with pytest.raises(ValueError, match="at least 0"):
        split_call_overhead(-1)
