# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Why a host could not be reached, in words an operator acts on. Private to this collection.

Ansible reports a host whose credentials were refused as unreachable, like one that does not
answer; a wrong password is then looked for in the network. The connection plugins' messages
for a refused login (each row cites where the text comes from) make the reason "authentication
failed", which the fleet summary and the report print.
"""

from __future__ import annotations

import re

AUTHENTICATION_FAILED = "authentication failed"
AUTHENTICATION_FAILURES = (
    # ansible.builtin.winrm (plugins/connection/winrm.py, _winrm_connect) turns an HTTP 401 into this text, and
    # pywinrm raises it too (winrm/transport.py, InvalidCredentialsError on a 401): Basic, NTLM, CredSSP, Kerberos.
    re.compile(r"the specified credentials were rejected by the server"),
    # ansible.builtin.winrm when kinit or the Kerberos library refuses the principal's password (_kerb_auth).
    re.compile(r"Kerberos auth failure"),
    # ansible.builtin.psrp (plugins/connection/psrp.py, _connect) on pypsrp's AuthenticationError, an HTTP 401.
    re.compile(r"failed to authenticate with the server"),
    # ansible.builtin.ssh passes OpenSSH's "Permission denied (publickey,password)." on.
    re.compile(r"Permission denied \("),
)


def unreachable_reason(message: str) -> str:
    """The reason of an unreachable host: ``authentication failed: ...`` when its login was refused, else ``could not be reached: ...``."""
    # ansible-core 2.19 and later put "Task failed: " before the connection plugin's own words.
    message = message.removeprefix("Task failed: ")
    if any(pattern.search(message) for pattern in AUTHENTICATION_FAILURES):
        return f"{AUTHENTICATION_FAILED}: the host refused the connection's credentials (ansible_user, ansible_password): {message}"
    return f"could not be reached: {message}"
