"""Helpers of the integration tests: real ansible-playbook runs against a simulated fleet (xulab).

Everything is observed from outside the module: the lab's state (`xulab state`), the
hosts' event logs and files, and what ansible-playbook printed.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from xulab import __main__ as xulab_cli
from xulab import control

REPO = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
CALLBACKS = REPO / "tests" / "integration" / "callback_plugins"


@dataclass
class PlaybookRun:
    rc: int
    stdout: str
    stderr: str
    results: list[dict[str, Any]]

    def of(self, host: str, task: str | None = None) -> dict[str, Any]:
        """The last result of ``task`` (or of any task) on ``host``."""
        for entry in reversed(self.results):
            if entry["host"] == host and (task is None or entry["task"] == task):
                return dict(entry["result"]) | {"_status": entry["status"]}
        raise KeyError(f"no result for {host} {task}\n{self.stdout}\n{self.stderr}")


class Lab:
    """A running fleet, driven through its command line and read through its files."""

    def __init__(self, directory: pathlib.Path) -> None:
        self.dir = directory
        self.inventory = directory / "inventory.yml"
        self.info: dict[str, Any] = json.loads((directory / "lab.json").read_text())

    def xulab(self, *args: str) -> str:
        """`python -m xulab ARGS`: its output; AssertionError when it fails."""
        return xulab(*args)

    @property
    def hosts(self) -> list[str]:
        return [h["name"] for h in self.info["hosts"]]

    def request(self, op: str, **fields: Any) -> Any:
        """A control request to the lab (what `xulab` sends), from this process: no interpreter to start per request."""
        return control.request(self.dir, op, **fields)

    def state(self, host: str) -> dict[str, Any]:
        state: dict[str, Any] = self.request("state", host=host)
        return state

    def fault(self, host: str, **settings: object) -> None:
        self.request("fault", host=host, set={key: str(value) for key, value in settings.items()})

    def reset(self, *args: str) -> None:
        """Every host back as `up` handed it out (`xulab reset`); with ``args`` (`up`'s), the lab `up ARGS` hands out."""
        shape = {"shape": lab_shape(args)} if args else {}
        self.request("reset", timeout_s=control.RESET_TIMEOUT_S, **shape)
        self.info = json.loads((self.dir / "lab.json").read_text())

    def clock(self, *args: str) -> dict[str, Any]:
        """`xulab clock` ``args`` (`--host`, `--offset`, `--advance`): every host's clock (`hosts` {name: {`now`,
        `offset_s`}}, `advanced_s`), or with `--host` that host's, after them."""
        options = dict(zip(args[::2], args[1::2], strict=True))
        unknown = set(options) - {"--host", "--offset", "--advance"}
        if unknown:
            raise ValueError(f"clock takes --host, --offset and --advance, not {sorted(unknown)}")
        fields: dict[str, Any] = {"host": options.get("--host")}
        for option in ("--offset", "--advance"):
            if option in options:
                fields[option.removeprefix("--")] = float(options[option])
        clocks: dict[str, Any] = self.request("clock", **fields)
        return clocks

    def advance_clock(self, seconds: float) -> dict[str, Any]:
        """Move every host's clock forward; the scheduled tasks it passes have run when this returns."""
        return self.clock("--advance", repr(float(seconds)))

    def advance_past(self, host: str, moment: str) -> dict[str, Any]:
        """Advance until ``host``'s clock is past ``moment`` (ISO 8601 UTC), by at least a second."""
        now = parse_time(self.clock("--host", host)["hosts"][host]["now"])
        return self.advance_clock(max(0.0, parse_time(moment) - now) + 1)

    def events(self, host: str, kind: str | None = None) -> list[dict[str, Any]]:
        path = self.dir / "hosts" / host / "events.jsonl"
        events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [e for e in events if kind is None or e["type"] == kind]

    def remote_calls(self, host: str) -> int:
        return len(self.events(host, "remote_call"))

    def host_files(self, host: str) -> dict[str, bytes]:
        root = self.dir / "hosts" / host / "fs"
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    def playbook(
        self,
        tasks: list[dict[str, Any]] | str,
        *,
        hosts: str = "xu_servers",
        check: bool = False,
        diff: bool = False,
        verbosity: int = 0,
        extra_args: tuple[str, ...] = (),
        tmp_path: pathlib.Path,
        env: dict[str, str] | None = None,
    ) -> PlaybookRun:
        """Run a play of ``tasks`` (or a playbook file path) with ansible-playbook."""
        if isinstance(tasks, str):
            playbook = pathlib.Path(tasks)
        else:
            playbook = tmp_path / f"play-{len(list(tmp_path.glob('play-*.yml')))}.yml"
            play = [{"name": "Integration test", "hosts": hosts, "gather_facts": False, "tasks": tasks}]
            playbook.write_text(json.dumps(play))
        log = tmp_path / f"results-{playbook.stem}-{os.getpid()}-{len(list(tmp_path.glob('results-*')))}.jsonl"
        command = [str(BIN / "ansible-playbook"), "-i", str(self.inventory), str(playbook), *extra_args]
        if check:
            command.append("--check")
        if diff:
            command.append("--diff")
        if verbosity:
            command.append("-" + "v" * verbosity)
        run_env = dict(
            os.environ,
            ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
            ANSIBLE_CALLBACK_PLUGINS=str(CALLBACKS),
            ANSIBLE_CALLBACKS_ENABLED="result_log",
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_FORCE_COLOR="0",
            XU_RESULT_LOG=str(log),
            **(env or {}),
        )
        done = subprocess.run(command, capture_output=True, text=True, env=run_env, cwd=REPO, timeout=900, check=False)
        results = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return PlaybookRun(done.returncode, done.stdout, done.stderr, results)


def parse_time(value: str) -> float:
    """An ISO 8601 UTC time (`2026-11-26T20:11:57Z`, with or without milliseconds) as a POSIX timestamp, as events' `ts`."""
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class _ThreadOutput(io.TextIOBase):
    """sys.stdout or sys.stderr while some thread runs `xulab` in-process: that thread's writes go to its own buffer, every
    other thread's to the stream it replaced. contextlib.redirect_stdout swaps the stream for the whole process, so two
    threads (the chaos suite's workers) starting labs at once would take each other's output, and could leave a buffer in
    place of the real stream for good."""

    def __init__(self, replaced: Any) -> None:
        super().__init__()
        self.replaced = replaced
        self.users = 0
        self.local = threading.local()

    def _target(self) -> Any:
        return getattr(self.local, "buffer", None) or self.replaced

    def write(self, text: str) -> int:
        written: int = self._target().write(text)
        return written

    def flush(self) -> None:
        self._target().flush()


_OUTPUT_LOCK = threading.Lock()


@contextlib.contextmanager
def _own_output(name: str, buffer: io.StringIO) -> Iterator[None]:
    with _OUTPUT_LOCK:
        stream = getattr(sys, name)
        if not isinstance(stream, _ThreadOutput):
            stream = _ThreadOutput(stream)
            setattr(sys, name, stream)
        stream.users += 1
    stream.local.buffer = buffer
    try:
        yield
    finally:
        stream.local.buffer = None
        with _OUTPUT_LOCK:
            stream.users -= 1
            if stream.users == 0 and getattr(sys, name) is stream:
                setattr(sys, name, stream.replaced)


def xulab(*args: str) -> str:
    """`python -m xulab ARGS` run in this process (its command line, without an interpreter to start): its output."""
    out, err = io.StringIO(), io.StringIO()
    with _own_output("stdout", out), _own_output("stderr", err):
        try:
            code = xulab_cli.main(list(args))
        except SystemExit as exc:  # argparse refusing the arguments
            code = exc.code if isinstance(exc.code, int) else 2
    if code != 0:
        raise AssertionError(f"xulab {' '.join(args)} failed: {out.getvalue()}\n{err.getvalue()}")
    return out.getvalue()


def lab_shape(args: tuple[str, ...]) -> dict[str, Any]:
    """The options `xulab up ARGS` starts a lab with, but its directory: two labs of one shape are alike once reset."""
    return xulab_cli.up_options(pathlib.Path(), list(args)).shape()


def start_lab(directory: pathlib.Path, *args: str) -> Lab:
    xulab("up", "--dir", str(directory), *args)
    return Lab(directory)


def stop_lab(directory: pathlib.Path) -> None:
    xulab("down", "--dir", str(directory))


def kill_controller(pid: int) -> None:
    """SIGKILL an ansible-playbook and every process it started, as a controller that dies with its machine.

    ansible-core 2.19 and later start each worker in a process group (or session) of its own, so killing the
    playbook's group alone would leave a worker running its task to the end.
    """
    while True:
        family = _descendants(pid) | {pid}
        alive = [member for member in family if _exists(member)]
        if not alive:
            return
        for member in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(member, signal.SIGKILL)


def interrupt_controller(pid: int, timeout: float = 120) -> None:
    """Ctrl-C to an ansible-playbook started in a session of its own, as a terminal sends it (an AWX cancel sends SIGINT
    too); returns once it and every worker it had are gone (a worker may outlive it while it cleans up)."""
    family = _descendants(pid) | {pid}
    os.killpg(pid, signal.SIGINT)
    deadline = time.monotonic() + timeout
    while any(_exists(member) for member in family):
        if time.monotonic() > deadline:
            kill_controller(pid)
            raise AssertionError(f"the interrupted controller or a worker of it was still running after {timeout} s")
        time.sleep(0.05)


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: set[int] = set()
    queue = [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            if child not in found:
                found.add(child)
                queue.append(child)
    return found


def _exists(pid: int) -> bool:
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
