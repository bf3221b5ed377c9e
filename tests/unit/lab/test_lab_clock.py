"""The hosts' clocks: real time plus the fleet's advance plus a host's offset; tasks run when their host's clock gets there."""

from __future__ import annotations

import pathlib
from datetime import UTC, datetime

import pytest
from lab.labkit import AgentCall, HostFactory, events, results, run

from xulab.__main__ import _clock_offsets
from xulab.errors import LabError
from xulab.fleet import FleetOptions
from xulab.timefmt import FleetClock, HostClock

# Real time stands still in these tests: only what a test advances moves a clock.
STOPPED = datetime(2026, 11, 26, 20, 0, 0, 400000, tzinfo=UTC).timestamp()
BLOCK = [{"name": "gate block", "display_name": "gate", "action": "Block", "local_ports": ["8165"]}]
CLOSED, OPEN = {"8064": "open", "8065": "open", "8165": "closed"}, {"8064": "open", "8065": "open", "8165": "open"}


def at(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def gate_ops(name: str, delay_s: float) -> list[tuple[str, dict[str, object]]]:
    return [
        ("fw_set", {"group": name, "rules": [{**BLOCK[0], "name": f"{name} block"}]}),
        ("task_register", {"name": f"{name} auto-open", "delay_s": delay_s, "fw_group_to_remove": name, "description": None}),
    ]


def test_a_skewed_host_sets_its_trigger_from_its_own_clock_and_says_its_time(host_factory: HostFactory, agent_call: AgentCall) -> None:
    fleet = FleetClock(lambda: STOPPED)

    async def scenario() -> None:
        async with host_factory("healthy", clock=HostClock(fleet, 120.0)) as ahead, host_factory("healthy", clock=HostClock(fleet, -180.0)) as behind:
            for host, offset in ((ahead, 120), (behind, -180)):
                _result, answer = await agent_call(host, [*gate_ops("gate", 60), ("task_get", {"name": "gate auto-open"})])
                assert answer is not None and answer["host_time"] == datetime.fromtimestamp(STOPPED + offset, UTC).strftime("%Y-%m-%dT%H:%M:%S.400Z")
                registered = results(answer)[1]["result"]
                # The host's now (STOPPED + offset) plus 60 s, rounded up to the whole second.
                assert at(registered["run_at_utc"]) == int(STOPPED) + offset + 61
                assert results(answer)[2]["result"]["task"]["next_run_utc"] == registered["run_at_utc"]
                assert host.exposure() == CLOSED
            # The triggers are 60.6 s away on each host's own clock.
            fleet.advance(60.5)
            assert ahead.exposure() == behind.exposure() == CLOSED
            fleet.advance(0.5)
            assert ahead.exposure() == behind.exposure() == OPEN
            for host, offset in ((ahead, 120), (behind, -180)):
                # Each ran at its own trigger, on its own clock.
                [ran] = [e for e in events(host, "task") if e["action"] == "ran"]
                assert ran["ts"] == int(STOPPED) + offset + 61

    run(scenario())


def test_an_advance_runs_the_tasks_it_passes_in_trigger_order_before_it_returns(host_factory: HostFactory, agent_call: AgentCall) -> None:
    fleet = FleetClock(lambda: STOPPED)

    async def scenario() -> None:
        async with host_factory("healthy", clock=HostClock(fleet)) as host:
            await agent_call(host, [*gate_ops("late", 300), *gate_ops("early", 30), *gate_ops("never", 3600)])
            fleet.advance(10)
            assert len(host.tasks) == 3
            fleet.advance(600)
            assert [e["name"] for e in events(host, "task") if e["action"] == "ran"] == ["early auto-open", "late auto-open"]
            assert [e["ts"] for e in events(host, "task") if e["action"] == "ran"] == [int(STOPPED) + 31, int(STOPPED) + 301]
            assert [t["name"] for t in host.tasks.state()] == ["never auto-open"]
            # The clock never goes back by an advance.
            with pytest.raises(ValueError, match="only moves forward"):
                fleet.advance(-1)

    run(scenario())


def test_setting_a_host_clock_moves_its_tasks_either_way(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy", clock=HostClock(FleetClock(lambda: STOPPED))) as host:
            await agent_call(host, gate_ops("gate", 120))
            # Set back an hour (w32tm corrects a clock that ran ahead): the task waits for its trigger.
            host.clock.set_offset(-3600)
            host.clock.fleet.advance(3000)
            assert host.exposure() == CLOSED
            # Set forward past it: it runs at once, stamped with its trigger.
            host.clock.set_offset(0)
            assert host.exposure() == OPEN
            [ran] = [e for e in events(host, "task") if e["action"] == "ran"]
            assert ran["ts"] == int(STOPPED) + 121

    run(scenario())


def test_task_register_takes_a_delay_in_seconds_up_to_a_week(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy", clock=HostClock(FleetClock(lambda: STOPPED))) as host:
            _result, answer = await agent_call(host, [("task_register", {"name": "t", "delay_s": 0, "fw_group_to_remove": "g"})])
            assert results(answer)[0]["error"]["type"] == "InvalidArgument"
            for bad in ("60", True, None, 7 * 24 * 3600 + 1):
                _result, answer = await agent_call(host, [("task_register", {"name": "t", "delay_s": bad, "fw_group_to_remove": "g"})])
                assert results(answer)[0]["error"]["type"] == "InvalidArgument", bad
            assert len(host.tasks) == 0

    run(scenario())


def test_clock_offsets_of_up() -> None:
    options = FleetOptions(pathlib.Path("/nonexistent"), 3, clock_offsets=((None, 5.0), ("xu02", 120.0), ("xu03", -180.0)))
    assert [options.clock_offset(name) for name in ("xu01", "xu02", "xu03")] == [5.0, 120.0, -180.0]


def test_clock_offset_arguments() -> None:
    assert _clock_offsets(["120", "xu02=-180", "xu03=+0.5"]) == ((None, 120.0), ("xu02", -180.0), ("xu03", 0.5))
    for bad in ("soon", "xu02=", "=5", "nan", "xu01=inf"):
        with pytest.raises(LabError, match="--clock-offset takes SECONDS or NAME=SECONDS"):
            _clock_offsets([bad])
