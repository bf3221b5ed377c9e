"""The collection's folder in C:\\ProgramData: trusted only as the agent makes it, and swept of what killed calls leave.

Every user may create folders in ProgramData and owns what they create. A folder made by another user before the
first run would let them swap the enrolment's request file between the administrator writing it and certreq reading
it as SYSTEM, and read the journals; a folder an administrator made by hand inherits ProgramData's DACL, which lets
users add files. A call killed while certreq ran leaves its SYSTEM task and files behind. docs/agent-protocol.md
(Journals) says what the agent does about each; these tests hold the lab (which answers as the agent does) to it.
"""

from __future__ import annotations

import pytest
from lab.labkit import AgentCall, HostFactory, events, only_result, results, run

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._windows_errors import OTHER, classify
from xulab.enterprise_ca import CA_CONFIG
from xulab.errors import LabError
from xulab.folders import ADMINISTRATORS_SID, JOURNAL_DIR, LOCAL_USER_SID, PLANTED_FILE, SYSTEM_SID
from xulab.host import Host

JOURNAL = ("journal_write", {"name": "xu-renew", "content": '{"step": 1}', "expected_sha256": "absent"})
READ = ("journal_read", {"name": "xu-renew"})


def enrol(host: Host, **extra: object) -> tuple[str, dict[str, object]]:
    return ("cert_enroll", {"template": "WebServer", "dns_names": [host.fqdn], "ca_config": CA_CONFIG, **extra})


def folder_files(host: Host) -> list[str]:
    folder = host.fs.resolve(JOURNAL_DIR)
    return sorted(child.name for child in folder.iterdir()) if folder.is_dir() else []


# -- who made the folder ----------------------------------------------------------------------


def test_the_folder_the_agent_makes_is_owned_by_administrators_and_closed(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            _result, answer = await agent_call(host, [JOURNAL, READ])
            assert results(answer)[1]["result"]["content"] == '{"step": 1}'
            assert host.state()["journal_dir_security"] == {
                "owner": ADMINISTRATORS_SID, "protected": True, "allowed": [SYSTEM_SID, ADMINISTRATORS_SID], "reparse_point": False,
                "foreign_files": {},
            }

    run(scenario())


@pytest.mark.parametrize("origin", ["user", "link"])
def test_a_folder_another_user_made_first_is_never_used(host_factory: HostFactory, agent_call: AgentCall, origin: str) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            host.faults.set("journal_dir", origin)
            before = host.state()
            for operation in (JOURNAL, READ, enrol(host), ("cert_renew_reuse_key", {"thumbprint": before["certificates"][0]["thumbprint"]})):
                _result, answer = await agent_call(host, [operation])
                error = results(answer)[0]["error"]
                assert error["type"] == "UntrustedFolder" and error["exception"] is None and classify(error) == OTHER
                if origin == "user":
                    assert error["message"] == (
                        f"{JOURNAL_DIR} is owned by {LOCAL_USER_SID}, not by SYSTEM or Administrators: another user may have made it first."
                        " Nothing was read or written there; remove it (an administrator can), then run again"
                    )
                else:
                    assert error["message"].startswith(f"{JOURNAL_DIR} is a link (reparse point), not a folder.")
            # Nothing was written there, nothing was enrolled, nobody asked the CA, and the folder is as the user left it.
            after = host.state()
            for key in ("files", "certificates", "request_certificates", "journal_dir_security", "certreq_tasks"):
                assert after[key] == before[key], key
            assert events(host, "enrol") == [] and events(host, "certreq") == []

    run(scenario())


def test_a_folder_an_administrator_made_by_hand_is_closed_before_use(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            host.faults.set("journal_dir", "open")
            assert host.state()["journal_dir_security"]["protected"] is False
            _result, answer = await agent_call(host, [JOURNAL])
            assert results(answer)[0]["status"] == "ok"
            security = host.state()["journal_dir_security"]
            assert (security["owner"], security["protected"], security["allowed"]) == (ADMINISTRATORS_SID, True, [SYSTEM_SID, ADMINISTRATORS_SID])
            (closed,) = events(host, "folder_acl")
            assert closed["action"] == "closed" and "S-1-5-32-545" in closed["previous_allowed"]

    run(scenario())


def test_a_file_a_user_put_in_an_open_folder_is_refused_and_the_folder_closed(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            host.faults.set("journal_dir", "open_planted")
            _result, answer = await agent_call(host, [READ])
            error = results(answer)[0]["error"]
            assert error["type"] == "UntrustedFolder"
            assert error["message"].startswith(f"{JOURNAL_DIR}\\{PLANTED_FILE} is owned by {LOCAL_USER_SID}, not by SYSTEM or Administrators")
            # Closed all the same, so nobody adds more; the planted file stays for an administrator to look at.
            assert host.state()["journal_dir_security"]["protected"] is True
            assert folder_files(host) == [PLANTED_FILE]
            # Once an administrator removed it, the folder is used.
            host.fs.resolve(f"{JOURNAL_DIR}\\{PLANTED_FILE}").unlink()
            _result, answer = await agent_call(host, [JOURNAL, READ])
            assert [r["status"] for r in results(answer)] == ["ok", "ok"]

    run(scenario())


def test_the_folder_can_only_be_made_before_the_first_run(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            with pytest.raises(LabError, match="journal_dir takes"):
                host.faults.set("journal_dir", "nobody")
            await agent_call(host, [JOURNAL])
            with pytest.raises(LabError, match="exists already"):
                host.faults.set("journal_dir", "user")

    run(scenario())


# -- what killed calls leave behind -------------------------------------------------------------


def test_a_killed_enrolment_leaves_its_task_and_files_and_a_later_call_keeps_them_until_their_time(
    host_factory: HostFactory, agent_call: AgentCall
) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            host.faults.set("kill_certreq", "1")
            result, _answer = await agent_call(host, [enrol(host, timeout_s=60)])
            # No answer reaches the controller; the SYSTEM task ran to its end all the same, and it and its files stay.
            assert result.drop_connection is True
            (task,) = host.state()["certreq_tasks"]
            task_id = task["name"].rsplit(" ", 1)[1]
            assert task["description"].startswith("xtractuniversal.tls certreq until ")
            assert folder_files(host) == [f"certreq-{task_id}.txt", f"enrol-{task_id}.inf", f"enrol-{task_id}.req"]
            assert [e["disposition"] for e in events(host, "enrol")] == ["issued"]
            # The request file is the agent's INF, naming the host.
            inf = host.fs.resolve(f"{JOURNAL_DIR}\\enrol-{task_id}.inf").read_bytes().decode("utf-16")
            assert f'Subject = "CN={host.fqdn}"' in inf
            # Within its time it may still belong to a live call: the next enrolment leaves it alone.
            _result, answer = await agent_call(host, [enrol(host)])
            assert only_result(answer)["swept"] == []
            assert [t["name"] for t in host.state()["certreq_tasks"]] == [task["name"]]
            assert folder_files(host) == [f"certreq-{task_id}.txt", f"enrol-{task_id}.inf", f"enrol-{task_id}.req"]

    run(scenario())


def test_stale_leftovers_are_swept_and_live_ones_kept(host_factory: HostFactory, agent_call: AgentCall) -> None:
    async def scenario() -> None:
        async with host_factory("healthy") as host:
            for kind in ("stale", "running", "legacy", "orphan"):
                host.faults.set("certreq_leftover", kind)
            planted = {t["name"]: t for t in host.state()["certreq_tasks"]}
            running = next(name for name, t in planted.items() if t["state"] == "Running")
            assert len(planted) == 3 and len(folder_files(host)) == 8
            thumbprint = host.state()["certificates"][0]["thumbprint"]
            _result, answer = await agent_call(host, [("cert_renew_reuse_key", {"thumbprint": thumbprint})])
            outcome = only_result(answer)
            # The stale one and the finished one of an older agent go, with their files and the orphaned file; the live one stays.
            assert sorted(outcome["swept"]) == sorted(name for name in planted if name != running)
            assert outcome["sweep_error"] is None
            assert [t["name"] for t in host.state()["certreq_tasks"]] == [running]
            running_id = running.rsplit(" ", 1)[1]
            assert folder_files(host) == [f"certreq-{running_id}.txt", f"enrol-{running_id}.inf"]
            removed = [e["name"] for e in events(host, "task") if e["action"] == "removed" and e.get("reason") == "stale"]
            assert sorted(removed) == sorted(outcome["swept"])

    run(scenario())
