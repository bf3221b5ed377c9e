#!/usr/bin/python
# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# The module runs on the controller: see plugins/action/xu_firewall_gate.py.

from __future__ import annotations

DOCUMENTATION = r"""
module: xu_firewall_gate
short_description: Block outside access to an Xtract Universal server during maintenance
version_added: 0.1.0
description:
  - Closes and opens the maintenance gate of an Xtract Universal (or Board Connector, or yunIO) server. This is
    the vendor's manual renewal step "Block external access to the server using the firewall", and its reverse.
  - A closed gate is one inbound Windows Firewall rule that blocks TCP to O(ports) from every address except
    O(allow_from). Windows Firewall applies block rules before allow rules, so the rule's remote addresses are
    the complement of O(allow_from) (IPv4 and IPv6), computed on the controller.
  - The rule lives in its own rule group, O(rule_group). Every rule outside that group is left untouched;
    an open gate is a group without rules.
  - A closed gate must be in effect, not just stored. Closing fails before anything changes (in check mode
    too) while a Windows Firewall profile is off or group policy makes a profile ignore local rules
    (AllowLocalFirewallRules False), and fails after applying when the host's active store does not list the
    gate's rule. A host whose answer does not say whether the gate is in effect fails too.
  - Closing also registers a one-shot scheduled task on the host that removes the group's rules after
    O(auto_open_after) minutes, so a controller that crashes or a play that fails never leaves the server
    locked out. Opening removes the task.
  - Reads the host in one remote call and changes it in at most one more.
  - The module runs on the controller and reaches the host through its connection (C(winrm), or C(ssh) with the PowerShell
    shell; C(psrp) is untested).
extends_documentation_fragment:
  - xtractuniversal.tls.attributes
  - xtractuniversal.tls.product
  - xtractuniversal.tls.run
attributes:
  check_mode:
    support: full
    details: Reads the host and returns the state the gate would be in; nothing on the host changes.
  diff_mode:
    support: full
    details: Shows the gate's state, its rules and the auto-open task before and after.
  idempotent:
    support: full
    details:
      - A second run with the same options reports no change and makes no change.
      - Closing a gate that is already closed keeps the auto-open task and its deadline, even when O(auto_open_after)
        would now give a later one, so re-running a play cannot postpone the reopening forever. To move the
        deadline, open the gate and close it again.
options:
  state:
    description:
      - V(closed) blocks O(ports) for everyone except O(allow_from) and registers the auto-open task.
      - V(open) removes every rule of O(rule_group) and the auto-open task.
    type: str
    required: true
    choices: [closed, open]
  ports:
    description:
      - The TCP ports to block while closed.
      - Defaults to the product's web server HTTP and HTTPS ports and its configuration server port, as the
        settings files on the host name them (falling back to O(web_http_port), O(web_https_port) and
        O(config_server_port), and to the product's defaults; for Xtract Universal 8065, 8165 and 8064).
      - The WinRM ports 5985 and 5986, the SSH port 22 and the port the play connects to the host on are
        refused, since closing them would cut Ansible off from the host.
      - Must not be empty when O(state=closed). Not used when O(state=open).
    type: list
    elements: int
  allow_from:
    description:
      - Addresses that keep access while the gate is closed, for example the AWX execution nodes and monitoring.
      - Each is an IPv4 or IPv6 address, a network (V(10.0.0.0/8) or V(10.0.0.0/255.0.0.0)) or a range
        (V(10.0.0.5-10.0.0.9)).
      - They are only spared from the gate's block rule; they still need the allow rule that admits them
        normally (the one the product's installer creates).
      - A list that admits every IPv4 or every IPv6 address (V(0.0.0.0/0), or the two halves of a family) is refused,
        since the gate would be reported closed while that whole family still gets in.
      - Not used when O(state=open).
    type: list
    elements: str
    default: []
  auto_open_after:
    description:
      - Minutes after closing when the host reopens the gate by itself, through a one-shot scheduled task that
        runs as SYSTEM and removes the rules of O(rule_group). Fractions of a minute are allowed.
      - The host sets the deadline from its own clock (its now plus O(auto_open_after), to the whole second), so
        the gate stays closed for the whole of O(auto_open_after) whether the host's clock is ahead of the
        controller's or behind it. The module checks that the host's Task Scheduler reports that time as the
        task's next run.
      - V(0) registers no task (and removes an existing one), so the gate stays closed until it is opened.
      - From V(0) to V(10080) (7 days).
      - Not used when O(state=open).
    type: float
    default: 30
  rule_group:
    description:
      - The Windows Firewall rule group that holds the gate's rule. The block rule is named after it
        (C(<rule_group> block)), and so is the auto-open task (C(<rule_group> auto-open)).
      - 1 to 64 letters, digits, spaces, dots, underscores or hyphens.
    type: str
    default: xtractuniversal.tls gate
  hold:
    description:
      - A second rule group managed in the same remote call; ports held closed for every remote address, without a deadline
        and without exceptions. The gate's auto-open task leaves it alone, so a port held closed stays closed when the
        gate reopens by itself (the renew role holds the plain HTTP port while TLS is off).
      - The hold closes before the gate and opens after it.
      - Releasing the hold (O(hold.state=open)) is refused, with nothing changed, while a port it holds serves plain HTTP
        (TLS is off, and the hold is what keeps that from clients) or while a renewal holds the host with a live lease; this
        costs one more read of those ports.
    type: dict
    suboptions:
      state:
        description: Whether the hold's ports are closed or open after the task.
        type: str
        choices: [closed, open]
        required: true
      ports:
        description: The ports to hold closed; required with O(hold.state=closed).
        type: list
        elements: int
      rule_group:
        description: The hold's rule group; defaults to O(rule_group) followed by C( http).
        type: str
notes:
  - The gate filters connections from other hosts only; the server's own address is never filtered, so local
    health checks keep working.
  - The auto-open task removes the group's rules and then deletes itself. A start missed while the host was
    down happens as soon as it is up again.
  - The gate is judged on every Windows Firewall profile (Domain, Private, Public), since the host cannot tell which
    profile a client's connection arrives on, so one profile that is off or ignores local rules fails
    O(state=closed). Turn the profile on with C(Set-NetFirewallProfile -Profile Public -Enabled True); a group
    policy that sets AllowLocalFirewallRules to False must be changed where it is defined.
  - O(state=open) is not judged, since an open gate blocks nothing, in effect or not.
seealso:
  - module: xtractuniversal.tls.xu_tls_info
    description: Reports the gate's state among the server's TLS state.
author:
  - xtractuniversal.tls maintainers (@xtractuniversal)
"""

EXAMPLES = r"""
- name: Close the gate for the renewal; AWX and monitoring keep access, the host reopens it after an hour
  xtractuniversal.tls.xu_firewall_gate:
    state: closed
    allow_from:
      - 10.20.0.0/24
      - 10.30.4.17
      - fd00:20::/64
    auto_open_after: 60
  register: gate

- name: Show when the host reopens the gate by itself
  ansible.builtin.debug:
    msg: "Closed until {{ gate.auto_open.run_at }} for everyone but {{ gate.allow_from }}"

- name: Open the gate again
  xtractuniversal.tls.xu_firewall_gate:
    state: open

- name: Close only the web server's HTTPS port of a Board Connector server, with no automatic reopening
  xtractuniversal.tls.xu_firewall_gate:
    state: closed
    product: board_connector
    ports: [8197]
    auto_open_after: 0
"""

RETURN = r"""
busy:
  description:
    - True when another run holds the host with a live lease in its journal (a renewal is working on it, and a release
      of the HTTP hold by hand is refused then); nothing was changed.
  returned: on failure, when another run holds the host
  type: bool
owner:
  description: The run that holds the host, when RV(busy) (C(run_id), C(step), C(lease_expires)).
  returned: on failure, when another run holds the host
  type: dict
hold:
  description:
    - The hold's state, with the same keys as the gate's own (RV(state), RV(rules), RV(auto_open), RV(ports), ...)
      and C(rule_group).
  returned: when O(hold) is given
  type: dict
  sample: {"rule_group": "xtractuniversal.tls gate http", "state": "closed", "ports": [8065]}
state:
  description: The gate's state on the host, C(closed) while an enabled block rule of the group exists, else C(open).
  returned: always
  type: str
  sample: closed
rules:
  description: The rules of O(rule_group), as the host reports them (Windows writes IPv4 networks with a netmask).
  returned: always
  type: list
  elements: dict
  sample: [{"name": "xtractuniversal.tls gate block", "display_name": "Xtract Universal maintenance gate (xtractuniversal.tls)",
            "direction": "Inbound", "action": "Block", "enabled": true, "protocol": "TCP",
            "local_ports": ["8064", "8065", "8165"],
            "remote_addresses": ["0.0.0.0-10.19.255.255", "10.20.1.0-255.255.255.255", "::/0"]}]
auto_open:
  description:
    - The scheduled task that reopens the gate, or null when there is none.
    - C(run_at) is its next run time in UTC, on the host's clock; null once the deadline has passed.
    - In check mode, a task still to be registered has the controller's estimate of that time, from the host's
      clock as its answer reported it.
  returned: always
  type: dict
  sample: {"task": "xtractuniversal.tls gate auto-open", "run_at": "2026-11-26T21:41:57Z", "state": "Ready"}
ports:
  description: The ports the gate blocks; empty when O(state=open).
  returned: always
  type: list
  elements: int
  sample: [8064, 8065, 8165]
allow_from:
  description: The addresses spared from the block rule, as given; empty when O(state=open).
  returned: always
  type: list
  elements: str
  sample: ["10.20.0.0/24"]
blocked_remote_addresses:
  description: The remote addresses of the block rule, the complement of RV(allow_from); empty when O(state=open).
  returned: always
  type: list
  elements: str
  sample: ["0.0.0.0-10.19.255.255", "10.20.1.0-255.255.255.255", "::/0"]
profiles:
  description:
    - The host's Windows Firewall profiles as its active store reports them, with C(enabled) and
      C(local_rules_applied) (false while group policy sets AllowLocalFirewallRules to False).
    - Null when the host's answer does not report them.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "Domain", "enabled": true, "local_rules_applied": true},
           {"name": "Private", "enabled": true, "local_rules_applied": true},
           {"name": "Public", "enabled": true, "local_rules_applied": true}]
"""
