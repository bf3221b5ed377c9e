#!/usr/bin/python
# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# The module runs on the controller: see plugins/action/xu_tls_info.py.

from __future__ import annotations

DOCUMENTATION = r"""
module: xu_tls_info
short_description: Report the TLS state of an Xtract Universal server
version_added: 0.1.0
description:
  - Reads, in one remote call, everything that decides whether an Xtract Universal (or Board Connector,
    or yunIO) server serves TLS properly, and judges it on the controller.
  - Reports the product and its version, the service, the web server and configuration server settings,
    every bound certificate with its details (validity, days left, SAN, Server Authentication EKU,
    private key and whether the service account can read it, whether it is still in the store), every
    thumbprint reference in the settings files with its file and JSON path, the certificate each port
    really serves, the state of the maintenance gate, and a list of problems.
  - Problems are also returned as warnings. The module never changes anything.
  - The module runs on the controller and reaches the host through its connection (C(winrm), or C(ssh) with the PowerShell
    shell; C(psrp) is untested). Certificates are parsed on the controller with C(cryptography).
extends_documentation_fragment:
  - xtractuniversal.tls.attributes
  - xtractuniversal.tls.attributes.info_module
  - xtractuniversal.tls.product
options:
  fqdn:
    description:
      - The host name clients use; the certificate's SAN must cover it.
      - Defaults to the host's own DNS name (host name and primary DNS suffix) as the host reports it.
      - When given, the probes of the host's ports also use it as TLS server name and HTTP C(Host) header (otherwise C(localhost)).
      - A DNS name or an IPv4 address, checked before the host is contacted.
    type: str
  gate_rule_group:
    description:
      - The Windows Firewall rule group of the maintenance gate (see M(xtractuniversal.tls.xu_firewall_gate)),
        reported in RV(gate).
    type: str
    default: xtractuniversal.tls gate
  journal_name:
    description:
      - The journal of the C(xtractuniversal.tls.renew) role (see M(xtractuniversal.tls.xu_journal)). A journal
        left on the host means a renewal was interrupted; it is returned in RV(journal) and reported as a problem.
    type: str
    default: renew
  run_id:
    description:
      - The run this read is a step of. Its own journal (the one whose C(run_id) is this) is returned in RV(journal) but
        not reported as an interrupted run's.
    type: str
  expiry_warning_days:
    description:
      - Report a problem when a bound certificate expires in fewer days than this.
    type: int
    default: 30
requirements:
  - cryptography on the controller
  - pywinrm (and pyspnego for NTLM) on the controller for the C(winrm) connection
notes:
  - The layout of C(tls.json) and the service key name are not documented by the vendor. What the module
    assumed is returned in RV(assumptions); RV(thumbprint_references) shows the real layout of your files.
  - Ports are probed from the host itself, so the maintenance gate does not hide them.
author:
  - xtractuniversal.tls maintainers (@xtractuniversal)
"""

EXAMPLES = r"""
- name: Report the TLS state of every XU server
  xtractuniversal.tls.xu_tls_info:
  register: xu

- name: Show what needs attention
  ansible.builtin.debug:
    msg: "{{ xu.web_server.certificate.thumbprint | default('none') }} {{ xu.problems }}"

- name: Fail when a certificate expires within two weeks
  ansible.builtin.assert:
    that: xu.web_server.certificate.days_left >= 14
  when: xu.web_server.tls

- name: A Board Connector server with a non-default install dir
  xtractuniversal.tls.xu_tls_info:
    product: board_connector
    install_dir: D:\BOARDConnector
"""

RETURN = r"""
installed:
  description: Whether the product's service and install dir were found.
  returned: always
  type: bool
product:
  description: The product profile used and the installed version (from C(config\version.txt)).
  returned: always
  type: dict
  sample: {"name": "xtract_universal", "title": "Xtract Universal", "version": "6.8.1.2"}
fqdn:
  description: The host name certificates were checked against.
  returned: always
  type: str
  sample: xu01.example.com
install_dir:
  description: The install dir found on the host.
  returned: always
  type: str
service:
  description: The product's Windows service, or null when not found.
  returned: always
  type: dict
  sample: {"name": "XtractUniversal Service", "display_name": "Xtract Universal", "state": "Running",
           "start_mode": "Auto", "account": "NT Service\\XtractUniversal Service"}
settings_files:
  description: The settings files read, with whether they exist and their SHA-256.
  returned: always
  type: list
  elements: dict
assumptions:
  description: The assumptions the module made about undocumented product details.
  returned: always
  type: dict
  contains:
    settings_map:
      description: Where in C(tls.json) each setting was looked for.
      type: dict
    service_lookup:
      description: How the service was found (by C(display_name) or by C(name)).
      type: dict
    install_dir:
      description: How the install dir was found (C(given) or from the service executable's folder).
      type: str
web_server:
  description: The web server's TLS configuration, from the settings files.
  returned: when the settings files could be read
  type: dict
  contains:
    protocol:
      description: One of C(http_unrestricted), C(https_unrestricted), C(https_ad_users), C(https_custom_users), or null when unknown.
      type: str
    protocol_setting:
      description: The raw value found in C(tls.json).
      type: raw
    tls:
      description: Whether the web server uses HTTPS.
      type: bool
    http_port:
      description: The HTTP port.
      type: int
    https_port:
      description: The HTTPS port.
      type: int
    certificate_thumbprint:
      description: The configured certificate's thumbprint.
      type: str
    certificate:
      description:
        - Details of the configured certificate, or null when TLS is off. C(in_store) is false for a
          certificate missing from C(LocalMachine\My); its details then come from what the port serves, if anything.
      type: dict
      sample: {"thumbprint": "AD3B9B0C9F6E3F1A2B3C4D5E6F708192A3B4ECE6", "subject": "CN=xu01.example.com",
               "issuer": "CN=Example CA", "serial_number": "1A2B", "not_before": "2026-01-01T00:00:00Z",
               "not_after": "2027-01-01T00:00:00Z", "days_left": 36, "expired": false, "not_yet_valid": false,
               "dns_names": ["xu01.example.com"], "san_covers_fqdn": true, "server_auth": true,
               "key_type": "RSA 2048", "self_signed": false, "in_store": true, "has_private_key": true,
               "key_readable_by_service": true, "friendly_name": ""}
config_server:
  description: The configuration server's (Designer connection's) TLS configuration.
  returned: when the settings files could be read
  type: dict
  contains:
    authentication:
      description: One of C(windows_credentials), C(custom_credentials_kerberos), C(custom_credentials_tls), C(anonymous).
      type: str
    authentication_setting:
      description: The raw value found in C(tls.json).
      type: raw
    tls:
      description: Whether the configuration server uses TLS (C(custom_credentials_tls)).
      type: bool
    port:
      description: The configuration server's port.
      type: int
    certificate_thumbprint:
      description: The configured certificate's thumbprint.
      type: str
    certificate:
      description: Details of the configured certificate, as for RV(web_server.certificate).
      type: dict
served:
  description: What each of the product's ports really answers, probed from the host itself.
  returned: always
  type: dict
  sample: {"web_http": {"port": 8065, "tls": false, "answering": false, "thumbprint": null, "http_status": null, "error": "refused"},
           "web_https": {"port": 8165, "tls": true, "answering": true, "thumbprint": "AD3B9B0C9F6E3F1A2B3C4D5E6F708192A3B4ECE6",
                         "http_status": 200, "error": null}}
thumbprint_references:
  description: Every string in the JSON settings files that is a certificate thumbprint, with its file and JSON path.
  returned: always
  type: list
  elements: dict
  sample: [{"file": "C:\\Program Files\\XtractUniversal\\config\\servers\\tls.json", "path": "WebServer.Certificate.Thumbprint",
            "value": "ad3b9b0c9f6e3f1a2b3c4d5e6f708192a3b4ece6", "thumbprint": "AD3B9B0C9F6E3F1A2B3C4D5E6F708192A3B4ECE6"}]
store_certificates:
  description:
    - Every certificate in C(LocalMachine\My), newest expiry first, in brief. C(thumbprint), C(subject), C(issuer),
      C(dns_names) (the SAN's DNS names), C(not_before), C(not_after), C(days_left), C(san_covers_fqdn), C(server_auth),
      C(has_private_key), C(key_readable_by_service).
    - What M(xtractuniversal.tls.xu_cert_swap) with O(xtractuniversal.tls.xu_cert_swap#module:new_thumbprint=auto) judges
      a certificate by is all here, so a plan made from this report picks the certificate the module would.
  returned: always
  type: list
  elements: dict
gate:
  description:
    - The maintenance gate (firewall rule group) and its scheduled auto-open task.
    - C(hold) is the state (C(open) or C(closed)) of the gate's hold, the group C(<gate_rule_group> http) that keeps
      ports closed for everyone without a deadline (the renew role holds the plain HTTP port while TLS is off).
  returned: always
  type: dict
  sample: {"state": "open", "rules": [], "auto_open": null, "hold": "open"}
host_clock:
  description:
    - The host's clock against the controller's, measured from the host's own time in the agent's answer (see
      docs/agent-protocol.md, I(The host's clock)).
    - C(now) is the host's time at the read (ISO 8601 UTC with milliseconds), C(offset_s) how far its clock is
      ahead of the controller's in seconds (negative when behind), C(uncertainty_s) how far that estimate may be off
      either way (half the part of the call's round trip the agent did not run; 1 to 3 s on a real server).
      All three are null when the host's answer did not say its time.
    - A host whose clock is off by more than 5 minutes (300 s beyond C(uncertainty_s)) is reported in RV(problems),
      since Kerberos refuses a skew above 5 minutes by default, so the host's Kerberos logons and its enrolment at a CA fail.
    - The collection's own deadlines do not depend on it; the gate's auto-open task is set from the host's clock,
      and a run's lease (RV(journal)'s C(lease_expires)) is a time on the host's clock, judged by this offset.
  returned: always
  type: dict
  sample: {"now": "2026-11-26T20:13:57.412Z", "offset_s": 120.184, "uncertainty_s": 0.9}
journal:
  description: The content of the journal named by O(journal_name), or null when there is none.
  returned: always
  type: dict
  sample: {"step": "tls_off", "old_thumbprint": "AD3B9B0C9F6E3F1A2B3C4D5E6F708192A3B4ECE6"}
journal_error:
  description: Why the journal could not be read (then RV(journal) is null but unknown, not absent), else null.
  returned: always
  type: str
read_errors:
  description:
    - Each other read of the host that failed (the certificate store, the gate's rules or task, the hold), naming
      the operation, the error's type and its message. What it should have told is unknown, not empty; the renew
      role changes nothing on such a host.
  returned: always
  type: list
  elements: str
  sample: []
transport:
  description:
    - What protects the host's connection, decided on the controller from the connection plugin's resolved options
      (for C(winrm) and C(psrp) by the rules of ansible-core's plugins, pywinrm and pypsrp), without contacting the host.
    - C(plugin) (C(winrm), C(psrp), C(ssh), or another plugin's name), C(scheme) (C(http) or C(https); C(ssh)), C(port),
      C(auth) (the WinRM transports Ansible tries, in order, or the PSRP auth protocol), C(message_encryption)
      (C(auto), C(always), C(never)), C(encrypted_by) (C(tls), C(message_encryption) for NTLM, Kerberos or CredSSP over
      HTTP, C(ssh); empty when nothing encrypts), C(protected) (C(encrypted_by) is not empty), C(unprotected_allowed)
      (the play sets C(xu_allow_unprotected_transport)), and C(summary), the settings in words.
    - Over a connection that is not C(protected) the collection's modules refuse to send a PFX and its password
      (M(xtractuniversal.tls.xu_cert_swap), the renew role's C(replace) mode and C(enable_tls)) unless the play sets the
      variable C(xu_allow_unprotected_transport) to true. This is not one of RV(problems).
  returned: always
  type: dict
  sample: {"plugin": "winrm", "scheme": "http", "port": 5985, "auth": "ntlm", "message_encryption": "auto",
           "encrypted_by": ["message_encryption"], "protected": true, "unprotected_allowed": false,
           "summary": "winrm over http, port 5985, transport ntlm, message encryption auto"}
problems:
  description:
    - Everything that needs attention, in words. Also returned as warnings.
    - Among them each operation of the read that failed (the changing modules refuse to work from such a read),
      and each port that serves other than the settings say (TLS on or off, another certificate), a restart pending.
  returned: always
  type: list
  elements: str
"""
