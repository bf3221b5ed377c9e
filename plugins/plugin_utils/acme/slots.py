# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""At most N orders at once for one ACME account on this controller, whatever the forks. Private to this collection.

Ansible runs each host's task in a process of its own, so a counter in memory bounds nothing. The bound is N lock
files in a folder of the user's own; an order holds one with ``flock``, which the kernel releases when the holder
ends, however it ends (a killed run cannot keep a slot). The folder is named after the CA's directory and the
account key's public half, so that two runs with the same account share the bound (the CA's limits are per
account), and runs with different accounts do not.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import XuError


class SlotTimeout(XuError):
    """No slot became free in time."""


def slots_dir(directory_url: str, account_public_key: bytes, base: str | None = None) -> str:
    digest = hashlib.sha256(directory_url.encode("utf-8") + b"\0" + account_public_key).hexdigest()[:24]
    root = os.path.join(base or tempfile.gettempdir(), f"xu-acme-slots-{os.getuid()}")
    os.makedirs(root, mode=0o700, exist_ok=True)
    if os.stat(root).st_uid != os.getuid():
        raise SlotTimeout(f"{root} belongs to another user; set TMPDIR to a folder of your own")
    path = os.path.join(root, digest)
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


@contextlib.contextmanager
def order_slot(
    directory: str,
    limit: int,
    timeout: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[int]:
    """Hold one of ``limit`` slots for the block; the slot's number. SlotTimeout after ``timeout`` seconds."""
    deadline = clock() + timeout
    while True:
        for index in range(limit):
            fd = os.open(os.path.join(directory, f"slot-{index}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                continue
            try:
                yield index
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            return
        if clock() >= deadline:
            raise SlotTimeout(f"all {limit} ACME order slots (xu_renew_acme_max_parallel_orders) stayed busy for {timeout:g} s")
        sleep(0.2)
