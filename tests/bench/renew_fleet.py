"""Benchmark: the renew playbook on a lab fleet, every mode and strategy, next to a debug-only play.

Every host's certificate expires in 10 days, so every host is renewed. The numbers come from
the lab's event log, not from the role: remote calls per host, restarts, each host's outage
(the time an outside client could not use HTTPS: service not running with its HTTPS listener,
or the port not open to everyone) and lockout (the time the gate kept outside clients from the
HTTPS port, closed or restricted). With ``--call-overhead`` every remote call costs what a real
Windows server makes it cost (WinRM shell and powershell.exe start-up), so calls show up in the
outage. Each row also runs a debug-only playbook with the same plays, batches and number of
tasks per host over the same inventory, in the same run, so the ratio shows what the role costs
beyond Ansible's own work. Each run's controller CPU (user + sys of ``ansible-playbook`` and every
worker it forked) is divided by the hosts it renewed; the lab's CPU is counted over the same span,
and the machine's load average is printed with each row: the machine may be shared.

With ``--checkout DIR`` the renew playbook, the collection, ``ansible.cfg``, the Python and the lab
are another checkout's (a ``git worktree`` of an older commit, with its own ``make venv``), so an old
role and this one are measured in one session with the same arguments. Prints numbers; asserts nothing.

    .venv/bin/python tests/bench/renew_fleet.py --hosts 10 --call-overhead 1 --restart-delay 1
    .venv/bin/python tests/bench/renew_fleet.py --hosts 1000 --forks 100 --call-overhead 2 --restart-delay 1 \\
        --modes replace --strategies minimal_outage
    git worktree add --detach ../xu-old 3dcacf9 && make -C ../xu-old venv
    .venv/bin/python tests/bench/renew_fleet.py --checkout ../xu-old --hosts 50 --forks 100 --call-overhead 2 ...
"""

from __future__ import annotations

import argparse
import base64
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
from typing import Any

import yaml
from benchkit import HERE, Checkout, PlaybookRun, lab_pid, load_average, process_tree_cpu, rss_mib, run_playbook

from xulab import control

PLAYBOOK = pathlib.Path("playbooks") / "renew.yml"
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


def recap(stdout: str) -> dict[str, dict[str, int]]:
    """Each host's counts from the play recap (ok, changed, unreachable, failed, skipped, rescued, ignored)."""
    hosts = {}
    for line in stdout.splitlines():
        if " : ok=" in line:
            host, counts = line.split(" : ", 1)
            hosts[host.strip()] = {key: int(value) for key, value in (part.split("=") for part in counts.split())}
    return hosts


def tasks_run(counts: dict[str, int]) -> int:
    return sum(counts.get(key, 0) for key in ("ok", "changed", "failed", "skipped", "rescued", "ignored"))


def debug_playbook(directory: pathlib.Path, per_host: int, run_once: int, renew_playbook: pathlib.Path) -> pathlib.Path:
    """Three plays as the renew playbook has (assess, renew in batches, summary): ``per_host`` tasks for every host,
    as the renew run's typical host ran, and ``run_once`` tasks more, run once, as its first host ran beyond those.

    The renew play's hosts and ``serial`` are the renew playbook's own expressions, run with the same extra vars
    after an assessment that, like the role's, types each host's mode and strategy and groups the hosts to act on,
    so both playbooks cut the fleet into the same batches. The other tasks are debug tasks.
    """
    renew_play = yaml.safe_load(renew_playbook.read_text())[1]

    def debug(count: int, **keywords: Any) -> list[dict[str, Any]]:
        return [{"name": f"debug {n}", "ansible.builtin.debug": {"msg": "{{ inventory_hostname }}"}, **keywords} for n in range(count)]

    typed = {"mode": "{{ xu_renew_mode }}", "strategy": "{{ xu_renew_strategy }}"}
    assess = [
        {"name": "type the variables", "ansible.builtin.set_fact": {"xu_renew_options": typed}},
        {"name": "group the hosts to act on", "ansible.builtin.group_by": {"key": "xu_renew_act"}},
    ]
    per_play = max(len(assess), per_host // 3)
    plays = [
        {"name": "assess", "hosts": "xu_servers", "gather_facts": False, "tasks": assess + debug(per_play - len(assess))},
        # The renew play's own hosts, batches and strategy.
        {"name": "renew", "hosts": renew_play["hosts"], "gather_facts": False, "serial": renew_play["serial"], "strategy": renew_play["strategy"],
         "tasks": debug(max(1, per_host - 2 * per_play))},
        {"name": "summary", "hosts": "xu_servers", "gather_facts": False, "tasks": debug(per_play) + debug(run_once, run_once=True)},
    ]
    path = directory / "debug.yml"
    path.write_text(json.dumps(plays))
    return path


def renewed_hosts(hosts: dict[str, dict[str, int]]) -> int:
    """Hosts the play recap shows changed, and neither failed nor unreachable."""
    return sum(1 for counts in hosts.values() if counts.get("changed", 0) > 0 and not counts.get("failed", 0) and not counts.get("unreachable", 0))


def playbook(checkout: Checkout, directory: pathlib.Path, path: pathlib.Path, forks: int, extra: list[str], *,
             niceness: int = 0) -> tuple[PlaybookRun, float]:
    """The playbook's run, and the lab's CPU seconds over it."""
    nice = ["nice", "-n", str(niceness)] if niceness else []
    lab = lab_pid(directory)
    lab_before = process_tree_cpu(lab)
    done = run_playbook([*nice, str(checkout.bin / "ansible-playbook"), "-i", str(directory / "inventory.yml"), "-f", str(forks), str(path),
                         *extra], checkout.env())
    return done, process_tree_cpu(lab) - lab_before


def lab_up(checkout: Checkout, directory: pathlib.Path, args: argparse.Namespace) -> None:
    command = [str(checkout.bin / "python"), "-m", "xulab", "up", "--dir", str(directory), "--hosts", str(args.hosts), "--scenario", "healthy",
               "--expiring-in", "10", "--restart-delay", str(args.restart_delay), "--auth", args.auth]
    if args.call_overhead:
        command += ["--call-overhead", str(args.call_overhead)]
    subprocess.run(command, check=True, capture_output=True)


def run(checkout: Checkout, mode: str, strategy: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="xu-renew-bench-") as tmp:
        directory = pathlib.Path(tmp)
        lab_up(checkout, directory, args)
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
            load_before = load_average()
            done, lab_cpu = playbook(checkout, directory, checkout.root / PLAYBOOK, args.forks, extra, niceness=args.controller_nice)
            load_after = load_average()
            lab_rss = rss_mib(lab_pid(directory))
            if args.keep_output:
                pathlib.Path(args.keep_output).write_text(done.stdout)
            if done.returncode != 0:
                sys.exit(f"{mode}/{strategy} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
            calls, outages, lockouts, restarts = [], [], [], []
            for host in hosts:
                log = events(directory, host)
                new = log[before[host]:]
                calls.append(sum(1 for e in new if e["type"] == "remote_call"))
                restarts.append(sum(1 for e in new if e["type"] == "service" and e["state"] == "Stopped"))
                outages.append(outage(log, done.start, done.end))
                lockouts.append(outage(log, done.start, done.end, lockout_only=True))
            hosts_recap = recap(done.stdout)
            per_host = statistics.mode(tasks_run(counts) for counts in hosts_recap.values())
            run_once = max(tasks_run(counts) for counts in hosts_recap.values()) - per_host
            debug, debug_lab_cpu = playbook(checkout, directory, debug_playbook(directory, per_host, run_once, checkout.root / PLAYBOOK), args.forks,
                                            batches, niceness=args.controller_nice)
            if debug.returncode != 0:
                sys.exit(f"the debug-only play failed:\n{debug.stdout[-3000:]}")
        finally:
            subprocess.run([str(checkout.bin / "python"), "-m", "xulab", "down", "--dir", tmp], check=False, capture_output=True)
    return {"mode": mode, "strategy": strategy, "calls": statistics.mean(calls), "calls_max": max(calls),
            "restarts": statistics.mean(restarts), "canary": outages[0], "p50": percentile(outages, 0.5), "p95": percentile(outages, 0.95),
            "max": max(outages), "lock50": percentile(lockouts, 0.5), "lock95": percentile(lockouts, 0.95),
            "wall": done.wall_s, "tasks": per_host, "run_once": run_once, "debug": debug.wall_s, "renewed": renewed_hosts(hosts_recap), "cpu": done.cpu_s,
            "debug_cpu": debug.cpu_s, "lab_cpu": lab_cpu, "debug_lab_cpu": debug_lab_cpu, "lab_rss": lab_rss,
            "load": f"{load_before} -> {load_after}"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--forks", type=int, default=50)
    parser.add_argument("--restart-delay", type=float, default=1.0)
    parser.add_argument("--call-overhead", type=float, default=0.0, help="seconds each remote call costs (xulab up --call-overhead)")
    # Named, not left to the lab's default: an older checkout's lab defaults to Basic, and NTLM's message encryption
    # is controller CPU on every call, so a before and after compare only over the same authentication.
    parser.add_argument("--auth", default="ntlm", choices=["basic", "ntlm"], help="the lab's WinRM authentication (xulab up --auth)")
    # The lab's hosts share this machine's cores with the controller's forks, where real servers have their own:
    # a lower priority for the controller keeps the hosts' own timings (a restart) from waiting for its load.
    parser.add_argument("--controller-nice", type=int, default=0, help="run ansible-playbook at this niceness (nice -n)")
    parser.add_argument("--modes", default="reuse_key,replace")
    parser.add_argument("--strategies", default="documented,minimal_outage")
    parser.add_argument("--serial", default="", help="xu_renew_serial for every row (default: the playbook's own batches)")
    parser.add_argument("--checkout", type=pathlib.Path, default=HERE,
                        help="the checkout whose playbook, collection, Python (.venv) and lab run (default: this one)")
    parser.add_argument("--keep-output", default="", help="write the last renew run's output to this file")
    args = parser.parse_args()
    checkout = Checkout(args.checkout.resolve())

    rows = [run(checkout, mode, strategy, args) for mode in args.modes.split(",") for strategy in args.strategies.split(",")]
    batches = args.serial or "the playbook's default"
    print(f"checkout {checkout.describe()}")
    print(f"hosts {args.hosts}  forks {args.forks}  auth {args.auth}  batches: {batches}  restart delay {args.restart_delay:.1f} s"
          f"  call overhead {args.call_overhead:.1f} s  controller niceness {args.controller_nice}")
    print(f"{'mode':10} {'strategy':15} {'calls/host':>10} {'restarts':>8} {'outage canary':>13} {'p50':>7} {'p95':>7} {'max':>7}"
          f" {'lockout p50':>11} {'p95':>7} {'wall':>7} {'debug-only':>10} {'ratio':>6} {'tasks':>5} {'run once':>8}")
    for row in rows:
        print(f"{row['mode']:10} {row['strategy']:15} {row['calls']:10.1f} {row['restarts']:8.1f} {row['canary']:12.2f}s {row['p50']:6.2f}s"
              f" {row['p95']:6.2f}s {row['max']:6.2f}s {row['lock50']:10.2f}s {row['lock95']:6.2f}s {row['wall']:6.1f}s"
              f" {row['debug']:9.1f}s {row['wall'] / row['debug']:6.2f} {row['tasks']:5d} {row['run_once']:8d}")
    print(f"{'mode':10} {'strategy':15} {'renewed':>7} {'controller CPU':>14} {'per renewed host':>16} {'debug-only CPU':>14}"
          f" {'CPU ratio':>9} {'lab CPU':>8} {'debug-only':>10} {'lab RSS':>8}  load average before -> after")
    for row in rows:
        per_host = row["cpu"] / row["renewed"] if row["renewed"] else float("nan")
        print(f"{row['mode']:10} {row['strategy']:15} {row['renewed']:7d} {row['cpu']:13.1f}s {per_host:15.3f}s {row['debug_cpu']:13.1f}s"
              f" {row['cpu'] / row['debug_cpu']:9.2f} {row['lab_cpu']:7.1f}s {row['debug_lab_cpu']:9.1f}s {row['lab_rss']:5.0f} MiB  {row['load']}")
    print("outage: seconds an arbitrary outside client could not use HTTPS; lockout: of those, the seconds the gate kept it out;"
          " canary: the first host, alone in its batch; debug-only: the same plays, batches and tasks per host with debug tasks only;"
          " tasks: the tasks a host ran (the most common count in the recap), run once: the tasks the first host ran beyond those;"
          " controller CPU: user + sys of ansible-playbook and its workers; lab CPU: the lab's"
          " processes over the same run; renewed: hosts the recap shows changed and not failed")


if __name__ == "__main__":
    main()
