"""Benchmark: the renew playbook on a lab fleet, every mode and strategy, next to a debug-only play.

Every host's certificate expires in 10 days, so every host is renewed. The numbers come from
the lab's event log, not from the role: remote calls per host, restarts, each host's outage
(the time an outside client could not use HTTPS: service not running with its HTTPS listener,
or the port not open to everyone) and lockout (the time the gate kept outside clients from the
HTTPS port, closed or restricted). With ``--call-overhead`` every remote call costs what a real
Windows server makes it cost (WinRM shell and powershell.exe start-up), so calls show up in the
outage. Each row also runs a debug-only playbook with the same plays, batches and number of
tasks per host over the same inventory, in the same run, so the ratio shows what the role costs
beyond Ansible's own work. Prints numbers; asserts nothing.

    .venv/bin/python tests/bench/renew_fleet.py --hosts 10 --call-overhead 1 --restart-delay 1
    .venv/bin/python tests/bench/renew_fleet.py --hosts 50 --call-overhead 1 --restart-delay 1
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import yaml

from xulab import control

REPO = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
PLAYBOOK = REPO / "playbooks" / "renew.yml"
HTTPS_PORT = 8165
PASSWORD = "bench-pfx-password"  # noqa: S105 - a lab PFX's password


def events(directory: pathlib.Path, host: str) -> list[dict[str, Any]]:
    path = directory / "hosts" / host / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def outage(host_events: list[dict[str, Any]], start: float, end: float, *, lockout_only: bool = False) -> float:
    """Seconds in [start, end] when an arbitrary outside client could not get HTTPS from the host.

    With ``lockout_only``, only the seconds the firewall kept it out (the gate closed or restricted).
    """
    serving, exposure = False, "open"
    down_since: float | None = None
    total = 0.0
    for event in host_events:
        if event["type"] == "service":
            serving = event["state"] == "Running" and any(x["port"] == HTTPS_PORT and x["scheme"] == "https" for x in event["listeners"])
        elif event["type"] == "firewall":
            exposure = event["exposure"].get(str(HTTPS_PORT), "open")
        else:
            continue
        ok = exposure == "open" and (serving or lockout_only)
        moment = min(max(event["ts"], start), end)
        if not ok and down_since is None:
            down_since = moment
        elif ok and down_since is not None:
            total += moment - down_since
            down_since = None
    if down_since is not None:
        total += end - down_since
    return total


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def recap_tasks(stdout: str) -> int:
    """The most tasks any host ran, from the play recap (ok + changed + failed + skipped + rescued + ignored)."""
    most = 0
    for line in stdout.splitlines():
        if " : ok=" not in line:
            continue
        counts = dict(part.split("=") for part in line.split(" : ", 1)[1].split())
        most = max(most, sum(int(counts.get(key, 0)) for key in ("ok", "changed", "failed", "skipped", "rescued", "ignored")))
    return most


def debug_playbook(directory: pathlib.Path, tasks: int) -> pathlib.Path:
    """Three plays as the renew playbook has (assess, renew in batches, summary), with ``tasks`` tasks in all.

    The renew play's hosts and ``serial`` are the renew playbook's own expressions, run with the same extra vars
    after an assessment that, like the role's, types each host's mode and strategy and groups the hosts to act on,
    so both playbooks cut the fleet into the same batches. The other tasks are debug tasks.
    """
    renew_play = yaml.safe_load(PLAYBOOK.read_text())[1]

    def debug(count: int) -> list[dict[str, Any]]:
        return [{"name": f"debug {n}", "ansible.builtin.debug": {"msg": "{{ inventory_hostname }}"}} for n in range(count)]

    typed = {"mode": "{{ xu_renew_mode }}", "strategy": "{{ xu_renew_strategy }}"}
    assess = [
        {"name": "type the variables", "ansible.builtin.set_fact": {"xu_renew_options": typed}},
        {"name": "group the hosts to act on", "ansible.builtin.group_by": {"key": "xu_renew_act"}},
    ]
    per_play = max(len(assess), tasks // 3)
    plays = [
        {"name": "assess", "hosts": "xu_servers", "gather_facts": False, "tasks": assess + debug(per_play - len(assess))},
        # The renew play's own hosts, batches and strategy.
        {"name": "renew", "hosts": renew_play["hosts"], "gather_facts": False, "serial": renew_play["serial"], "strategy": renew_play["strategy"],
         "tasks": debug(tasks - 2 * per_play)},
        {"name": "summary", "hosts": "xu_servers", "gather_facts": False, "tasks": debug(per_play)},
    ]
    path = directory / "debug.yml"
    path.write_text(json.dumps(plays))
    return path


def playbook(
    directory: pathlib.Path, path: pathlib.Path, forks: int, extra: list[str], niceness: int = 0
) -> tuple[subprocess.CompletedProcess[str], float, float]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default")
    start = time.time()
    nice = ["nice", "-n", str(niceness)] if niceness else []
    done = subprocess.run([*nice, str(BIN / "ansible-playbook"), "-i", str(directory / "inventory.yml"), "-f", str(forks), str(path), *extra],
                          capture_output=True, text=True, env=env, check=False)
    return done, start, time.time()


def lab_up(directory: pathlib.Path, args: argparse.Namespace) -> None:
    command = [str(BIN / "python"), "-m", "xulab", "up", "--dir", str(directory), "--hosts", str(args.hosts), "--scenario", "healthy",
               "--expiring-in", "10", "--restart-delay", str(args.restart_delay)]
    if args.call_overhead:
        command += ["--call-overhead", str(args.call_overhead)]
    subprocess.run(command, check=True, capture_output=True)


def run(mode: str, strategy: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="xu-renew-bench-") as tmp:
        directory = pathlib.Path(tmp)
        lab_up(directory, args)
        try:
            hosts = [h["name"] for h in json.loads((directory / "lab.json").read_text())["hosts"]]
            batches = ["-e", f"xu_renew_mode={mode}", "-e", f"xu_renew_strategy={strategy}"]
            if args.serial:
                batches += ["-e", f"xu_renew_serial={args.serial}"]
            extra = list(batches)
            if mode == "replace":
                certs = directory / "certs"
                certs.mkdir()
                for host in hosts:
                    answer = control.request(directory, "issue", host=host, password=PASSWORD)
                    (certs / f"{host}.pfx").write_bytes(base64.b64decode(answer["pfx_b64"]))
                extra += ["-e", f"xu_renew_pfx_dir={certs}", "-e", f"xu_renew_pfx_password={PASSWORD}"]
            before = {host: len(events(directory, host)) for host in hosts}
            done, start, end = playbook(directory, PLAYBOOK, args.forks, extra, args.controller_nice)
            if done.returncode != 0:
                sys.exit(f"{mode}/{strategy} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
            calls, outages, lockouts, restarts = [], [], [], []
            for host in hosts:
                new = events(directory, host)[before[host]:]
                calls.append(sum(1 for e in new if e["type"] == "remote_call"))
                restarts.append(sum(1 for e in new if e["type"] == "service" and e["state"] == "Stopped"))
                outages.append(outage(events(directory, host), start, end))
                lockouts.append(outage(events(directory, host), start, end, lockout_only=True))
            tasks = recap_tasks(done.stdout)
            debug_done, debug_start, debug_end = playbook(directory, debug_playbook(directory, tasks), args.forks, batches, args.controller_nice)
            if debug_done.returncode != 0:
                sys.exit(f"the debug-only play failed:\n{debug_done.stdout[-3000:]}")
        finally:
            subprocess.run([str(BIN / "python"), "-m", "xulab", "down", "--dir", tmp], check=False, capture_output=True)
    return {"mode": mode, "strategy": strategy, "calls": statistics.mean(calls), "calls_max": max(calls),
            "restarts": statistics.mean(restarts), "canary": outages[0], "p50": percentile(outages, 0.5), "p95": percentile(outages, 0.95),
            "max": max(outages), "lock50": percentile(lockouts, 0.5), "lock95": percentile(lockouts, 0.95),
            "wall": end - start, "tasks": tasks, "debug": debug_end - debug_start}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--forks", type=int, default=50)
    parser.add_argument("--restart-delay", type=float, default=1.0)
    parser.add_argument("--call-overhead", type=float, default=0.0, help="seconds each remote call costs (xulab up --call-overhead)")
    # The lab's hosts share this machine's cores with the controller's forks, where real servers have their own:
    # a lower priority for the controller keeps the hosts' own timings (a restart) from waiting for its load.
    parser.add_argument("--controller-nice", type=int, default=0, help="run ansible-playbook at this niceness (nice -n)")
    parser.add_argument("--modes", default="reuse_key,replace")
    parser.add_argument("--strategies", default="documented,minimal_outage")
    parser.add_argument("--serial", default="", help="xu_renew_serial for every row (default: the playbook's own batches)")
    args = parser.parse_args()

    rows = [run(mode, strategy, args) for mode in args.modes.split(",") for strategy in args.strategies.split(",")]
    batches = args.serial or "the playbook's default ([1, 3] when hosts renew with reuse_key/documented, else [1, 100%])"
    print(f"hosts {args.hosts}  forks {args.forks}  batches: {batches}  restart delay {args.restart_delay:.1f} s"
          f"  call overhead {args.call_overhead:.1f} s  controller niceness {args.controller_nice}")
    print(f"{'mode':10} {'strategy':15} {'calls/host':>10} {'restarts':>8} {'outage canary':>13} {'p50':>7} {'p95':>7} {'max':>7}"
          f" {'lockout p50':>11} {'p95':>7} {'wall':>7} {'debug-only':>10} {'ratio':>6}")
    for row in rows:
        print(f"{row['mode']:10} {row['strategy']:15} {row['calls']:10.1f} {row['restarts']:8.1f} {row['canary']:12.2f}s {row['p50']:6.2f}s"
              f" {row['p95']:6.2f}s {row['max']:6.2f}s {row['lock50']:10.2f}s {row['lock95']:6.2f}s {row['wall']:6.1f}s"
              f" {row['debug']:9.1f}s {row['wall'] / row['debug']:6.2f}")
    print("outage: seconds an arbitrary outside client could not use HTTPS; lockout: of those, the seconds the gate kept it out;"
          " canary: the first host, alone in its batch; debug-only: the same plays, batches and tasks per host with debug tasks only")


if __name__ == "__main__":
    main()
