"""Fixtures for the lab's own tests: a lab CA, loopback addresses per test process, hosts in-process."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import pathlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from lab.labkit import AgentCall, HostFactory, Ops, bootstrap_command, payload

from xulab.ca import CertificateAuthority
from xulab.enterprise_ca import DEFAULT_TEMPLATES, EnterpriseCa
from xulab.fleet import build_host
from xulab.host import Host, HostIdentity, HostLookup
from xulab.scenarios import provision
from xulab.shell import CommandShell
from xulab.timefmt import HostClock
from xulab.wsman import CommandResult


def _third_octet() -> int:
    """A /24 of 127.0.x.x per test process, clear of the labs `up` allocates (127.0.1-199.x)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return 200 + (int(worker[2:]) % 50 if worker.startswith("gw") else 50)


_last_octets = itertools.cycle(range(1, 255))


@pytest.fixture
def next_address() -> Callable[[], str]:
    """Hands out host addresses; consecutive tests get different ones."""
    third = _third_octet()
    return lambda: f"127.0.{third}.{next(_last_octets)}"


@pytest.fixture(scope="session")
def lab_ca() -> CertificateAuthority:
    return CertificateAuthority.create(pool_size=6)


@pytest.fixture
def host_factory(tmp_path: pathlib.Path, lab_ca: CertificateAuthority, next_address: Callable[[], str]) -> HostFactory:
    """`async with host_factory("healthy") as host:` a provisioned, running host, closed afterwards."""
    counter = itertools.count(1)

    @contextlib.asynccontextmanager
    async def factory(
        profile: str = "healthy",
        *,
        restart_delay: float = 0.05,
        expiring_in: float = 365,
        lookup: HostLookup | None = None,
        windows_version: str = "2022",
        templates: tuple[str, ...] = DEFAULT_TEMPLATES,
        pending_templates: tuple[str, ...] = (),
        clock: HostClock | None = None,
    ) -> AsyncIterator[Host]:
        index = next(counter)
        identity = HostIdentity(index, f"xu{index:02d}", next_address(), "xulab.test")
        enterprise_ca = EnterpriseCa.from_specs(templates, pending_templates)
        host = build_host(
            identity, tmp_path / identity.name, lab_ca, restart_delay, lookup, windows_version=windows_version, enterprise_ca=enterprise_ca,
            clock=clock,
        )
        await provision(host, profile, expiring_in)
        try:
            yield host
        finally:
            host.shut_down()

    return factory


@pytest.fixture
def agent_call() -> AgentCall:
    """Send ops to a host through its command handler, as WinRM hands a command over."""

    async def call(
        host: Host, ops: Ops, *, stop_on_error: bool = True, absent_errors: bool = True
    ) -> tuple[CommandResult, dict[str, Any] | None]:
        result = await CommandShell(host).run_command(
            bootstrap_command(), [], payload(ops, stop_on_error=stop_on_error, absent_errors=absent_errors), ("127.0.0.1", 50000), "XULAB\\xuadmin"
        )
        answer = json.loads(result.stdout) if result.stdout else None
        return result, answer

    return call
