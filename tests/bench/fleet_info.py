"""Benchmark: xu_tls_info over a large lab fleet, next to a debug-only play over the same inventory.

Prints numbers; asserts nothing. Both plays run in this one process's run, alternating, so
the machine's noise hits both alike.

    .venv/bin/python tests/bench/fleet_info.py --hosts 200 --forks 25 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent

DEBUG_PLAY = [{"name": "debug only", "hosts": "xu_servers", "gather_facts": False,
               "tasks": [{"name": "debug", "ansible.builtin.debug": {"msg": "{{ inventory_hostname }}"}}]}]
INFO_PLAY = [{"name": "xu_tls_info", "hosts": "xu_servers", "gather_facts": False,
              "tasks": [{"name": "info", "xtractuniversal.tls.xu_tls_info": {}}]}]


def play(directory: pathlib.Path, name: str, content: list[dict[str, object]], forks: int) -> float:
    path = directory / f"{name}.yml"
    path.write_text(json.dumps(content))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal")
    start = time.perf_counter()
    done = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(directory / "inventory.yml"), "-f", str(forks), str(path)],
                          capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return elapsed


def rss_mib(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--forks", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--auth", default="basic", choices=["basic", "ntlm"])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="xu-bench-") as tmp:
        directory = pathlib.Path(tmp)
        start = time.perf_counter()
        subprocess.run([str(BIN / "python"), "-m", "xulab", "up", "--dir", tmp, "--hosts", str(args.hosts),
                        "--scenario", "healthy", "--auth", args.auth], check=True, capture_output=True)
        up_seconds = time.perf_counter() - start
        try:
            pid = int((directory / "lab.pid").read_text())
            idle_rss = rss_mib(pid)
            debug_times, info_times = [], []
            for _round in range(args.rounds):
                debug_times.append(play(directory, "debug", DEBUG_PLAY, args.forks))
                info_times.append(play(directory, "info", INFO_PLAY, args.forks))
            busy_rss = rss_mib(pid)
            calls = []
            for host_dir in sorted((directory / "hosts").iterdir()):
                events = [json.loads(line) for line in (host_dir / "events.jsonl").read_text().splitlines() if line.strip()]
                calls.append(sum(1 for e in events if e["type"] == "remote_call") / args.rounds)
        finally:
            subprocess.run([str(BIN / "python"), "-m", "xulab", "down", "--dir", tmp], check=False, capture_output=True)

    debug_s, info_s = statistics.median(debug_times), statistics.median(info_times)
    print(f"hosts {args.hosts}  forks {args.forks}  auth {args.auth}  rounds {args.rounds}")
    print(f"lab up                      {up_seconds:7.1f} s")
    print(f"lab RSS idle / after plays  {idle_rss:7.1f} / {busy_rss:.1f} MiB")
    print(f"debug-only play (median)    {debug_s:7.2f} s   runs {', '.join(f'{t:.2f}' for t in debug_times)}")
    print(f"xu_tls_info play (median)   {info_s:7.2f} s   runs {', '.join(f'{t:.2f}' for t in info_times)}")
    print(f"ratio info / debug          {info_s / debug_s:7.2f}")
    print(f"remote calls per host       min {min(calls):.0f}  max {max(calls):.0f}")


if __name__ == "__main__":
    main()
