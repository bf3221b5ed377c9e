#!/usr/bin/python
# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# The module runs on the controller: see plugins/action/xu_tls_binding.py.

from __future__ import annotations

DOCUMENTATION = r"""
module: xu_tls_binding
short_description: Choose what an Xtract Universal server serves over TLS
version_added: 0.1.0
description:
  - Sets the web server's protocol (HTTP or one of the three HTTPS choices of the Designer's B(Web Server) tab),
    the web server's certificate and the configuration server's certificate of an Xtract Universal (or Board
    Connector, or yunIO) server, in C(config\servers\tls.json).
  - Reads the host in one remote call and judges everything on the controller before anything is changed.
    Every certificate the resulting settings use (and every certificate given) must be in C(LocalMachine\My),
    have a private key the service account can read, and be valid now. A certificate whose Subject Alternative
    Name does not cover O(fqdn), or that lacks the Server Authentication extended key usage, is warned about
    (or refused with O(strict_san=true)). The web server is never left on HTTPS without a certificate.
  - Applies in one more remote call. It grants the service account read access to private keys (with
    O(grant_key_access=true)), writes C(tls.json) atomically with a backup, restarts the service, waits until
    its ports answer, and checks the certificate each TLS port really presents. When the service does not come
    back, or serves the wrong certificate, the backup is restored and the service restarted once more (a third
    call), and the module fails with RV(rolled_back=true).
  - Options that are not given leave the setting as it is.
  - Nothing is changed when the read was incomplete (for example the certificate store could not be listed), or when
    the resulting settings hold a protocol or authentication value this collection does not know (what the service
    serves could then not be checked). Setting O(web_protocol) replaces an unknown protocol.
  - The module runs on the controller and reaches the host through its connection (C(winrm), or C(ssh) with the PowerShell
    shell; C(psrp) is untested). Certificates are parsed on the controller with C(cryptography).
extends_documentation_fragment:
  - xtractuniversal.tls.attributes
  - xtractuniversal.tls.product
  - xtractuniversal.tls.run
attributes:
  check_mode:
    support: full
    details: Reads the host and judges everything, then reports what would change; nothing is written or restarted.
  diff_mode:
    support: full
    details: Shows the old and new content of C(tls.json), in check mode too.
  idempotent:
    support: full
    details:
      - A second run with the same options changes nothing and reports C(changed=false).
      - With O(restart=always) the service is restarted on every run, which is reported as a change.
options:
  web_protocol:
    description:
      - The web server's protocol, as the Designer names the choices
        (C(HTTP - Unrestricted), C(HTTPS - Unrestricted), C(HTTPS - Restricted to AD users with Designer read access),
        C(HTTPS - Restricted to custom users with Designer read access)).
      - The three HTTPS choices need a web server certificate, given in O(web_certificate) or already in the settings.
      - Omitted, the protocol is left as it is.
    type: str
    choices: [http_unrestricted, https_unrestricted, https_ad_users, https_custom_users]
  web_certificate:
    description:
      - The thumbprint of the web server's certificate, which must be in C(LocalMachine\My).
      - Accepted as pasted from anywhere, for example from the certificate dialog of Windows (with its invisible
        left-to-right mark), with spaces or colons, in lower case.
      - With the web server on HTTP the certificate is stored for later, with a warning.
      - Omitted, the certificate is left as it is.
    type: str
  config_server_certificate:
    description:
      - The thumbprint of the configuration server's certificate, used when the Designer connects with
        "Custom credentials (TLS encryption)". Accepted in the same forms as O(web_certificate).
      - The module does not change the configuration server's authentication. When it is not
        "Custom credentials (TLS encryption)", the certificate is stored for later, with a warning.
      - Omitted, the certificate is left as it is.
    type: str
  restart:
    description:
      - When to restart the service so that it serves the new settings.
      - C(if_changed) restarts when this run changed something, or when the running service does not serve what
        its settings say (an earlier run with C(restart=never)), that is TLS on or off on a port, or another
        certificate than the configured one. How C(/version) answers is no reason to restart, since no setting controls it.
      - C(always) restarts on every run, also when nothing changed.
      - C(never) only writes the settings and returns RV(restart_required).
    type: str
    choices: [never, if_changed, always]
    default: if_changed
  wait_timeout:
    description:
      - How many seconds a restart may take until the service runs and its ports answer.
    type: int
    default: 120
  grant_key_access:
    description:
      - Give the service's account read access to the private key of a certificate the settings use, when it has none.
      - Without it, such a certificate is refused, since the service would not start with it.
    type: bool
    default: false
  strict_san:
    description:
      - Refuse, instead of warning about, a certificate whose Subject Alternative Name does not cover O(fqdn) or that
        lacks the Server Authentication extended key usage.
    type: bool
    default: false
  fqdn:
    description:
      - The host name clients use; the certificate's SAN must cover it.
      - Defaults to the host's own DNS name (host name and primary DNS suffix) as the host reports it.
      - When given, the probes of the host's ports also use it as TLS server name and HTTP C(Host) header. Otherwise
        the probes after a change use the DNS name the host reports (host name and domain), and the first read's
        probes C(localhost). A server that answers only to its DNS name (strict host name binding) is so reached.
      - A DNS name or an IPv4 address, checked before the host is contacted.
    type: str
requirements:
  - cryptography on the controller
  - pywinrm (and pyspnego for NTLM) on the controller for the C(winrm) connection
notes:
  - The layout of C(tls.json) is not documented by the vendor; O(settings_map) says where each setting lives.
    Missing objects along a path are created. When a certificate's thumbprint sits in an object that also names
    the store (C(StoreLocation), C(StoreName), as in the assumed layout), those are set to C(LocalMachine) and
    C(My). A C(Certificate) object the module creates for a path ending in C(Certificate.Thumbprint) (the
    assumed layout's certificate reference) gets them too.
  - Thumbprints are written as 40 upper-case hexadecimal digits. A thumbprint already in the settings in another
    form (for example in lower case) is left as it is.
  - The settings file is written only when its content changes, keeping its indentation and line ends. Every write is
    guarded by the hash of the content read, so a file changed in between is not overwritten.
  - Ports are probed from the host itself, so firewall rules do not hide them. When the settings name other ports
    than the product's defaults, reading costs a second remote call, avoided by setting O(web_http_port),
    O(web_https_port) and O(config_server_port).
  - Designer users may be asked to accept the new certificate after a change (certificate pinning).
seealso:
  - module: xtractuniversal.tls.xu_tls_info
author:
  - xtractuniversal.tls maintainers (@xtractuniversal)
"""

EXAMPLES = r"""
- name: Serve HTTPS with a certificate already in LocalMachine\My
  xtractuniversal.tls.xu_tls_binding:
    web_protocol: https_unrestricted
    web_certificate: "ad 3b 9b 0c 9f 6e 3f 1a 2b 3c 4d 5e 6f 70 81 92 a3 b4 ec e6"
    grant_key_access: true

- name: Use the same certificate for Designer connections (Custom credentials, TLS encryption)
  xtractuniversal.tls.xu_tls_binding:
    web_certificate: "{{ new_thumbprint }}"
    config_server_certificate: "{{ new_thumbprint }}"

- name: Turn TLS off, as the documented renewal with the same key does first
  xtractuniversal.tls.xu_tls_binding:
    web_protocol: http_unrestricted

- name: Change the settings now, restart in the maintenance window
  xtractuniversal.tls.xu_tls_binding:
    web_certificate: "{{ new_thumbprint }}"
    restart: never
  register: binding

- name: A version of XU that keeps the settings elsewhere in tls.json
  xtractuniversal.tls.xu_tls_binding:
    web_protocol: https_ad_users
    web_certificate: "{{ new_thumbprint }}"
    strict_san: true
    settings_map:
      web_protocol: Web.Mode
      web_certificate: Web.Tls.CertificateThumbprint
"""

RETURN = r"""
busy:
  description: True when another run holds the host with a live lease in its journal (a renewal is working on it); nothing was changed.
  returned: on failure, when another run holds the host
  type: bool
owner:
  description: The run that holds the host, when RV(busy) (C(run_id), C(step), C(lease_expires)).
  returned: on failure, when another run holds the host
  type: dict
web_protocol:
  description: The web server's protocol as now configured (in check mode, as it would be).
  returned: success
  type: str
  sample: https_unrestricted
web_certificate:
  description: The thumbprint of the web server's certificate as now configured, or null.
  returned: success
  type: str
  sample: AD3B9B0C9F6E3F1A2B3C4D5E6F708192A3B4ECE6
config_server_certificate:
  description: The thumbprint of the configuration server's certificate as now configured, or null.
  returned: success
  type: str
  sample: AD3B9B0C9F6E3F1A2B3C4D5E6F708192A3B4ECE6
config_server_authentication:
  description:
    - The configuration server's authentication, which the module reads but does not change.
    - One of C(windows_credentials), C(custom_credentials_kerberos), C(custom_credentials_tls), C(anonymous).
  returned: success
  type: str
  sample: custom_credentials_tls
backup_file:
  description: Where the previous C(tls.json) was kept, or null when nothing was written or there was nothing to keep.
  returned: success, and when a change was rolled back
  type: str
  sample: C:\Program Files\XtractUniversal\config\servers\tls.json.20261126T204206Z.bak
key_access_granted:
  description: The certificates whose private key the service account was given read access to (in check mode, would be).
  returned: success
  type: list
  elements: str
  sample: ["AD3B9B0C9F6E3F1A2B3C4D5E6F708192A3B4ECE6"]
restarted:
  description: Whether the service was restarted (in check mode, whether it would be).
  returned: success
  type: bool
restart_required:
  description: Whether the running service does not yet serve what its settings now say, because it was not restarted.
  returned: success
  type: bool
served:
  description:
    - What each answering port presents, probed from the host after the restart (or, without a restart, when the
      host was read). A TLS port shows the thumbprint of its certificate, a plain HTTP or TCP port shows null.
    - C(web_http) and C(web_https) are the web server's ports, C(config_server) the configuration server's.
  returned: success
  type: dict
  sample: {"web_https": "AD3B9B0C9F6E3F1A2B3C4D5E6F708192A3B4ECE6", "config_server": "AD3B9B0C9F6E3F1A2B3C4D5E6F708192A3B4ECE6"}
rolled_back:
  description:
    - False when the change took. When the module fails after changing the host, whether the backup was restored
      and the service serves its previous certificates again.
  returned: always
  type: bool
restored_files:
  description: The settings files a rollback put back.
  returned: when a change was rolled back
  type: list
  elements: str
rollback_problems:
  description: What went wrong during a rollback that did not complete.
  returned: when a rollback did not complete
  type: list
  elements: str
"""
