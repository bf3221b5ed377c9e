"""`xulab reset`: a lab used every way a test uses one is, after the reset, the lab `up` handed out.

The integration tests share one lab per file and reset it between tests, so a reset lab must be
indistinguishable from a fresh one: whatever a test did to a host (through WinRM, the control
socket's faults and clock, or by writing into its files) and whatever it left running.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import winrm
from lab.labkit import HostFactory, bootstrap_command, events, payload, run

from xulab import __main__ as xulab_cli
from xulab import control
from xulab.client import Lab
from xulab.errors import LabError
from xulab.shell import CommandShell

TLS_JSON = "C:\\Program Files\\XtractUniversal\\config\\servers\\tls.json"
BLOCK = {"name": "gate block", "display_name": "gate", "action": "Block", "local_ports": ["8165"]}
# Values that differ from one provisioning to the next: thumbprints and serials, key ids and file hashes, times.
UPPER_HEX_40 = re.compile(r"\b[0-9A-F]{40}\b")
SERIAL = re.compile(r"^[0-9A-F]+$")
LOWER_HEX_64 = re.compile(r"\b[0-9a-f]{64}\b")
ISO_TIME = re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z")


def agent(lab: Lab, host: str, ops: list[tuple[str, dict[str, Any]]], timeout_s: int = 60) -> dict[str, Any]:
    """One real WinRM call (NTLM, encrypted) running the agent's bootstrap with ``ops``; the agent's answer."""
    info = lab.info
    session = winrm.Session(
        f"http://{lab.address(host)}:5985/wsman", auth=(info["user"], info["password"]), transport="ntlm",
        read_timeout_sec=timeout_s + 10, operation_timeout_sec=timeout_s,
    )
    shell = session.protocol.open_shell()
    command = session.protocol.run_command(shell, bootstrap_command())
    session.protocol.send_command_input(shell, command, payload(ops, stop_on_error=False), end=True)
    stdout, stderr, rc = session.protocol.get_command_output(shell, command)
    session.protocol.close_shell(shell)
    assert rc == 0, stderr
    answer: dict[str, Any] = json.loads(stdout)
    return answer


def statuses(answer: dict[str, Any]) -> list[str]:
    return [result["status"] for result in answer["results"]]


def normalised(value: object) -> object:
    """``value`` with each random identity replaced by its order of first appearance, and every time by <time>."""
    names: dict[str, str] = {}

    def name(match: re.Match[str]) -> str:
        return names.setdefault(match.group(0), f"<id{len(names)}>")

    def walk(item: object, key: str = "") -> object:
        if isinstance(item, dict):
            return {k: walk(v, k) for k, v in sorted(item.items())}
        if isinstance(item, list):
            return [walk(v) for v in item]
        if isinstance(item, str) and key == "key_id":
            # The lab hands out keys from a pool: which hosts happen to share one is chance, not state.
            return "<key_id>"
        if isinstance(item, str):
            # A serial number is random and its leading zeros are dropped: any length.
            text = SERIAL.sub(name, item) if key == "serial" else item
            return ISO_TIME.sub("<time>", LOWER_HEX_64.sub(name, UPPER_HEX_40.sub(name, text)))
        return item

    return walk(value)


def snapshot(lab: Lab) -> object:
    """Everything a test can observe of the lab: each host's state, every file of its directory (its C: drive, event
    log and transcript) by content, the fleet's clocks, and the files `up` writes for the controller."""
    hosts: dict[str, object] = {}
    for name in lab.hosts():
        state = lab.state(name)
        del state["files"]  # hashes of the files, compared below by their content
        root = lab.dir / "hosts" / name
        files: dict[str, object] = {}
        for path in sorted(root.rglob("*")):
            relative = str(path.relative_to(root))
            if path.is_dir():
                files[relative] = "<dir>"
            elif path.name == "events.jsonl":
                files[relative] = [{k: v for k, v in event.items() if k != "ts"} for event in lab.events(name)]
            else:
                files[relative] = path.read_bytes().decode("latin-1")
        hosts[name] = {"state": state, "files": files}
    clocks = lab.clock()
    return normalised({
        "hosts": hosts,
        "advanced_s": clocks["advanced_s"],
        "offsets": {name: clock["offset_s"] for name, clock in clocks["hosts"].items()},
        "lab_files": {name: (lab.dir / name).read_text() for name in ("lab.json", "inventory.yml", "ca.pem")},
    })


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    started = Lab.up(tmp_path_factory.mktemp("reset") / "lab", hosts=3, scenario="mixed", restart_delay=0.1, clock_offsets={"xu02": 120})
    yield started
    started.down()


def hang_in_a_restart(lab: Lab, host: str, outcome: list[BaseException | dict[str, Any]]) -> threading.Thread:
    """A call that waits (up to 10 minutes) for a stop that hangs: still running when the lab is reset."""
    lab.fault(host, stop_hangs=1)

    def call() -> None:
        try:
            outcome.append(agent(lab, host, [("service_restart", {"name": "XtractUniversal Service", "timeout_s": 600})], timeout_s=700))
        except Exception as exc:  # whatever ends the call is its outcome
            outcome.append(exc)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread


def test_a_reset_lab_is_the_lab_up_handed_out(lab: Lab, tmp_path: pathlib.Path) -> None:
    fresh = snapshot(lab)
    # journal_dir must come before anything makes the collection's folder.
    lab.fault("xu02", journal_dir="user")
    # Through WinRM: a gate with its auto-open task, settings, a journal, an event log entry (registering the source).
    answer = agent(lab, "xu01", [
        ("fw_set", {"group": "gate", "rules": [BLOCK]}),
        ("task_register", {"name": "gate auto-open", "delay_s": 600, "fw_group_to_remove": "gate", "description": None}),
        ("file_write", {"path": TLS_JSON, "content": "{}", "backup_path": TLS_JSON + ".1.bak"}),
        ("journal_write", {"name": "renew", "content": '{"run": "it"}'}),
        ("event_write", {"event_id": 1, "entry_type": "Information", "message": "before the reset"}),
    ])
    assert statuses(answer) == ["ok"] * 5, answer
    # Certificates that arrive without the collection.
    lab.winacme("xu01")
    lab.plant("xu01", "better")
    lab.autoenroll("xu02")
    # Every fault and host setting.
    lab.fault("xu01", fail_primitive="cert_list", drop_connection="discover", restart_fails=2, certreq_fails=1, restart_delay=7,
              service_account="networkservice", dependent_service="XU Dependent", dependent_stop_hangs="XU Dependent",
              firewall_profile_off="Public", firewall_local_rules="ignored", firewall_service="stopped", strict_host_name="true",
              kill_certreq=1, certreq_leftover="stale", enterprise_cas=2, certreq_language="de")
    # The clocks, a file written into the host's drive behind the lab's back.
    lab.advance_clock(50)
    lab.set_clock_offset("xu01", -30)
    (lab.dir / "hosts" / "xu03" / "fs" / "C" / "stray.txt").write_text("left by a test")
    # The inventory, as a test adds a host that does not answer.
    with lab.inventory.open("a") as inventory:
        inventory.write("# xu99 added by a test\n")
    outcome: list[BaseException | dict[str, Any]] = []
    hanging = hang_in_a_restart(lab, "xu03", outcome)
    while lab.state("xu03")["service"]["state"] != "StopPending":
        hanging.join(0.05)
    assert snapshot(lab) != fresh

    answer_of_reset = lab.reset()
    assert answer_of_reset["hosts"] == 3
    # The call that was running ended with the machine, without an answer.
    hanging.join(60)
    assert not hanging.is_alive() and len(outcome) == 1 and isinstance(outcome[0], Exception), outcome
    assert snapshot(lab) == fresh
    # Nothing of the old hosts is left to happen: the auto-open task is gone with its host.
    lab.advance_clock(700)
    assert [e["type"] for e in lab.events("xu01")] == ["cert_add", "service"]


def test_what_a_state_does_not_show_is_reset_too(lab: Lab) -> None:
    """The event log's registered sources, the forest's CAs, certreq's language: what a host learns only by use."""
    lab.fault("xu01", enterprise_cas=2, certreq_language="de")
    first = agent(lab, "xu01", [("event_write", {"event_id": 1, "entry_type": "Information", "message": "one"}), ("ca_list", {})])
    assert first["results"][0]["result"]["registered"] is True and len(first["results"][1]["result"]["cas"]) == 2
    lab.reset()
    again = agent(lab, "xu01", [("event_write", {"event_id": 1, "entry_type": "Information", "message": "one"}), ("ca_list", {})])
    assert again["results"][0]["result"]["registered"] is True and len(again["results"][1]["result"]["cas"]) == 1


def test_a_reset_host_still_serves_and_answers_over_winrm(lab: Lab) -> None:
    lab.reset()
    state = lab.state("xu01")
    served = {listener["port"]: listener["thumbprint"] for listener in state["service"]["listeners"]}
    bound = json.loads((lab.dir / "hosts" / "xu01" / "fs" / "C" / "Program Files" / "XtractUniversal" / "config" / "servers" / "tls.json").read_bytes())
    assert served == {8064: bound["WebServer"]["Certificate"]["Thumbprint"], 8165: bound["WebServer"]["Certificate"]["Thumbprint"]}
    answer = agent(lab, "xu01", [("cert_list", {"store": "My"})])
    assert statuses(answer) == ["ok"] and lab.events("xu01", "remote_call")[-1]["ops"] == ["cert_list"]


def test_a_start_in_progress_never_finishes_on_a_host_that_was_shut_down(host_factory: HostFactory) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            await host.service.stop()
            await host.service.start(delay=0.2)
            host.shut_down()
            # The loop's timers run in order: a start that was still due would have run before this sleep ends.
            await asyncio.sleep(0.3)
            assert host.service.listeners == [] and events(host, "service")[-1]["state"] == "Stopped"

    run(scenario())


def test_ending_the_running_commands_cancels_them(host_factory: HostFactory) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            host.faults.set("stop_hangs", "1")
            shell = CommandShell(host)
            call = asyncio.create_task(shell.run_command(
                bootstrap_command(), [], payload([("service_restart", {"name": "XtractUniversal Service", "timeout_s": 600})]),
                ("127.0.0.1", 50000), "XULAB\\xuadmin",
            ))
            while host.service.state != "StopPending":
                await asyncio.sleep(0.01)
            assert shell.end_running() == [call]
            assert isinstance((await asyncio.gather(call, return_exceptions=True))[0], asyncio.CancelledError)
            # Cancelled before it answered: no call is logged as made.
            assert events(host, "remote_call") == []

    run(scenario())


def without_identity(lab: Lab, observed: object) -> object:
    """``observed`` with what makes one lab another lab, though of one shape, replaced by placeholders: its directory,
    process, WinRM password, CA and addresses (a lab claims a free block when it starts, and anew when a reset changes
    its number of hosts)."""
    info = lab.info
    text = json.dumps(observed)
    text = text.replace(json.dumps(str(lab.dir))[1:-1], "<dir>").replace(json.dumps(info["password"])[1:-1], "<password>")
    text = text.replace(json.dumps((lab.dir / "ca.pem").read_text())[1:-1], "<ca.pem>")
    # lab.json's "pid", inside its text (escaped quotes).
    text = re.sub(rf'(pid\\?": ){info["pid"]}\b', r"\1<pid>", text)
    for host in info["hosts"]:
        text = re.sub(rf"(?<![\d.]){re.escape(host['address'])}(?![\d])", f"<address of {host['name']}>", text)
    return json.loads(text)


def test_a_reset_to_another_shape_is_the_lab_up_hands_out_with_that_shape(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> None:
    lab.reset()
    original = without_identity(lab, snapshot(lab))
    # Another lab altogether: fewer hosts, another scenario, auth, connection, restart delay, expiry, templates, clock.
    fresh = Lab.up(tmp_path_factory.mktemp("reshaped") / "lab", hosts=2, scenario="healthy", auth="basic", connection="ssh", restart_delay=0.3,
                   expiring_in=10, templates=("WebServer", "XUWeb:90"), pending_templates=("XUApproval",), clock_offsets={"xu01": -60})
    try:
        expected = without_identity(fresh, snapshot(fresh))
        shape = xulab_cli.up_options(lab.dir, [
            "--hosts", "2", "--scenario", "healthy", "--auth", "basic", "--connection", "ssh", "--restart-delay", "0.3",
            "--expiring-in", "10", "--templates", "WebServer,XUWeb:90", "--pending-templates", "XUApproval", "--clock-offset", "xu01=-60",
        ])
        # Whatever the last test left, with a call still running.
        outcome: list[BaseException | dict[str, Any]] = []
        hanging = hang_in_a_restart(lab, "xu03", outcome)
        while lab.state("xu03")["service"]["state"] != "StopPending":
            hanging.join(0.05)
        lab.fault("xu01", restart_fails=2)
        lab.advance_clock(50)

        assert lab.reset(shape)["hosts"] == 2
        hanging.join(60)
        assert not hanging.is_alive() and len(outcome) == 1 and isinstance(outcome[0], Exception), outcome
        assert without_identity(lab, snapshot(lab)) == expected
        assert sorted(path.name for path in (lab.dir / "ssh").iterdir()) == ["id_ed25519", "known_hosts"]
    finally:
        fresh.down()
    # And back: the lab the module started, on a block claimed anew, without the SSH endpoints' files.
    shape = xulab_cli.up_options(lab.dir, ["--hosts", "3", "--scenario", "mixed", "--restart-delay", "0.1", "--clock-offset", "xu02=120"])
    assert lab.reset(shape)["hosts"] == 3
    assert without_identity(lab, snapshot(lab)) == original
    assert not (lab.dir / "ssh").exists()


def test_a_shape_up_would_refuse_leaves_the_lab_as_it_is(lab: Lab) -> None:
    lab.reset()
    before = snapshot(lab)
    for args, message in ((["--hosts", "0"], "--hosts must be at least 1"), (["--hosts", "1", "--templates", "Bad:x"], "template Bad"),
                          (["--hosts", "1", "--scenario", "nope"], "nope")):
        with pytest.raises(LabError, match=re.escape(message)):
            lab.reset(xulab_cli.up_options(lab.dir, args))
    with pytest.raises(LabError, match="unknown options"):
        control.request(lab.dir, "reset", shape={"hosts": 1, "colour": "blue"})
    assert snapshot(lab) == before
