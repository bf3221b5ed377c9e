"""cert_enroll through the real agent and bootstrap over WinRM (NTLM), as the controller's AgentClient sends them.

No module uses cert_enroll yet, so the primitive is driven the way the modules drive every primitive:
`AgentClient` with a transport that makes one WinRM command per call, as Ansible's winrm connection does.
What happened is read from the lab's state and event log.
"""

from __future__ import annotations

import shlex
import sys
from typing import Any

import pytest
from labtools import REPO, Lab
from winrm.protocol import Protocol

sys.path.insert(0, str(REPO / ".collections"))
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._agent import AgentClient, Operation
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import OperationError

XU_SERVICE_SID = "S-1-5-80-2835434641-1716488285-1104975628-79970361-2622572616"


class WinrmTransport:
    """One remote command per agent call: the bootstrap as command and arguments, the payload on stdin with End."""

    def __init__(self, lab: Lab, host: str) -> None:
        address = next(h["address"] for h in lab.info["hosts"] if h["name"] == host)
        self._protocol = Protocol(
            endpoint=f"http://{address}:{lab.info['winrm_port']}/wsman", transport="ntlm",
            username=lab.info["user"], password=lab.info["password"], server_cert_validation="ignore",
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


def certificates(lab: Lab, host: str) -> dict[str, dict[str, Any]]:
    return {c["thumbprint"]: c for c in lab.state(host)["certificates"]}


@pytest.mark.lab
def test_cert_enroll_over_winrm_as_the_machine_in_the_session_and_pending(lab_factory: Any) -> None:
    lab: Lab = lab_factory("--hosts", "1", "--auth", "ntlm", "--restart-delay", "0.2", "--pending-templates", "XUApproval")
    agent = AgentClient(WinrmTransport(lab, "xu01"))
    names = ["xu01.xulab.test", "xu01"]
    before = certificates(lab, "xu01")

    # In the session: a network logon cannot reach the CA.
    (caller,) = agent.call([Operation("cert_enroll", {"template": "WebServer", "dns_names": names, "run_as": "caller"})])
    with pytest.raises(OperationError) as failed:
        caller.value()
    assert failed.value.error_type == "CertreqFailed" and "0x80094015" in failed.value.error_message
    assert certificates(lab, "xu01") == before

    # As the machine, then its key granted to XU in the same call: the new certificate is usable by the service.
    enrolled, granted = agent.call([
        Operation("cert_enroll", {"template": "WebServer", "dns_names": names, "ca_config": lab.info["ca"]["config"]}),
        Operation("cert_list", {"store": "My"}),
    ])
    result = enrolled.value()
    assert result["enrolled_as"] == "machine" and result["exit_code"] == 0
    new = result["thumbprint"]
    listed = {c["thumbprint"]: c for c in granted.value()["certificates"]}
    assert set(listed) == set(before) | {new}
    assert XU_SERVICE_SID not in {rule["sid"] for rule in listed[new]["key"]["acl"]}
    (grant,) = agent.call([Operation("key_grant_read", {"thumbprint": new, "account": XU_SERVICE_SID})])
    assert grant.value()["changed"] is True
    state = certificates(lab, "xu01")[new]
    assert state["san"] == names and state["subject"] == "CN=xu01.xulab.test" and state["issuer"] == before[next(iter(before))]["issuer"]

    # A template that needs a CA manager's approval: pending, with the CA's request id.
    (pending,) = agent.call([Operation("cert_enroll", {"template": "XUApproval", "dns_names": names, "ca_config": lab.info["ca"]["config"]})])
    with pytest.raises(OperationError) as held:
        pending.value()
    assert held.value.error_type == "EnrollPending"
    enrolments = lab.events("xu01", "enrol")
    assert [e["disposition"] for e in enrolments] == ["failed", "issued", "pending"]
    assert held.value.error_message.startswith(f"request {enrolments[-1]['request_id']} is pending at the CA: ")
    assert [e["enrolled_as"] for e in enrolments] == ["caller", "machine", "machine"]
    assert all(call["auth"] == "XULAB\\xuadmin" for call in lab.events("xu01", "remote_call"))
