"""Record the agent's real answers, for the replay tests (tests/unit/plugins/test_recorded_answers.py).

Runs modules in-process (the controller logic, exactly as Ansible runs it) against a host reached over
WinRM, and saves, per scenario, every remote call's request (secrets removed) and the host's answer,
with the module's arguments and result, as one JSON file.

    .venv/bin/python tests/unit/test_data/agent_answers/record.py                 # own 1-host lab, every scenario
    .venv/bin/python tests/unit/test_data/agent_answers/record.py --lab DIR       # a running lab
    XU_RECORD_PASSWORD=... .venv/bin/python tests/unit/test_data/agent_answers/record.py \\
        --host xu01.example.com --user 'EXAMPLE\\admin' --transport ntlm --out windows-2022-xu-6.8
                                                                                  # a real server: read-only scenarios

Files go to tests/unit/test_data/agent_answers/<out>/<scenario>.json (default out: lab).
"""

from __future__ import annotations

import argparse
import base64
import datetime
import importlib
import json
import os
import pathlib
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, cast

HERE = pathlib.Path(__file__).resolve().parent
UNIT = HERE.parents[1]
sys.path.insert(0, str(UNIT))
# The unit tests' conftest installs the collection loader; the imports below need it.
importlib.import_module("conftest")

from winrm.protocol import Protocol  # noqa: E402

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._agent import AgentClient, Operation  # noqa: E402
from support.action import run_action  # noqa: E402
from support.fake_host import FakeHost  # noqa: E402
from xulab.client import Lab  # noqa: E402

# Request arguments that carry secrets; their values never reach a recording.
SECRET_ARGS = frozenset({"password", "pfx_b64"})
REMOVED = "<removed>"
WinrmAuth = Literal["basic", "ntlm", "kerberos", "credssp"]
GATE_GROUP = "xu-record gate"
JOURNAL = "xu-record"
# The lab's second enterprise CA (fault enterprise_cas=2), named for the enrolment scenario.
ENROLMENT_CA = "ca02.xulab.test\\xulab Issuing CA"
RECORD_COMMAND = "tests/unit/test_data/agent_answers/record.py"


def redact(value: Any) -> Any:
    """``value`` with every secret argument's value replaced."""
    if isinstance(value, dict):
        return {k: REMOVED if k in SECRET_ARGS and v not in (None, "") else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


class WinrmTransport:
    """One agent call over WinRM, as Ansible's winrm connection makes it: the command, stdin sent with End."""

    def __init__(self, endpoint: str, user: str, password: str, transport: str) -> None:
        self._protocol = Protocol(
            endpoint=endpoint, transport=cast(WinrmAuth, transport), username=user, password=password, server_cert_validation="ignore",
        )

    def __call__(self, command: str, stdin: bytes) -> tuple[int, str, str]:
        executable, *arguments = shlex.split(command)
        shell = self._protocol.open_shell(codepage=65001)
        try:
            command_id = self._protocol.run_command(shell, executable, arguments)
            self._protocol.send_command_input(shell, command_id, stdin, end=True)
            stdout, stderr, rc = self._protocol.get_command_output(shell, command_id)
            self._protocol.cleanup_command(shell, command_id)
        finally:
            self._protocol.close_shell(shell)
        return rc, stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace")


@dataclass
class RecordingHost(FakeHost):
    """Forwards every agent call to a real transport and keeps the request (redacted) and the answer."""

    remote: Callable[[str, bytes], tuple[int, str, str]] | None = None
    recorded: list[dict[str, Any]] = field(default_factory=list)

    def transport(self, command: str, stdin: bytes) -> tuple[int, str, str]:
        assert self.remote is not None
        request = json.loads(stdin)["request"]
        rc, stdout, stderr = self.remote(command, stdin)
        self.recorded.append({"request": redact(request), "answer": answer_record(rc, stdout, stderr)})
        return rc, stdout, stderr


def answer_record(rc: int, stdout: str, stderr: str) -> dict[str, Any]:
    """The answer as data: the agent's JSON document when stdout is exactly one, else the raw text."""
    try:
        document = json.loads(stdout)
    except ValueError:
        return {"rc": rc, "stdout": stdout, "stderr": stderr}
    return {"rc": rc, "document": document, "stderr": stderr}


@dataclass
class Scenario:
    name: str
    module: str
    args: dict[str, Any]
    # Result fields (dotted paths) the replay asserts; stable across runs of the same answers.
    checks: list[str]
    check_mode: bool = False
    read_only: bool = False
    # Lab only: run before the scenario, not recorded.
    prepare: Callable[[Context], None] | None = None


@dataclass
class Context:
    agent: AgentClient
    lab: Lab | None = None
    host: str = "xu01"
    original: str = ""
    new: str = ""


def scenarios(ctx: Context) -> list[Scenario]:
    """What is recorded, in this order (the write scenarios build on each other and end where they began)."""
    info_checks = [
        "changed", "installed", "web_server.protocol", "web_server.certificate_thumbprint", "web_server.certificate.in_store",
        "config_server.authentication", "served.web_https.thumbprint", "gate.state", "journal",
    ]
    swap_checks = ["changed", "failed", "new_thumbprint", "old_thumbprint", "imported", "restarted", "rolled_back", "removed_old",
                   "key_access_granted", "served.web_https.thumbprint"]
    # A fixed run id: the event log entries the changes write are part of the recorded requests.
    run = {"run_id": "recorded"}
    gate = {"rule_group": GATE_GROUP, "ports": [48265], "allow_from": ["192.0.2.10", "2001:db8::10"], "auto_open_after": 2, **run}

    def fail_next_start(c: Context) -> None:
        assert c.lab is not None, "a lab-only scenario"
        c.lab.fault(c.host, restart_fails=1)

    def hanging_dependent(c: Context) -> None:
        # Two services depend on XU; one hangs in StopPending: the restart stops the other, gives up within its limit,
        # leaves XU running and starts the one it stopped again (issue 21).
        assert c.lab is not None, "a lab-only scenario"
        c.lab.fault(c.host, dependent_service="XuScheduler")
        c.lab.fault(c.host, dependent_service="XuExporter")
        c.lab.fault(c.host, dependent_stop_hangs="XuExporter")

    def end_hanging_dependent(c: Context) -> None:
        assert c.lab is not None, "a lab-only scenario"
        c.lab.fault(c.host, dependent_stop_hangs="none")

    def leftover_and_two_cas(c: Context) -> None:
        # A killed call's certreq task from yesterday (swept before the enrolment's own), and a second enterprise CA:
        # without enroll.ca_config the module fails naming both, with it the named CA issues.
        assert c.lab is not None, "a lab-only scenario"
        c.lab.fault(c.host, certreq_leftover="stale")
        c.lab.fault(c.host, enterprise_cas=2)

    def folder_made_by_a_user(c: Context) -> None:
        # C:\ProgramData\xtractuniversal.tls made by a local user before the first run (the lab removes the one the
        # earlier scenarios made, so that the user's is "first").
        assert c.lab is not None, "a lab-only scenario"
        shutil.rmtree(c.lab.dir / "hosts" / c.host / "fs" / "C" / "ProgramData" / "xtractuniversal.tls")
        c.lab.fault(c.host, journal_dir="user")

    return [
        Scenario("xu_tls_info", "xu_tls_info", {}, info_checks, read_only=True),
        Scenario("xu_tls_binding_restart_check", "xu_tls_binding", {"restart": "always", **run}, ["changed", "restarted"],
                 check_mode=True, read_only=True),
        Scenario("xu_firewall_gate_close_check", "xu_firewall_gate", {"state": "closed", **gate},
                 ["changed", "state", "ports", "blocked_remote_addresses"], check_mode=True, read_only=True),
        Scenario("xu_cert_swap_check", "xu_cert_swap", {"old_thumbprint": ctx.original, "new_thumbprint": ctx.new, "grant_key_access": True, **run},
                 swap_checks, check_mode=True),
        Scenario("xu_cert_swap", "xu_cert_swap", {"old_thumbprint": ctx.original, "new_thumbprint": ctx.new, "grant_key_access": True, **run},
                 swap_checks),
        Scenario("xu_cert_swap_again", "xu_cert_swap", {"old_thumbprint": ctx.original, "new_thumbprint": ctx.new, "grant_key_access": True, **run},
                 swap_checks),
        Scenario("xu_cert_swap_rollback", "xu_cert_swap", {"old_thumbprint": ctx.new, "new_thumbprint": ctx.original, **run},
                 [*swap_checks, "restored_files"], prepare=fail_next_start),
        Scenario("xu_cert_swap_back_remove_old", "xu_cert_swap",
                 {"old_thumbprint": ctx.new, "new_thumbprint": ctx.original, "remove_old": True, **run}, swap_checks),
        Scenario("xu_firewall_gate_close", "xu_firewall_gate", {"state": "closed", **gate},
                 ["changed", "state", "ports", "allow_from", "blocked_remote_addresses", "auto_open.run_at"]),
        Scenario("xu_firewall_gate_open", "xu_firewall_gate", {"state": "open", "rule_group": GATE_GROUP, **run}, ["changed", "state", "rules"]),
        Scenario("xu_journal_write", "xu_journal", {"name": JOURNAL, "content": {"step": "recorded"}}, ["changed", "previous", "content", "path"]),
        Scenario("xu_journal_remove", "xu_journal", {"name": JOURNAL, "state": "absent"}, ["changed", "previous", "content"]),
        # Issue 21: Windows' answers where they differ from what the agent used to assume.
        Scenario("xu_tls_binding_restart_hanging_dependent", "xu_tls_binding", {"restart": "always", "wait_timeout": 2, **run},
                 ["changed", "failed", "restarted", "msg"], prepare=hanging_dependent),
        Scenario("xu_tls_binding_restart_after_the_hang", "xu_tls_binding", {"restart": "always", **run},
                 ["changed", "failed", "restarted"], prepare=end_hanging_dependent),
        Scenario("xu_cert_swap_enroll_two_cas", "xu_cert_swap",
                 {"old_thumbprint": ctx.original, "enroll": {"template": "WebServer"}, "grant_key_access": True, **run},
                 ["changed", "failed", "msg", "enrolled"], prepare=leftover_and_two_cas),
        Scenario("xu_cert_swap_enroll", "xu_cert_swap",
                 {"old_thumbprint": ctx.original, "enroll": {"template": "WebServer", "ca_config": ENROLMENT_CA}, "grant_key_access": True, **run},
                 [*swap_checks, "enrolled"]),
        Scenario("xu_journal_write_untrusted_folder", "xu_journal", {"name": JOURNAL, "content": {"step": "recorded"}},
                 ["changed", "failed", "msg"], prepare=folder_made_by_a_user),
    ]


def record(scenario: Scenario, ctx: Context, remote: Callable[[str, bytes], tuple[int, str, str]], source: str) -> dict[str, Any]:
    if scenario.prepare is not None:
        scenario.prepare(ctx)
    host = RecordingHost(remote=remote)
    started = datetime.datetime.now(datetime.UTC)
    result = run_action(scenario.module, scenario.args, host, check_mode=scenario.check_mode)
    return {
        "scenario": scenario.name,
        "source": source,
        "recorded_at": started.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "rerecord": f".venv/bin/python {RECORD_COMMAND}",
        "module": scenario.module,
        "args": scenario.args,
        "check_mode": scenario.check_mode,
        "checks": scenario.checks,
        "result": result,
        "calls": host.recorded,
    }


def store_thumbprints(agent: AgentClient) -> str:
    (discover,) = agent.call([Operation("discover", {"service_display_name": "Xtract Universal", "service_name": None,
                                                     "install_dir": None, "files": ["config\\servers\\tls.json"]})])
    document = json.loads(discover.value()["files"][0]["content"])
    return str(document["WebServer"]["Certificate"]["Thumbprint"])


@contextmanager
def own_lab() -> Iterator[pathlib.Path]:
    with tempfile.TemporaryDirectory(prefix="xu-record-") as directory:
        lab = Lab.up(directory, 1, scenario="healthy", restart_delay=0.2)
        try:
            yield lab.dir
        finally:
            lab.down()


def lab_remote(directory: pathlib.Path) -> tuple[Lab, WinrmTransport]:
    lab = Lab(directory)
    info = lab.info
    endpoint = f"http://{lab.address('xu01')}:{info['winrm_port']}/wsman"
    return lab, WinrmTransport(endpoint, info["user"], info["password"], info["auth"])


def write(recording: dict[str, Any], out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{recording['scenario']}.json"
    path.write_text(json.dumps(recording, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"recorded {path.relative_to(HERE)}: {len(recording['calls'])} call(s), changed={recording['result'].get('changed')}"
          f"{' FAILED: ' + str(recording['result'].get('msg')) if recording['result'].get('failed') else ''}")


def record_lab(directory: pathlib.Path, out: pathlib.Path) -> None:
    lab, remote = lab_remote(directory)
    ctx = Context(agent=AgentClient(remote), lab=lab)
    ctx.original = store_thumbprints(ctx.agent)
    # The certificate the swaps bind: a PFX from the lab's CA, imported before recording (not part of any scenario).
    password = os.urandom(12).hex()
    pfx = lab.issue(ctx.host, password)["pfx"]
    (imported,) = ctx.agent.call([Operation("pfx_import", {"pfx_b64": base64.b64encode(pfx).decode(), "password": password,
                                                           "exportable": False})])
    ctx.new = str(imported.value()["thumbprint"])
    for scenario in scenarios(ctx):
        write(record(scenario, ctx, remote, "xulab, 1 host, scenario healthy"), out)


def record_real(args: argparse.Namespace, out: pathlib.Path) -> None:
    password = os.environ.get("XU_RECORD_PASSWORD")
    if not password:
        sys.exit("set XU_RECORD_PASSWORD to the WinRM password (it is never written anywhere)")
    scheme = "https" if args.port == 5986 else "http"
    remote = WinrmTransport(f"{scheme}://{args.host}:{args.port}/wsman", args.user, password, args.transport)
    ctx = Context(agent=AgentClient(remote))
    for scenario in scenarios(ctx):
        if scenario.read_only:
            write(record(scenario, ctx, remote, args.source or f"{args.host} over winrm/{args.transport}"), out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", type=pathlib.Path, help="a running lab's dir (default: start a 1-host lab of its own)")
    parser.add_argument("--host", help="a real Windows server: record the read-only scenarios only")
    parser.add_argument("--user")
    parser.add_argument("--transport", default="ntlm", choices=["basic", "ntlm", "kerberos", "credssp"])
    parser.add_argument("--port", type=int, default=5985)
    parser.add_argument("--source", help="what the answers come from, e.g. 'Windows Server 2016, XU 6.8.1'")
    parser.add_argument("--out", default="lab", help="folder under agent_answers/ (default: lab)")
    args = parser.parse_args()
    out = HERE / args.out
    if args.host:
        record_real(args, out)
    elif args.lab:
        record_lab(args.lab.resolve(), out)
    else:
        with own_lab() as directory:
            record_lab(directory, out)


if __name__ == "__main__":
    main()
