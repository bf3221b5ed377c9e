"""Starting and stopping a lab's background process (`up` and `down`)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import control, layout
from .errors import LabError
from .fleet import FleetOptions
from .host import WINRM_PORT
from .processes import process_alive

POLL_S = 0.05
STOP_GRACE_S = 10.0


def running_pid(directory: Path) -> int | None:
    """The pid of the lab serving `directory`, if one runs."""
    try:
        pid = int(layout.pid_file(directory).read_text().strip())
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    if b"xulab" not in command_line or b"serve" not in command_line or not process_alive(pid):
        return None
    return pid


def serve_command(options: FleetOptions) -> list[str]:
    command = [
        sys.executable, "-m", "xulab", "serve",
        "--dir", str(options.directory),
        "--hosts", str(options.hosts),
        "--auth", options.auth,
        "--connection", options.connection,
        "--restart-delay", str(options.restart_delay),
        "--expiring-in", str(options.expiring_in),
        "--scenario", options.scenario,
        "--call-overhead", str(options.call_overhead),
        *(["--windows-version", options.windows_version] if options.windows_version else []),
        # "--templates=" keeps an empty list one argument.
        f"--templates={','.join(options.templates)}",
        f"--pending-templates={','.join(options.pending_templates)}",
    ]
    if options.base_address:
        command += ["--base-address", options.base_address]
    for name, seconds in options.clock_offsets:
        command.append(f"--clock-offset={name}={seconds!r}" if name is not None else f"--clock-offset={seconds!r}")
    return command


def up(options: FleetOptions, timeout_s: float | None = None) -> dict[str, Any]:
    """Start the lab in the background; returns lab.json once every host's WinRM port accepts."""
    directory = options.directory
    directory.mkdir(parents=True, exist_ok=True)
    running = running_pid(directory)
    if running is not None:
        raise LabError(f"a lab is already running in {directory} (pid {running}); run `down` first")
    for path in layout.generated(directory):
        path.unlink(missing_ok=True)
    shutil.rmtree(layout.hosts_dir(directory), ignore_errors=True)
    deadline = time.monotonic() + (timeout_s if timeout_s is not None else 60 + options.hosts * 0.5)
    with layout.log_file(directory).open("wb") as log:
        process = subprocess.Popen(
            serve_command(options), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    layout.pid_file(directory).write_text(f"{process.pid}\n")
    while True:
        if process.poll() is not None:
            raise LabError(f"the lab failed to start (exit {process.returncode}):\n{_log_tail(directory)}")
        try:
            if control.request(directory, "ping", timeout_s=5)["ready"]:
                break
        except LabError:
            pass
        if time.monotonic() > deadline:
            stop(directory)
            raise LabError(f"the lab did not become ready in time:\n{_log_tail(directory)}")
        time.sleep(POLL_S)
    info: dict[str, Any] = json.loads(layout.lab_json(directory).read_text())
    for host in info["hosts"]:
        _wait_for_port(host["address"], WINRM_PORT, deadline)
        if info.get("ssh_port"):
            _wait_for_port(host["address"], int(info["ssh_port"]), deadline)
    return info


def _wait_for_port(address: str, port: int, deadline: float) -> None:
    while True:
        try:
            with socket.create_connection((address, port), timeout=1):
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise LabError(f"{address}:{port} does not accept connections: {exc}") from exc
            time.sleep(POLL_S)


def _log_tail(directory: Path, lines: int = 30) -> str:
    try:
        return "\n".join(layout.log_file(directory).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no lab.log)"


def stop(directory: Path) -> bool:
    """Stop the lab in `directory` (SIGTERM, then SIGKILL); False when none was running."""
    pid = running_pid(directory)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(POLL_S)
        if process_alive(pid):
            os.kill(pid, signal.SIGKILL)
            while process_alive(pid):
                time.sleep(POLL_S)
    layout.pid_file(directory).unlink(missing_ok=True)
    layout.control_socket(directory).unlink(missing_ok=True)
    return pid is not None
