"""The lab's SSH endpoint behaves as Win32-OpenSSH with powershell.exe as the default shell, and no kinder.

An asyncssh client sends what Ansible's ssh connection sends (ansible-core 2.18+ and the 2.16/2.17 form with
chcp.com), and what else a client could: a command the host does not have, a stranger's key, a password.
"""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Iterator
from typing import Any

import asyncssh
import pytest

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._agent import AgentClient, Operation, encoded_command
from xulab.client import Lab
from xulab.sshd import SSH_PORT


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    started = Lab.up(tmp_path_factory.mktemp("sshd") / "lab", 1, restart_delay=0.1, connection="ssh")
    yield started
    started.down()


def exec_command(lab: Lab, command: str, stdin: bytes = b"", **options: Any) -> asyncssh.SSHCompletedProcess:
    async def run() -> asyncssh.SSHCompletedProcess:
        settings: dict[str, Any] = {
            "username": "xuadmin", "client_keys": [str(lab.dir / "ssh" / "id_ed25519")], "known_hosts": str(lab.dir / "ssh" / "known_hosts"),
        }
        settings.update(options)
        async with asyncssh.connect(lab.address("xu01"), SSH_PORT, **settings) as connection:
            return await connection.run(command, input=stdin, encoding=None)

    return asyncio.run(run())


def text(output: bytes | str | None) -> str:
    """A channel's output (bytes: the client asked for no encoding) as text."""
    return output.decode() if isinstance(output, bytes) else output or ""


def agent_over(lab: Lab, wrap: Any) -> AgentClient:
    def transport(command: str, stdin: bytes) -> tuple[int, str, str]:
        done = exec_command(lab, wrap(command), stdin)
        return int(done.exit_status or 0), text(done.stdout), text(done.stderr)

    return AgentClient(transport)


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda command: command, id="ansible-core 2.18+: the command as it is"),
        pytest.param(lambda command: f"chcp.com 65001 > $null ; {encoded_command(command)}", id="2.16 and 2.17: chcp.com, encoded again"),
    ],
)
def test_the_agent_runs_as_ansible_sends_it(lab: Lab, wrap: Any) -> None:
    calls_before = len(lab.events("xu01", "remote_call"))
    [answer] = agent_over(lab, wrap).call([Operation("cert_list", {"store": "My", "thumbprints": None})])
    listed = {c["thumbprint"] for c in answer.value()["certificates"]}
    assert listed == {c["thumbprint"] for c in lab.state("xu01")["certificates"] if not c["archived"]}
    calls = lab.events("xu01", "remote_call")[calls_before:]
    assert [(c["ops"], c["via"], c["rc"]) for c in calls] == [(["cert_list"], "ssh", 0)]


def test_a_command_the_host_does_not_have_fails_as_powershell_does(lab: Lab) -> None:
    done = exec_command(lab, "openssl version")
    assert done.exit_status == 1
    stderr = text(done.stderr)
    assert stderr.startswith("#< CLIXML") and "CommandNotFoundException" in stderr and "openssl : The term" in stderr


def test_only_the_administrators_key_gets_in(lab: Lab, tmp_path: pathlib.Path) -> None:
    stranger = asyncssh.generate_private_key("ssh-ed25519")
    with pytest.raises(asyncssh.PermissionDenied):
        exec_command(lab, "whoami", client_keys=[stranger])
    with pytest.raises(asyncssh.PermissionDenied):
        exec_command(lab, "whoami", client_keys=[], password=lab.info["password"])
    with pytest.raises(asyncssh.PermissionDenied):
        exec_command(lab, "whoami", username="someone")


def test_the_host_key_is_the_known_one_and_the_firewall_lets_ssh_in(lab: Lab) -> None:
    # known_hosts names each host's own key: a client that checks it connects (exec_command checks it).
    assert exec_command(lab, "whoami").exit_status == 1
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    wrong = lab.dir / "wrong_known_hosts"
    wrong.write_text(f"[{lab.address('xu01')}]:{SSH_PORT} {other}")
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        exec_command(lab, "whoami", known_hosts=str(wrong))
    rules = {rule["name"]: rule for rule in lab.state("xu01")["firewall"]["rules"]}
    assert rules["OpenSSH-Server-In-TCP"]["local_ports"] == [str(SSH_PORT)]
