#!/usr/bin/python
# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# The module runs on the controller: see plugins/action/xu_tls_verify.py.

from __future__ import annotations

DOCUMENTATION = r"""
module: xu_tls_verify
short_description: Check from the controller that an Xtract Universal server presents a trusted certificate
version_added: 0.1.0
description:
  - Connects from the controller to the server's web server HTTPS port (and, when given, its configuration server
    port), validates the certificate each presents against a CA bundle and the name clients use, and asks the web
    server for C(GET /version).
  - This is the client's view of a server, as a browser or the Designer on another machine sees it, in addition
    to what M(xtractuniversal.tls.xu_tls_info) probes from the host itself. The C(xtractuniversal.tls.renew) role
    runs it after a renewal when C(xu_renew_ca_path) is set.
  - The module makes no remote call through the host's connection and changes nothing. It fails when a port does
    not answer, presents a certificate that does not chain to O(ca_path) or does not name O(fqdn), presents another
    certificate than O(expected_thumbprint), or when C(/version) does not answer 200.
  - Firewall rules apply, so the controller must be allowed to reach the ports (see
    M(xtractuniversal.tls.xu_firewall_gate)'s O(xtractuniversal.tls.xu_firewall_gate#module:allow_from)).
extends_documentation_fragment:
  - xtractuniversal.tls.attributes
  - xtractuniversal.tls.attributes.info_module
attributes:
  action:
    details: The module runs on the controller only and opens TCP connections to the server from there.
options:
  ca_path:
    description:
      - A PEM bundle on the controller with the CA certificates clients trust. A relative path is looked up like
        the C(src) of M(ansible.builtin.copy) (in the role's or play's C(files) folder first).
    type: path
    required: true
  fqdn:
    description:
      - The host name clients use. It is sent as the TLS server name, and the certificate must be valid for it.
      - Defaults to the inventory name of the host.
    type: str
  address:
    description:
      - The address to connect to. Defaults to the host's C(ansible_host), else its inventory name.
    type: str
  web_https_port:
    description:
      - The web server's HTTPS port.
    type: int
    default: 8165
  config_server_port:
    description:
      - The configuration server's port, checked with a TLS handshake when given (when the Designer connects with
        C(Custom credentials (TLS encryption))).
    type: int
  expected_thumbprint:
    description:
      - The thumbprint every checked port must present, in any usual form (lower case, spaces, colons).
    type: str
  http_path:
    description:
      - The path requested from the web server over HTTPS; it must answer 200.
    type: str
    default: /version
  timeout:
    description:
      - Seconds to wait for each connection and answer.
    type: float
    default: 10
author:
  - xtractuniversal.tls maintainers (@xtractuniversal)
"""

EXAMPLES = r"""
- name: Check what clients see, against the corporate CA
  xtractuniversal.tls.xu_tls_verify:
    ca_path: corporate-ca.pem
    fqdn: xu01.example.com
    config_server_port: 8064
    expected_thumbprint: "{{ swap.new_thumbprint }}"
"""

RETURN = r"""
ports:
  description: Each checked port, with the certificate it presents and what the check found.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "web_https", "port": 8165, "thumbprint": "5D0C4E1F2A3B4C5D6E7F8091A2B3C4D5E6F70819",
            "not_after": "2027-11-26T20:11:57Z", "trusted": true, "error": null, "http_status": 200}]
problems:
  description: Everything that failed, in words; empty on success.
  returned: always
  type: list
  elements: str
"""
