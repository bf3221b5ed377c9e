"""The controller's cost of a playbook run, per task: every task worker's own CPU, and optionally its profile.

Runs ``ansible-playbook`` in this process. Ansible forks one worker per host and task; each worker notes its task's
action and its own CPU time (user + sys from the kernel, its fork and exit included) when it ends, and the table
printed at the end gives, per action, the workers, their mean CPU and their total, beside the main process's CPU
(the strategy, the results, the callbacks). With ``--profile`` each worker runs under cProfile (CPU time, not wall
time: a worker waiting for its host costs the controller nothing) and the merged profile is printed; the profiler
roughly doubles what it measures, so the table's CPU figures come from runs without it. Prints numbers; asserts
nothing.

    .venv/bin/python tests/bench/profile_play.py -- -i lab/inventory.yml playbooks/renew.yml -e ...
    .venv/bin/python tests/bench/profile_play.py --profile --action xtractuniversal.tls.xu_renew --top 40 -- -i ...
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import json
import os
import pathlib
import pstats
import resource
import sys
import tempfile
import time
from typing import Any

from ansible.cli.playbook import PlaybookCLI
from ansible.executor.process import worker

# Workers this process started: the last ones write their notes after sending their results.
STARTED: list[int] = []


def _write(path: pathlib.Path, write: Any) -> None:
    """Written under a temporary name: the main process may read the directory as soon as the playbook ends."""
    partial = path.with_suffix(".part")
    write(str(partial))
    os.replace(partial, path)


def instrument_workers(directory: pathlib.Path, *, profile: bool) -> None:
    """Wrap WorkerProcess: each worker writes its action and CPU seconds (and its profile) into ``directory``."""
    original_run, original_start = worker.WorkerProcess.run, worker.WorkerProcess.start

    def start(self: Any) -> None:
        STARTED.append(1)
        original_start(self)

    def run(self: Any) -> None:
        profiler = cProfile.Profile(time.process_time) if profile else None
        if profiler is not None:
            profiler.enable()
        try:
            original_run(self)
        finally:
            if profiler is not None:
                profiler.disable()
                _write(directory / f"{os.getpid()}.prof", profiler.dump_stats)
            times = os.times()
            note = {"action": str(self._task.resolved_action or self._task.action), "cpu_s": times.user + times.system}
            _write(directory / f"{os.getpid()}.json", lambda name: pathlib.Path(name).write_text(json.dumps(note)))

    worker.WorkerProcess.start = start
    worker.WorkerProcess.run = run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", action="store_true", help="run each worker under cProfile and print the merged profile")
    parser.add_argument("--action", default="", help="with --profile: only the workers of this action (e.g. xtractuniversal.tls.xu_renew)")
    parser.add_argument("--main", action="store_true", help="profile the main process instead of the workers")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--sort", default="cumulative", choices=["cumulative", "tottime"])
    parser.add_argument("--keep", default="", help="leave the workers' notes and profiles in this directory")
    parser.add_argument("playbook_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    playbook_args = args.playbook_args[1:] if args.playbook_args[:1] == ["--"] else args.playbook_args

    directory = pathlib.Path(args.keep or tempfile.mkdtemp(prefix="xu-profile-"))
    directory.mkdir(parents=True, exist_ok=True)
    main_profiler = cProfile.Profile(time.process_time)
    instrument_workers(directory, profile=args.profile and not args.main)
    if args.main:
        main_profiler.enable()
    status = 0
    start = time.perf_counter()
    try:
        PlaybookCLI.cli_executor(["ansible-playbook", *playbook_args])
    except SystemExit as e:
        status = int(e.code or 0)
    wall = time.perf_counter() - start
    main_profiler.disable()
    deadline = time.monotonic() + 30
    while len(list(directory.glob("*.json"))) < len(STARTED) and time.monotonic() < deadline:
        time.sleep(0.1)

    out = sys.stderr
    own = resource.getrusage(resource.RUSAGE_SELF)
    notes = [json.loads(path.read_text()) for path in directory.glob("*.json")]
    by_action: dict[str, list[float]] = collections.defaultdict(list)
    for note in notes:
        by_action[note["action"]].append(note["cpu_s"])
    print(f"\nplaybook rc {status}, wall {wall:.1f} s; main process CPU {own.ru_utime + own.ru_stime:.2f} s;"
          f" {len(notes)} workers, CPU {sum(n['cpu_s'] for n in notes):.2f} s{' (profiled)' if args.profile else ''}", file=out)
    print(f"{'action':45} {'workers':>7} {'mean CPU':>9} {'total':>8}", file=out)
    for action, cpu in sorted(by_action.items(), key=lambda item: -sum(item[1])):
        print(f"{action:45} {len(cpu):7d} {1000 * sum(cpu) / len(cpu):6.1f} ms {sum(cpu):7.2f}s", file=out)
    if args.main:
        pstats.Stats(main_profiler, stream=out).sort_stats(args.sort).print_stats(args.top)
    elif args.profile:
        profiles = [directory / f"{path.stem}.prof" for path in directory.glob("*.json")
                    if not args.action or json.loads(path.read_text())["action"] == args.action]
        profiles = [path for path in profiles if path.exists()]
        if profiles:
            stats = pstats.Stats(*(str(path) for path in profiles), stream=out)
            stats.sort_stats(args.sort).print_stats(args.top)


if __name__ == "__main__":
    main()
