"""CPU-heavy work of a simulated host, run outside the lab's event loop while the lab serves.

Every simulated host shares the lab's one event loop, where a real host has a CPU of its own. Work that
takes a real host a noticeable time (opening a PFX validates its RSA key: a few hundred milliseconds) would,
done in the loop, stall every other host's calls and the timers of their service restarts, and so stretch
their outages by what their neighbours do. While the lab serves, such work runs in worker processes; the
host it is done for waits for it as a real host would. Without a pool (a unit test's in-process host) it
runs in place.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

# Two workers: the machines the lab runs on have few cores, which the controller needs as well.
WORKERS = 2
_pool: ProcessPoolExecutor | None = None


def start() -> None:
    """Start the workers (spawned: the lab's process runs threads and an event loop, which a fork would copy mid-flight)."""
    global _pool  # noqa: PLW0603 - one pool per lab process
    if _pool is None:
        _pool = ProcessPoolExecutor(max_workers=WORKERS, mp_context=multiprocessing.get_context("spawn"))


def stop() -> None:
    global _pool  # noqa: PLW0603 - one pool per lab process
    if _pool is not None:
        _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None


async def run(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` in a worker when the pool runs, else here; ``function`` and its values must pickle."""
    if _pool is None:
        return function(*args)
    return await asyncio.get_running_loop().run_in_executor(_pool, function, *args)
