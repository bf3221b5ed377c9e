"""Benchmark: the renew playbook on a large lab fleet, documented next to minimal_outage.

Every host's certificate expires in 10 days, so every host is renewed. The numbers come from
the lab's event log, not from the role: remote calls per host, and each host's outage, the time
an outside client could not use HTTPS (service not running with its HTTPS listener, or the port
not open to everyone), next to the lab's restart delay. Prints numbers; asserts nothing.

    .venv/bin/python tests/bench/renew_fleet.py --hosts 50 --forks 50 --restart-delay 1
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

from xulab import control

REPO = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
PLAYBOOK = REPO / "playbooks" / "renew.yml"
HTTPS_PORT = 8165
PASSWORD = "bench-pfx-password"  # noqa: S105 - a lab PFX's password


def events(directory: pathlib.Path, host: str) -> list[dict[str, Any]]:
    path = directory / "hosts" / host / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def outage(host_events: list[dict[str, Any]], start: float, end: float) -> float:
    """Seconds in [start, end] when an arbitrary outside client could not get HTTPS from the host."""
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
        ok = serving and exposure == "open"
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


def run(mode: str, strategy: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="xu-renew-bench-") as tmp:
        directory = pathlib.Path(tmp)
        subprocess.run([str(BIN / "python"), "-m", "xulab", "up", "--dir", tmp, "--hosts", str(args.hosts), "--scenario", "healthy",
                        "--expiring-in", "10", "--restart-delay", str(args.restart_delay)], check=True, capture_output=True)
        try:
            hosts = [h["name"] for h in json.loads((directory / "lab.json").read_text())["hosts"]]
            extra = ["-e", f"xu_renew_mode={mode}", "-e", f"xu_renew_strategy={strategy}"]
            if mode == "replace":
                certs = directory / "certs"
                certs.mkdir()
                for host in hosts:
                    answer = control.request(directory, "issue", host=host, password=PASSWORD)
                    (certs / f"{host}.pfx").write_bytes(base64.b64decode(answer["pfx_b64"]))
                extra += ["-e", f"xu_renew_pfx_path={certs}/{{{{ inventory_hostname }}}}.pfx", "-e", f"xu_renew_pfx_password={PASSWORD}"]
            before = {host: len(events(directory, host)) for host in hosts}
            env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal")
            start = time.time()
            done = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(directory / "inventory.yml"), "-f", str(args.forks),
                                   str(PLAYBOOK), *extra], capture_output=True, text=True, env=env, check=False)
            end = time.time()
            if done.returncode != 0:
                sys.exit(f"{mode}/{strategy} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
            calls, outages, restarts = [], [], []
            for host in hosts:
                new = events(directory, host)[before[host]:]
                calls.append(sum(1 for e in new if e["type"] == "remote_call"))
                restarts.append(sum(1 for e in new if e["type"] == "service" and e["state"] == "Stopped"))
                outages.append(outage(events(directory, host), start, end))
        finally:
            subprocess.run([str(BIN / "python"), "-m", "xulab", "down", "--dir", tmp], check=False, capture_output=True)
    return {"mode": mode, "strategy": strategy, "calls": statistics.mean(calls), "calls_max": max(calls),
            "restarts": statistics.mean(restarts), "p50": percentile(outages, 0.5), "p95": percentile(outages, 0.95),
            "min": min(outages), "max": max(outages), "wall": end - start}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--forks", type=int, default=50)
    parser.add_argument("--restart-delay", type=float, default=1.0)
    parser.add_argument("--modes", default="reuse_key,replace")
    args = parser.parse_args()

    rows = [run(mode, strategy, args) for mode in args.modes.split(",") for strategy in ("documented", "minimal_outage")]
    print(f"hosts {args.hosts}  forks {args.forks}  batches: canary of 1, then the rest  lab restart delay {args.restart_delay:.1f} s")
    print(f"{'mode':10} {'strategy':15} {'calls/host':>10} {'restarts':>8} {'outage min':>11} {'p50':>7} {'p95':>7} {'max':>7} {'wall time':>10}")
    for row in rows:
        print(f"{row['mode']:10} {row['strategy']:15} {row['calls']:10.1f} {row['restarts']:8.1f} {row['min']:10.2f}s {row['p50']:6.2f}s"
              f" {row['p95']:6.2f}s {row['max']:6.2f}s {row['wall']:9.1f}s")
    print("outage: the seconds an arbitrary outside client could not use HTTPS, from the lab's event log; min is the canary, alone in its batch")


if __name__ == "__main__":
    main()
