"""The chaos suite's labs and runs: many one-host scenarios on one lab, and renew runs that can be frozen at a call.

A scenario owns one host of a shared lab: its variables (mode, strategy, PFX) are the host's own (``host_vars``), its
clock moves alone (the host's offset, never the fleet's), and everything is checked on that host's event log and state.
A run (``Controller``) is one ``ansible-playbook playbooks/renew.yml`` over the hosts of several scenarios, in one batch
(``xu_renew_serial=100%``, a fork per host), so that no host waits for another. ``freeze/sitecustomize.py`` stops a
run's worker right after its host answered a chosen call; the run can then be killed (with every worker), or stalled
whole and woken.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import pathlib
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Iterable
from typing import Any

from invariants import Baseline, baseline
from labtools import BIN, CALLBACKS, REPO, Lab, PlaybookRun, kill_controller, parse_time, start_lab, stop_lab

from xulab import control

PLAYBOOK = REPO / "playbooks" / "renew.yml"
FREEZE_PATH = pathlib.Path(__file__).resolve().parent / "freeze"
MODES = ("replace", "reuse_key")
STRATEGIES = ("documented", "minimal_outage")
JOURNAL = pathlib.Path("C/ProgramData/xtractuniversal.tls/renew.json")
TLS_JSON = pathlib.Path("C/Program Files/XtractUniversal/config/servers/tls.json")
# The unknown object the odd settings file carries: literal text a JSON library would rewrite (2.50, 1e3, the escapes).
EXTRA_TEXT = '"Extra": {"Ratio": 2.50, "Limit": 1e3, "Name": "\\u00e9\\/x"}'
# The primitives that only read; every other one changes the host.
READ_ONLY_OPS = frozenset({"discover", "cert_list", "fw_get", "task_get", "port_probe", "journal_read", "file_check", "served_check"})
# Task names of the role's two phases (roles/renew/tasks/assess.yml, main.yml), after the role's name.
ASSESS_TASK = "Assess |"
ACT_TASK = "Renew | Renew the certificate"
# Forks at most: a run over more hosts hands them out as forks free up (a worker is some 60 MB).
MAX_FORKS = 40
# How long a run may go without any sign of progress (a result, a call, a frozen worker) before it is given up on.
PATIENCE_S = 180.0


class ChaosLab(Lab):
    """A lab whose hosts are handed out to scenarios, read and driven through its control socket (no process each time)."""

    def __init__(self, directory: pathlib.Path) -> None:
        super().__init__(directory)
        self.addresses = {h["name"]: h["address"] for h in self.info["hosts"]}
        self.free = list(self.addresses)
        self.password = secrets.token_urlsafe(18)
        self.certs = directory.parent / f"{directory.name}-certs"
        self.certs.mkdir(mode=0o700)
        secrets_file = self.certs / "secrets.json"
        secrets_file.write_text(json.dumps({"xu_renew_pfx_password": self.password}))
        secrets_file.chmod(0o600)
        # Every run of this lab: the PFX password from a file, never on a command line.
        self.extra: tuple[str, ...] = ("-e", f"@{secrets_file}")
        self._lock = threading.Lock()

    @classmethod
    def up(cls, directory: pathlib.Path, hosts: int, restart_delay: float) -> ChaosLab:
        """A lab of ``hosts`` healthy hosts whose certificates expire in 10 days."""
        start_lab(directory, "--hosts", str(hosts), "--scenario", "healthy", "--expiring-in", "10", "--restart-delay", str(restart_delay))
        return cls(directory)

    def down(self) -> None:
        stop_lab(self.dir)

    def cpu_seconds(self) -> float:
        """The CPU time the lab's processes (the server and its workers) have used so far."""
        total = 0.0
        for pid in _tree(int(self.info["pid"])):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                # utime, stime, cutime, cstime (fields 14-17 of proc(5)), in clock ticks.
                total += sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")
        return total

    def take(self, count: int) -> list[str]:
        with self._lock:
            if count > len(self.free):
                raise RuntimeError(f"the lab {self.dir} has {len(self.free)} hosts left, {count} wanted")
            taken, self.free = self.free[:count], self.free[count:]
        return taken

    def state(self, host: str) -> dict[str, Any]:
        state: dict[str, Any] = control.request(self.dir, "state", host=host)
        return state

    def fault(self, host: str, **settings: object) -> None:
        control.request(self.dir, "fault", host=host, set={key: str(value) for key, value in settings.items()})

    def now(self, host: str) -> float:
        """The host's clock, as a POSIX timestamp."""
        return parse_time(control.request(self.dir, "clock", host=host)["hosts"][host]["now"])

    def advance_host(self, host: str, seconds: float) -> None:
        """Move this host's clock (alone: the other scenarios' hosts keep theirs) forward; the tasks it passes have run."""
        offset = float(control.request(self.dir, "clock", host=host)["hosts"][host]["offset_s"])
        control.request(self.dir, "clock", host=host, offset=offset + max(0.0, seconds))

    def advance_host_past(self, host: str, moment: str | float) -> None:
        """Move this host's clock a second past ``moment`` (ISO 8601 UTC or a timestamp)."""
        target = parse_time(moment) if isinstance(moment, str) else moment
        self.advance_host(host, target - self.now(host) + 1)

    def prepare(self, host: str, mode: str, strategy: str, **variables: object) -> str | None:
        """The host's renew variables (host_vars next to the inventory); for replace, a PFX from the lab CA. The PFX's thumbprint."""
        values: dict[str, object] = {"xu_renew_mode": mode, "xu_renew_strategy": strategy, **variables}
        thumbprint = None
        if mode == "replace":
            issued = control.request(self.dir, "issue", host=host, password=self.password)
            pfx = self.certs / f"{host}.pfx"
            pfx.write_bytes(base64.b64decode(issued["pfx_b64"]))
            pfx.chmod(0o600)
            values["xu_renew_pfx_path"] = str(pfx)
            thumbprint = str(issued["thumbprint"]).upper()
        host_vars = self.dir / "host_vars"
        host_vars.mkdir(exist_ok=True)
        (host_vars / f"{host}.yml").write_text(json.dumps(values))
        return thumbprint

    def tls_json(self, host: str) -> bytes:
        return (self.dir / "hosts" / host / "fs" / TLS_JSON).read_bytes()

    def odd_settings(self, host: str) -> bytes:
        """The host's tls.json rewritten from its current JSON with a BOM, CRLF and the unknown object EXTRA_TEXT; its bytes.

        The approach of tests/integration/test_byte_exact.odd_settings: the document as json.dumps writes it, the
        literal object spliced in before the closing brace.
        """
        path = self.dir / "hosts" / host / "fs" / TLS_JSON
        document = json.loads(path.read_bytes().decode("utf-8-sig"))
        body = json.dumps(document, indent=2)[:-2]
        text = body + ",\n  " + EXTRA_TEXT + "\n}\n"
        data = b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8")
        path.write_bytes(data)
        return data

    def journal(self, host: str) -> dict[str, Any] | None:
        """The renew journal on the host, as the lab's state lists it; None without one."""
        text = self.state(host)["journals"].get("renew")
        return json.loads(text) if text else None

    def baseline(self, host: str) -> Baseline:
        return baseline(self, host)

    def calls_since(self, host: str, base: Baseline) -> list[dict[str, Any]]:
        """The remote_call events of the host since ``base``."""
        return [e for e in self.events(host)[base.events :] if e["type"] == "remote_call"]


@dataclasses.dataclass(frozen=True)
class Freeze:
    """Where a run's workers stop: right after the ``after[host]``-th remote call of the xu_renew task of ``phase``
    (with ``op``: of its calls that sent that primitive)."""

    phase: str
    after: dict[str, int]
    op: str | None = None


class Controller:
    """One renew run over some hosts of a lab, in the background; frozen, killed, stalled and woken as a scenario says."""

    def __init__(
        self, lab: ChaosLab, directory: pathlib.Path, run_id: str, hosts: Iterable[str], *extra: str, freeze: Freeze | None = None,
    ) -> None:
        self.lab = lab
        self.run_id = run_id
        self.hosts = list(hosts)
        self.dir = directory / run_id
        self.dir.mkdir(parents=True)
        self.freeze = freeze
        self.results_log = self.dir / "results.jsonl"
        self.markers = self.dir / "frozen"
        self.markers.mkdir()
        self.output = self.dir / "stdout.log"
        env = dict(
            os.environ,
            ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
            ANSIBLE_CALLBACK_PLUGINS=str(CALLBACKS),
            ANSIBLE_CALLBACKS_ENABLED="result_log",
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_FORCE_COLOR="0",
            XU_RESULT_LOG=str(self.results_log),
        )
        if freeze is not None:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(FREEZE_PATH), os.environ.get("PYTHONPATH")]))
            after = {lab.addresses[host]: calls for host, calls in freeze.after.items()}
            events = {lab.addresses[host]: str(lab.dir / "hosts" / host / "events.jsonl") for host in freeze.after}
            env["XU_CHAOS_FREEZE"] = json.dumps({"dir": str(self.markers), "phase": freeze.phase, "after": after, "op": freeze.op, "events": events})
        # A frozen worker keeps its fork: a run that freezes has one for every host, or the last hosts would never start.
        forks = max(5, len(self.hosts)) if freeze is not None else min(MAX_FORKS, max(5, len(self.hosts)))
        command = [
            str(BIN / "ansible-playbook"), "-i", str(lab.inventory), str(PLAYBOOK), "--limit", ",".join(self.hosts),
            # One batch, a fork per host: no host waits for another (the canary, a batch's slowest host, a free fork).
            "-f", str(forks), "-e", "xu_renew_serial=100%", "-e", f"xu_renew_run_id={run_id}", *lab.extra, *extra,
        ]
        with self.output.open("wb") as output:
            self.process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True)
        self.stopped: list[int] = []

    # -- what it did ----------------------------------------------------------------------------------------------------

    def results(self) -> list[dict[str, Any]]:
        """The task results logged so far (a line being written is left for later)."""
        if not self.results_log.exists():
            return []
        found = []
        for line in self.results_log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
        return found

    def frozen(self) -> dict[str, int]:
        """The hosts whose worker stopped itself, and its pid."""
        names = {address: host for host, address in self.lab.addresses.items()}
        found = {}
        for marker in self.markers.iterdir():
            with contextlib.suppress(ValueError, OSError):
                frozen = json.loads(marker.read_text())
                found[names[frozen["address"]]] = int(frozen["pid"])
        return found

    def _settled(self, host: str, results: list[dict[str, Any]], frozen: dict[str, int]) -> bool:
        """Whether ``host`` is frozen, or will never be: its phase's task ended, or it has nothing to act on."""
        if host in frozen:
            return True
        phase_task = ASSESS_TASK if self.freeze and self.freeze.phase == "assess" else ACT_TASK
        mine = [e for e in results if e["host"] == host]
        if any(phase_task in e["task"] for e in mine):
            return True
        assessed = [e for e in mine if ASSESS_TASK in e["task"]]
        if assessed and phase_task == ACT_TASK:
            result = assessed[-1]["result"]
            acting = result.get("action") in ("renew", "resume") or bool((result.get("plan") or {}).get("gate_closed"))
            return assessed[-1]["status"] != "ok" or not acting
        return False

    def wait_frozen(self) -> dict[str, int]:
        """Wait until every host of the freeze is frozen, or will never be (the run ended, its task ended, or nothing moved
        for PATIENCE_S); the frozen hosts, each worker stopped."""
        assert self.freeze is not None
        expected = set(self.freeze.after)
        progress: tuple[int, ...] = ()
        last_move = time.monotonic()
        while self.process.poll() is None:
            results, frozen = self.results(), self.frozen()
            if all(self._settled(host, results, frozen) for host in expected):
                break
            moved = (len(results), len(frozen), *(self._events_size(host) for host in self.hosts))
            if moved != progress:
                progress, last_move = moved, time.monotonic()
            elif time.monotonic() - last_move > PATIENCE_S:
                break
            time.sleep(0.05)
        frozen = self.frozen()
        for pid in frozen.values():
            _wait_stopped(pid)
        return frozen

    def _events_size(self, host: str) -> int:
        with contextlib.suppress(OSError):
            return (self.lab.dir / "hosts" / host / "events.jsonl").stat().st_size
        return 0

    # -- what happens to it -----------------------------------------------------------------------------------------------

    def kill(self) -> None:
        """The controller dies with its machine: SIGKILL to ansible-playbook and every worker (each in a group of its own)."""
        kill_controller(self.process.pid)
        self.process.wait()

    def stall(self) -> None:
        """SIGSTOP every process of the controller, as a machine that hangs (its frozen workers are stopped already)."""
        while True:
            running = [pid for pid in _tree(self.process.pid) if pid not in self.stopped]
            if not running:
                return
            for pid in running:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
                    _wait_stopped(pid)
                self.stopped.append(pid)

    def wake(self) -> None:
        """SIGCONT every process of the controller: the stalled run goes on from where it stopped."""
        for pid in sorted(set(self.stopped) | set(self.frozen().values()) | _tree(self.process.pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.stopped = []

    def finish(self, timeout: float = 900) -> PlaybookRun:
        """Wait for the run to end (killed after ``timeout``); what it printed and its task results."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_controller(self.process.pid)
            self.process.wait()
        return PlaybookRun(self.process.returncode, self.output.read_text(errors="replace"), "", self.results())

    def ended(self) -> PlaybookRun:
        """A run that was killed: what it printed and logged before it died."""
        return PlaybookRun(self.process.returncode, self.output.read_text(errors="replace"), "", self.results())


def _tree(pid: int) -> set[int]:
    """``pid`` and every process descended from it, alive (not a zombie)."""
    children: dict[int, list[int]] = {}
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found = {pid}
    queue = [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            if child not in found:
                found.add(child)
                queue.append(child)
    return found


def _wait_stopped(pid: int, timeout: float = 30.0) -> None:
    """Until the process is stopped (its SIGSTOP delivered), or gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return
        if state in ("T", "t", "Z"):
            return
        time.sleep(0.01)
