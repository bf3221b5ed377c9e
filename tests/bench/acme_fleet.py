"""Benchmark: central ACME issuance for a lab fleet from pebble, DNS-01 through BIND: seconds per host in ACME.

Prints numbers; asserts nothing. Starts a lab of --hosts whose certificates are due, pebble and BIND beside it, runs
the renew playbook once in acme mode (each host's certificate ordered in its order step, then installed), and prints
each host's ACME phases from order to certificate, the run's wall time and the fleet summary.

    .venv/bin/python tests/bench/acme_fleet.py --hosts 5 --forks 5
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "tests" / "integration"), str(REPO / "tests" / "services")]

from acmerun import acme_report, start  # noqa: E402 - after the path the helpers are found on
from labtools import start_lab, stop_lab  # noqa: E402

PHASES = ("queued", "publish", "propagation", "validation", "finalize", "order_to_certificate")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=5)
    parser.add_argument("--max-parallel-orders", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="acme-bench-") as folder:
        work = pathlib.Path(folder)
        lab = start_lab(work / "lab", "--hosts", str(args.hosts), "--scenario", "healthy", "--expiring-in", "5", "--restart-delay", "0.5")
        acme = start(lab, work)
        try:
            began = time.perf_counter()
            run = acme.run(work, xu_renew_acme_max_parallel_orders=args.max_parallel_orders)
            wall = time.perf_counter() - began
        finally:
            acme.services.stop()
            stop_lab(work / "lab")
    print(f"{args.hosts} hosts, forks 10 (acmerun's), at most {args.max_parallel_orders} orders at once: rc {run.rc}, playbook wall time {wall:.1f} s")
    print("HOST  " + "  ".join(f"{phase:>20}" for phase in PHASES))
    totals = []
    for host in sorted({entry["host"] for entry in run.results}):
        seconds = (acme_report(run, host).get("acme") or {}).get("seconds", {})
        totals.append(seconds.get("order_to_certificate", 0.0))
        print(f"{host:<5} " + "  ".join(f"{seconds.get(phase, 0.0):>20.3f}" for phase in PHASES))
    if totals:
        print(f"order to certificate per host: mean {statistics.mean(totals):.2f} s, max {max(totals):.2f} s")
    summary = [entry for entry in run.results if entry["task"] == "Print the fleet summary"]
    if summary:
        print("\n".join(summary[-1]["result"]["msg"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
