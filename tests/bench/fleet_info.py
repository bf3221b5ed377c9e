"""Benchmark: xu_tls_info over a large lab fleet, next to a debug-only play over the same inventory.

Prints numbers; asserts nothing. Both plays run in this one process's run, alternating, so the machine's noise hits
both alike. Besides each play's wall time: its controller CPU (ansible-playbook and every worker it forked) and the
lab's CPU over it, per host, and the machine's load average (the machine may be shared). With ``--checkout DIR``
the collection, ``ansible.cfg``, the Python and the lab are another checkout's (a ``git worktree`` of an older
commit, with its own ``make venv``), for a before and after in one session.

    .venv/bin/python tests/bench/fleet_info.py --hosts 200 --forks 25 --rounds 2
    .venv/bin/python tests/bench/fleet_info.py --hosts 200 --forks 25 --rounds 2 --auth ntlm --checkout ../xu-old
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from benchkit import HERE, Checkout, lab_pid, load_average, process_tree_cpu, rss_mib, run_playbook

DEBUG_PLAY = [{"name": "debug only", "hosts": "xu_servers", "gather_facts": False,
               "tasks": [{"name": "debug", "ansible.builtin.debug": {"msg": "{{ inventory_hostname }}"}}]}]
INFO_PLAY = [{"name": "xu_tls_info", "hosts": "xu_servers", "gather_facts": False,
              "tasks": [{"name": "info", "xtractuniversal.tls.xu_tls_info": {}}]}]


@dataclass(frozen=True)
class Play:
    wall_s: float
    cpu_s: float
    lab_cpu_s: float


def play(checkout: Checkout, directory: pathlib.Path, name: str, content: list[dict[str, object]], forks: int) -> Play:
    path = directory / f"{name}.yml"
    path.write_text(json.dumps(content))
    lab_before = process_tree_cpu(lab_pid(directory))
    done = run_playbook([str(checkout.bin / "ansible-playbook"), "-i", str(directory / "inventory.yml"), "-f", str(forks), str(path)],
                        checkout.env("ansible.builtin.minimal"))
    if done.returncode != 0:
        sys.exit(f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return Play(done.wall_s, done.cpu_s, process_tree_cpu(lab_pid(directory)) - lab_before)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--forks", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--auth", default="basic", choices=["basic", "ntlm"])
    parser.add_argument("--checkout", type=pathlib.Path, default=HERE,
                        help="the checkout whose collection, Python (.venv) and lab run (default: this one)")
    args = parser.parse_args()
    checkout = Checkout(args.checkout.resolve())

    with tempfile.TemporaryDirectory(prefix="xu-bench-") as tmp:
        directory = pathlib.Path(tmp)
        start = time.perf_counter()
        subprocess.run([str(checkout.bin / "python"), "-m", "xulab", "up", "--dir", tmp, "--hosts", str(args.hosts),
                        "--scenario", "healthy", "--auth", args.auth], check=True, capture_output=True)
        up_seconds = time.perf_counter() - start
        try:
            pid = lab_pid(directory)
            idle_rss = rss_mib(pid)
            load_before = load_average()
            debug_plays, info_plays = [], []
            for _round in range(args.rounds):
                debug_plays.append(play(checkout, directory, "debug", DEBUG_PLAY, args.forks))
                info_plays.append(play(checkout, directory, "info", INFO_PLAY, args.forks))
            load_after = load_average()
            busy_rss = rss_mib(pid)
            calls = []
            for host_dir in sorted((directory / "hosts").iterdir()):
                events = [json.loads(line) for line in (host_dir / "events.jsonl").read_text().splitlines() if line.strip()]
                calls.append(sum(1 for e in events if e["type"] == "remote_call") / args.rounds)
        finally:
            subprocess.run([str(checkout.bin / "python"), "-m", "xulab", "down", "--dir", tmp], check=False, capture_output=True)

    def median(plays: list[Play], field: str) -> float:
        return float(statistics.median(getattr(p, field) for p in plays))

    debug_s, info_s = median(debug_plays, "wall_s"), median(info_plays, "wall_s")
    print(f"checkout {checkout.describe()}")
    print(f"hosts {args.hosts}  forks {args.forks}  auth {args.auth}  rounds {args.rounds}  load average {load_before} -> {load_after}")
    print(f"lab up                      {up_seconds:7.1f} s")
    print(f"lab RSS idle / after plays  {idle_rss:7.1f} / {busy_rss:.1f} MiB")
    for name, plays in (("debug-only play", debug_plays), ("xu_tls_info play", info_plays)):
        print(f"{name + ' (median)':27} {median(plays, 'wall_s'):7.2f} s   runs {', '.join(f'{p.wall_s:.2f}' for p in plays)};"
              f"  controller CPU {1000 * median(plays, 'cpu_s') / args.hosts:5.1f} ms/host,"
              f" lab CPU {1000 * median(plays, 'lab_cpu_s') / args.hosts:5.1f} ms/host")
    print(f"ratio info / debug          {info_s / debug_s:7.2f}   (controller CPU {median(info_plays, 'cpu_s') / median(debug_plays, 'cpu_s'):.2f})")
    print(f"remote calls per host       min {min(calls):.0f}  max {max(calls):.0f}")


if __name__ == "__main__":
    main()
