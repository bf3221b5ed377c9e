"""The command handler: our bootstrap and agent are run, anything else fails as Windows would."""

from __future__ import annotations

import hashlib
import json
import re

from lab.labkit import AGENT_DIR, AgentCall, HostFactory, agent_text, bootstrap_command, brief, encoded_command, events, payload, results, run

from xulab.accounts import service_sid as service_account_sid
from xulab.primitives import PRIMITIVES
from xulab.renewals import issue_pfx
from xulab.shell import CommandShell
from xulab.wsman import CommandResult

CLIENT = ("127.0.0.1", 50123)
USER = "XULAB\\xuadmin"


def test_primitive_names_match_the_agent() -> None:
    agent = (AGENT_DIR / "xu_agent.ps1").read_text(encoding="utf-8")
    table = agent[agent.index("$primitives = @{") :]
    assert set(re.findall(r"^    '([a-z_]+)' = \{", table, flags=re.MULTILINE)) == set(PRIMITIVES)


def test_a_batch_runs_in_order_and_is_recorded_without_its_payload(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            discover = {"service_display_name": "Xtract Universal", "service_name": None, "install_dir": None,
                        "files": ["config\\servers\\tls.json", "config\\version.txt", "missing.json"]}
            result, answer = await agent_call(host, [("discover", discover), ("cert_list", {"store": "My", "thumbprints": None})])
            assert result.rc == 0 and result.stderr == b"" and not result.drop_connection
            assert answer is not None and answer["agent"] == "xtractuniversal.tls" and answer["protocol"] == 1
            first, second = results(answer)
            assert (first["id"], first["op"], first["status"], second["op"], second["status"]) == (1, "discover", "ok", "cert_list", "ok")
            found = first["result"]
            assert found["computer"] == {"hostname": host.name, "domain": "xulab.test", "os_version": "10.0.20348"}
            assert found["service"]["state"] == "Running" and found["install_dir"] == "C:\\Program Files\\XtractUniversal"
            assert [f["exists"] for f in found["files"]] == [True, True, False]
            assert found["files"][1]["content"] == "6.8.1.2"
            (certificate,) = second["result"]["certificates"]
            assert certificate["key"]["provider"] == "CNG"
            service_sid = service_account_sid("XtractUniversal Service")
            assert {"identity": "NT SERVICE\\XtractUniversal Service", "sid": service_sid, "rights": "Read", "type": "Allow"} in certificate["key"]["acl"]
            (call,) = events(host, "remote_call")
            assert call["ops"] == ["discover", "cert_list"] and call["rc"] == 0 and call["auth"] == USER
            assert call["bytes_out"] == len(result.stdout) and call["bytes_in"] > 10000
            transcript = (host.directory / "transcript.log").read_text()
            assert "# xtractuniversal.tls bootstrap 1" in transcript and "param($Request)" not in transcript

    run(scenario())


def test_stop_on_error_skips_the_rest(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            ops = [("fw_get", {"group": "Xtract Universal"}), ("cert_remove", {"store": "My", "thumbprint": "nope"}),
                   ("no_such_op", {}), ("task_get", {"name": "x"})]
            _result, answer = await agent_call(host, ops)
            assert [r["status"] for r in results(answer)] == ["ok", "error", "skipped", "skipped"]
            assert brief(results(answer)[1]["error"]) == {"type": "InvalidArgument", "message": "a thumbprint has 40 hex digits"}
            assert "elapsed_ms" not in results(answer)[2]
            _result, answer = await agent_call(host, ops, stop_on_error=False)
            assert [r["status"] for r in results(answer)] == ["ok", "error", "error", "ok"]
            assert brief(results(answer)[2]["error"]) == {"type": "UnknownOperation", "message": "unknown operation no_such_op"}

    run(scenario())


def test_an_unsupported_protocol_fails_every_op(host_factory: HostFactory) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            stdin = payload([("fw_get", {"group": "Xtract Universal"})], protocol=2)
            result = await CommandShell(host).run_command(bootstrap_command(), [], stdin, CLIENT, USER)
            (entry,) = json.loads(result.stdout)["results"]
            assert brief(entry["error"]) == {"type": "InvalidArgument", "message": "unsupported protocol 2"}

    run(scenario())


def _assert_not_recognized(result: CommandResult, term: str) -> None:
    assert result.rc == 1 and result.stdout == b""
    assert result.stderr.startswith(b"#< CLIXML\r\n<Objs Version=\"1.1.0.1\"")
    assert f"The term '{term}' is not recognized as the name of a cmdlet, function, script file, or operable program".encode() in result.stderr
    assert b'S="Error"' in result.stderr


def test_anything_but_our_scripts_is_an_unknown_command(host_factory: HostFactory) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            shell = CommandShell(host)
            _assert_not_recognized(await shell.run_command(encoded_command("Get-Thing -Name x\n"), [], b"", CLIENT, USER), "Get-Thing")
            # Split into program and arguments, as pywinrm's run_command does.
            split = encoded_command("Remove-Item C:\\x").split(" ", 1)
            _assert_not_recognized(await shell.run_command(split[0], [split[1]], b"", CLIENT, USER), "Remove-Item")
            foreign_agent = payload([], agent="Write-Output 'hello'")
            _assert_not_recognized(await shell.run_command(bootstrap_command(), [], foreign_agent, CLIENT, USER), "Write-Output")
            cmd = await shell.run_command("ipconfig", ["/all"], b"", CLIENT, USER)
            assert cmd.rc == 1 and cmd.stderr.startswith(b"'ipconfig' is not recognized as an internal or external command")
            broken = await shell.run_command(bootstrap_command(), [], b'{"agent": "x", "password": "S3cret" not json', CLIENT, USER)
            assert broken.rc == 1 and broken.stdout == b""
            assert b'<S S="Error">the payload on stdin is not JSON_x000D__x000A_</S>' in broken.stderr
            assert b"RuntimeException" in broken.stderr and b"S3cret" not in broken.stderr  # the parser's message would quote stdin
            # Empty stdin parses to null: no agent, an empty script block, nothing printed.
            empty = await shell.run_command(bootstrap_command(), [], b"", CLIENT, USER)
            assert (empty.rc, empty.stdout, empty.stderr) == (0, b"", b"")
            assert [e["ops"] for e in events(host, "remote_call")] == [[]] * 6

    run(scenario())


def test_fail_and_drop_faults(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            host.faults.set("fail_primitive", "fw_get")
            _result, answer = await agent_call(host, [("fw_get", {"group": "Xtract Universal"})])
            assert brief(results(answer)[0]["error"]) == {"type": "UnauthorizedAccessException", "message": "Access is denied."}
            _result, answer = await agent_call(host, [("fw_get", {"group": "Xtract Universal"})])
            assert results(answer)[0]["status"] == "ok"  # consumed
            host.faults.set("drop_connection", "journal_write")
            result, _answer = await agent_call(host, [("journal_write", {"name": "run-1", "content": "{}"}), ("task_get", {"name": "x"})])
            assert result.drop_connection
            assert host.journals() == {"run-1": "{}"}  # the primitive did run
            assert events(host, "remote_call")[-1]["dropped"] is True
            assert [(e["action"], e["key"]) for e in events(host, "fault")] == [
                ("set", "fail_primitive"), ("consumed", "fail_primitive"), ("set", "drop_connection"), ("consumed", "drop_connection")
            ]
            host.faults.set("fail_primitive", "discover")
            host.faults.set("clear", "all")
            assert host.faults.pending()["fail_primitive"] == []

    run(scenario())


def test_a_pfx_password_never_reaches_a_log(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            secret = "S3cret-pfx-pass"  # noqa: S105 - a test value
            minted = issue_pfx(host, "other-password")
            _result, answer = await agent_call(host, [("pfx_import", {"pfx_b64": minted["pfx_b64"], "password": secret, "exportable": False})])
            assert brief(results(answer)[0]["error"]) == {"type": "CryptographicException", "message": "The specified network password is not correct."}
            for path in host.directory.rglob("*"):
                if path.is_file():
                    assert secret.encode() not in path.read_bytes(), path

    run(scenario())


def test_only_an_optional_operations_error_spares_the_rest(host_factory: HostFactory) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            bad = {"store": "My", "thumbprint": "nope"}
            for optional, statuses in ((True, ["error", "ok"]), ("true", ["error", "skipped"]), (1, ["error", "skipped"]), (None, ["error", "skipped"])):
                first: dict[str, object] = {"id": 1, "op": "cert_remove", "args": bad}
                if optional is not None:
                    first["optional"] = optional
                request = {"protocol": 1, "stop_on_error": True, "ops": [first, {"id": 2, "op": "fw_get", "args": {"group": "x"}}]}
                stdin = json.dumps({"agent": agent_text(), "request": request}).encode("ascii")
                result = await CommandShell(host).run_command(bootstrap_command(), [], stdin, CLIENT, USER)
                assert [r["status"] for r in json.loads(result.stdout)["results"]] == statuses, optional

    run(scenario())


def test_file_check_guards_what_follows(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            path = "C:\\Program Files\\XtractUniversal\\config\\servers\\tls.json"
            digest = hashlib.sha256(host.fs.resolve(path).read_bytes()).hexdigest()
            follow = ("fw_get", {"group": "x"})
            for expected, statuses in ((digest.upper(), ["ok", "ok"]), ("0" * 64, ["error", "skipped"]), ("absent", ["error", "skipped"])):
                _result, answer = await agent_call(host, [("file_check", {"path": path, "sha256": expected}), follow])
                assert [r["status"] for r in results(answer)] == statuses, expected
                assert statuses[0] == "ok" or results(answer)[0]["error"]["type"] == "HashMismatch"
            missing = "C:\\Program Files\\XtractUniversal\\config\\servers\\nothing.json"
            _result, answer = await agent_call(host, [("file_check", {"path": missing, "sha256": "absent"})])
            assert results(answer)[0] == {**results(answer)[0], "status": "ok", "result": {"sha256": None}}
            _result, answer = await agent_call(host, [("file_check", {"path": path, "sha256": None})])
            assert results(answer)[0]["error"]["type"] == "InvalidArgument"

    run(scenario())
