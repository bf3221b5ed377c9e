"""The ledger of published records (what a killed run left is removed by the next) and the bound on parallel orders."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.acme.ledger import Ledger, LedgerEntry, Publisher, ledger_name, process_start
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.acme.settings import Endpoint
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.acme.slots import SlotTimeout, order_slot, slots_dir


class MemoryDns:
    """A DNS provider in memory, recording the order of its changes."""

    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}
        self.changes: list[tuple[str, str]] = []

    def zone_for(self, name: str) -> str:
        return "example.com"

    def add_txt(self, zone: str, name: str, value: str, ttl: int) -> None:
        self.records.setdefault(name, []).append(value)
        self.changes.append(("add", name))

    def remove_txt(self, zone: str, name: str, value: str) -> None:
        if value in self.records.get(name, []):
            self.records[name].remove(value)
        self.changes.append(("remove", name))

    def txt_values(self, zone: str, name: str) -> tuple[str, ...]:
        return tuple(self.records.get(name, []))

    def authoritative_servers(self, zone: str) -> tuple[Endpoint, ...]:
        return ()


RECORD = "_acme-challenge.xu01.example.com"


def live(records: dict[str, list[str]]) -> dict[str, list[str]]:
    return {name: values for name, values in records.items() if values}


def test_the_entry_goes_in_before_the_record_and_out_after_it() -> None:
    dns = MemoryDns()
    ledger = Ledger(dns, "example.com")
    entry = ledger.publish(RECORD, "token-digest", 600, 60)
    assert dns.changes == [("add", ledger_name("example.com")), ("add", RECORD)]
    assert LedgerEntry.parse(dns.records[ledger.name][0]) == entry
    ledger.withdraw(entry)
    assert dns.changes[2:] == [("remove", RECORD), ("remove", ledger.name)]
    assert live(dns.records) == {}


def dead_pid() -> int:
    process = multiprocessing.get_context("fork").Process(target=os._exit, args=(0,))
    process.start()
    process.join()
    assert process.pid is not None
    return process.pid


def test_a_sweep_removes_what_a_gone_process_or_an_expired_hold_left_and_nothing_else() -> None:
    dns = MemoryDns()
    here = Publisher.current()
    now = [1_000_000.0]
    gone = Ledger(dns, "example.com", clock=lambda: now[0], publisher=Publisher(here.node, dead_pid(), "1"))
    gone.publish(RECORD, "left-by-a-killed-run", 600, 60)
    elsewhere = Ledger(dns, "example.com", clock=lambda: now[0], publisher=Publisher("other-node", 4242, "7"))
    elsewhere.publish("_acme-challenge.xu02.example.com", "held-elsewhere", 600, 60)
    expired = Ledger(dns, "example.com", clock=lambda: now[0] - 1000, publisher=Publisher("other-node", 4343, "7"))
    expired.publish("_acme-challenge.xu03.example.com", "held-too-long", 600, 60)
    mine = Ledger(dns, "example.com", clock=lambda: now[0], publisher=here)
    mine.publish("_acme-challenge.xu04.example.com", "mine", 600, 60)

    removed, errors = mine.sweep()
    assert errors == []
    assert sorted(entry.value for entry in removed) == ["held-too-long", "left-by-a-killed-run"]
    assert dns.records[RECORD] == [] and dns.records["_acme-challenge.xu03.example.com"] == []
    assert dns.records["_acme-challenge.xu02.example.com"] == ["held-elsewhere"]
    assert dns.records["_acme-challenge.xu04.example.com"] == ["mine"]
    assert len(dns.records[mine.name]) == 2


def test_a_killed_process_not_yet_reaped_is_gone() -> None:
    """A SIGKILLed worker whose parent was killed with it is a zombie until something reaps it; its records are stale."""
    child = os.fork()
    if child == 0:
        os._exit(0)
    try:
        deadline = time.monotonic() + 30
        while Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline, "the child never exited"
            time.sleep(0.01)
        here = Publisher.current()
        zombie = Publisher(here.node, child, process_start(child))
        assert zombie.start and zombie.is_gone(here)
        assert not here.is_gone(here)
    finally:
        os.waitpid(child, 0)


def test_foreign_text_in_the_ledger_is_left_alone() -> None:
    dns = MemoryDns()
    dns.records[ledger_name("example.com")] = ["v=spf1 -all"]
    assert Ledger(dns, "example.com").sweep() == ([], [])
    assert dns.records[ledger_name("example.com")] == ["v=spf1 -all"]


def _hold(directory: str, limit: int, log: str) -> None:
    with order_slot(directory, limit, 30) as slot:
        with open(log, "a", encoding="ascii") as out:
            out.write(f"+{slot} {time.monotonic()}\n")
        time.sleep(0.3)
        with open(log, "a", encoding="ascii") as out:
            out.write(f"-{slot} {time.monotonic()}\n")


def test_orders_across_processes_never_exceed_the_cap(tmp_path: Path) -> None:
    """Ansible's forks are processes: eight of them share two slots, and at no moment do more than two hold one."""
    directory = slots_dir("https://acme.example/dir", b"account-public-key", base=str(tmp_path))
    log = str(tmp_path / "slots.log")
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_hold, args=(directory, 2, log)) for _index in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    events = sorted((float(line.split()[1]), line[0]) for line in Path(log).read_text().splitlines())
    holding = peak = 0
    for _moment, kind in events:
        holding += 1 if kind == "+" else -1
        peak = max(peak, holding)
    assert peak == 2 and len(events) == 16


def test_a_killed_holder_frees_its_slot(tmp_path: Path) -> None:
    directory = slots_dir("https://acme.example/dir", b"key", base=str(tmp_path))
    context = multiprocessing.get_context("fork")
    holding = context.Event()
    holder = context.Process(target=_hold_forever, args=(directory, holding))
    holder.start()
    assert holding.wait(30)
    clock = [0.0]
    with (
        pytest.raises(SlotTimeout, match="xu_renew_acme_max_parallel_orders"),
        order_slot(directory, 1, 1, clock=lambda: clock[0], sleep=lambda s: clock.__setitem__(0, clock[0] + s)),
    ):
        pass
    holder.kill()
    holder.join()
    with order_slot(directory, 1, 5) as slot:
        assert slot == 0


def _hold_forever(directory: str, holding: Any) -> None:
    with order_slot(directory, 1, 5):
        holding.set()
        time.sleep(600)
