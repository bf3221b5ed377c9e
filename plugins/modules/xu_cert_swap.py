#!/usr/bin/python
# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# The module runs on the controller: see plugins/action/xu_cert_swap.py.

from __future__ import annotations

DOCUMENTATION = r"""
module: xu_cert_swap
short_description: Replace a certificate with another everywhere an Xtract Universal server references it
version_added: 0.1.0
description:
  - Replaces the certificate with thumbprint O(old_thumbprint) by a new one in every setting of an Xtract
    Universal (or Board Connector, or yunIO) server that references it, restarts the service, checks that
    its ports serve the new certificate, and rolls the settings back when they do not.
  - The Ansible form of the vendor's C(xu-le.ps1) (old thumbprint, new thumbprint), with the checks that
    script leaves out.
  - "The new certificate comes from exactly one of: O(new_thumbprint) (already in C(LocalMachine\\My)),
    a PFX (O(pfx_path) or O(pfx_content), imported into the machine key set), or O(renew_reusing_key)
    (C(certreq) renews the old certificate with the same key through AD Certificate Services)."
  - A PFX is opened and judged on the controller before anything is sent to the host (password, private
    key matching the certificate, validity window, chain with each issuer's signature up to a root in the PFX
    or in O(ca_path), Server Authentication extended key usage, and the host's name in the Subject
    Alternative Name).
  - Every JSON string value equal to the old thumbprint (compared after removing spaces, colons and
    invisible marks, ignoring case) is replaced, whatever the layout of the file. The new thumbprint is
    written in the case of the old value. Only those values change; the rest of each file keeps its
    formatting. Each file is written atomically, with a backup, and only if it is still what was read.
  - "Remote calls: one reads the host; one more changes it (import, key access, writes, restart and checks);
    one more removes the old certificate, only when O(remove_old) has one to remove, and only once the module
    has judged the change good. A rollback costs one more call (instead of the removal)."
  - Nothing is changed when the read was incomplete (for example the certificate store could not be listed), or
    when C(tls.json) holds a web server protocol or configuration server authentication this collection does not
    know, since what the service serves could then not be checked.
  - The module runs on the controller and reaches the host through its connection (C(winrm), or C(ssh) with the PowerShell
    shell; C(psrp) is untested). Secrets travel to the host only on the agent's standard input,
    and only over a connection that uses TLS or encrypts its messages (NTLM, Kerberos or CredSSP over HTTP, ssh).
    Over any other (WinRM Basic on plain HTTP) the module fails before sending the PFX and its password, with the
    host untouched, unless the variable C(xu_allow_unprotected_transport) is true for the host (then it sends them
    and warns). M(xtractuniversal.tls.xu_tls_info) reports each host's protection in its C(transport).
extends_documentation_fragment:
  - xtractuniversal.tls.attributes
  - xtractuniversal.tls.product
  - xtractuniversal.tls.run
attributes:
  check_mode:
    support: full
    details:
      - Reads the host, judges everything and reports the changes it would make, including the diff; nothing
        is imported, written, restarted or removed.
      - With O(renew_reusing_key), the new thumbprint is unknown until C(certreq) has run, so RV(new_thumbprint)
        and the new values of RV(references) are null and no diff is shown.
  diff_mode:
    support: full
    details: Shows each settings file before and after, in check mode too.
  idempotent:
    support: full
    details:
      - When no setting references the old certificate any more, one references the new certificate, and
        there is nothing else to do (import, key access, removal of the old certificate), the module reports
        no change. O(restart=always) restarts, and reports a change, every time.
options:
  old_thumbprint:
    description:
      - The thumbprint of the certificate to replace, in any form it is usually pasted in (lower case,
        spaces, colons, the invisible U+200E mark of the Windows certificate dialog).
      - Required unless O(update_references=false). Without it the module only installs the new certificate (a PFX
        or an AD CS enrolment) for a server that has none bound yet, for example before
        M(xtractuniversal.tls.xu_tls_binding) turns TLS on.
    type: str
  new_thumbprint:
    description:
      - The thumbprint of the new certificate, which must already be in C(LocalMachine\My) with its private key.
      - V(auto) adopts the best certificate already in C(LocalMachine\My), as win-acme or certificate
        auto-enrolment leave a renewed one there, bound to nothing. It must have its private key, be valid now, carry
        the Server Authentication EKU, name the host (O(fqdn), else the host's DNS name) in its SAN, expire later than
        the old certificate (when that is still in the store), and meet O(adopt_issuer) and O(adopt_min_days). Of
        those, the one that expires last is chosen. RV(adoption) says which, and why each other one was passed over.
        When none qualifies, nothing is changed; that is an error only when the old certificate is missing from the
        store or expired, since then the next restart fails.
      - Exactly one of O(new_thumbprint), O(pfx_path), O(pfx_content), O(renew_reusing_key=true) and O(enroll) is required.
    type: str
  enroll:
    description:
      - Enrol a new certificate with a new key from an AD Certificate Services template and swap to it. Unlike
        O(renew_reusing_key), this works for an expired certificate and for one that is missing from the store.
      - C(certreq) runs as the machine (a one-shot scheduled task as SYSTEM, removed again), whose network identity
        is the computer account, which the template must let enrol; in a WinRM network logon it would have no
        credentials for the CA. The new key is a machine key of O(enroll.key_provider), not exportable; with
        O(grant_key_access) the service account is granted Read on it.
      - Costs one remote call more than a certificate already in the store, since the new thumbprint is only known once
        C(certreq) has run. The old certificate stays in the store (so a failed swap is rolled back to it) unless
        O(remove_old). A run whose swap did not finish leaves the enrolled certificate in the store, unbound; the next
        run enrols again, or adopts it with O(new_thumbprint=auto).
      - A request the CA holds for a manager's approval fails the task (nothing else is changed) with the request id.
    type: dict
    suboptions:
      template:
        description: The template's name (its common name, for example C(WebServer)).
        type: str
        required: true
      ca_config:
        description:
          - The CA as C(host\CA name).
          - By default the module asks the host, as the machine, which enterprise CAs the forest publishes (one more remote
            call) and uses the one that publishes O(enroll.template). When several do, it fails naming them, and this
            option chooses. C(certreq) is never left to choose, since without a CA it asks on a desktop, and the SYSTEM task it
            runs in has none.
        type: str
      key_provider:
        description:
          - The provider that makes and keeps the new private key.
          - V(schannel_csp), the default, is the C(Microsoft RSA SChannel Cryptographic Provider) (a CryptoAPI CSP,
            provider type 12). .NET Framework's C(X509Certificate2.PrivateKey) returns its key, but null for a CNG
            key, and whether Xtract Universal reads its key that way is not known (see the collection's docs/assumptions.md).
          - V(software_ksp) is the C(Microsoft Software Key Storage Provider) (CNG), which Windows' own templates default to.
            Choose it once Xtract Universal is known to start with a CNG key.
        type: str
        choices: [schannel_csp, software_ksp]
        default: schannel_csp
      dns_names:
        description: The DNS names of the SAN; the first is also the subject's CN. By default O(fqdn), else the host's DNS name.
        type: list
        elements: str
      key_length:
        description: The RSA key's length.
        type: int
        choices: [2048, 3072, 4096]
        default: 2048
  adopt_issuer:
    description:
      - With O(new_thumbprint=auto), a regular expression the chosen certificate's issuer (as C(issuer) of RV(new_certificate) shows it,
        for example C(CN=R11, O=Let's Encrypt, C=US)) must match, searched case-insensitively.
    type: str
  adopt_min_days:
    description:
      - With O(new_thumbprint=auto), the fewest days the chosen certificate must still be valid (0 to 3650).
    type: int
    default: 0
  pfx_path:
    description:
      - A PFX (PKCS#12) file on the controller holding the new certificate and its private key.
      - A relative path is looked up like the C(src) of M(ansible.builtin.copy) (in the role's or play's
        C(files) folder first). A vault-encrypted file is decrypted.
      - The certificate is imported into C(LocalMachine\My), its key into the machine key set, unless it is
        there already. A copy in the store that is archived or has lost its key is repaired from the PFX.
      - A PFX encrypted with AES (PBES2, the default of OpenSSL 3), or with a MAC other than SHA-1, is re-encoded on the
        controller with 3DES and a SHA-1 MAC before it travels, because Windows Server 2016 cannot import AES-encrypted
        PFX files (it reports a wrong password) and predates the SHA-256 MAC. Certificates, key and friendly names stay
        the same. Such a PFX needs a password (O(pfx_password)).
    type: path
  pfx_content:
    description:
      - The PFX file itself, encoded as base64, for example from a vaulted variable. As O(pfx_path) otherwise.
      - Masked in every result, like O(pfx_password).
    type: str
  pfx_password:
    description:
      - The PFX's password. It is sent to the host only on the agent's standard input, and is masked in
        every result.
    type: str
  pfx_exportable:
    description:
      - Whether the imported private key may be exported again.
    type: bool
    default: false
  ca_path:
    description:
      - A PEM bundle on the controller with the CA certificates the PFX's chain must lead to. Found like
        O(pfx_path).
      - Without it, a chain that ends at a self-signed root inside the PFX is accepted, and a chain that stops
        short of a root is only warned about.
    type: path
  renew_reusing_key:
    description:
      - Renew the old certificate with the same key through AD Certificate Services
        (C(certreq -enroll -machine -q -cert <old> Renew ReuseKeys)) and swap to the renewed certificate.
        Its thumbprint is returned in RV(new_thumbprint).
      - C(certreq) runs as the machine (a one-shot scheduled task as SYSTEM, removed again), whose network
        identity is the computer account; in a WinRM network logon it would have no credentials for the CA.
      - This costs one remote call more than the other sources, since the new thumbprint is only known once
        C(certreq) has run. C(certreq) archives the old certificate, so it no longer enumerates and
        O(remove_old) has nothing to remove.
      - The renewal is recorded in a journal on the host (C(C:\ProgramData\xtractuniversal.tls)), so a later
        run recognises the renewed certificate by its key instead of renewing again.
      - V(false) names no certificate.
    type: bool
  remove_old:
    description:
      - Remove the old certificate from C(LocalMachine\My) after the swap succeeded.
      - The removal is a remote call of its own, made only after the module judged the restart good (the service
        runs, every port answers as the settings say and C(/version) answers). A failed swap is rolled back with
        the old certificate still in the store.
      - When the module restarts the service, the old certificate is removed only once each TLS port is
        seen presenting the new certificate, checked on the host again right before the removal.
        A removal that fails is only a warning, since the swap itself is done.
      - With O(restart=never) nothing can be checked; the old certificate is removed right after the settings
        were written. The running service keeps serving it until its next restart.
    type: bool
    default: false
  grant_key_access:
    description:
      - Grant the service account Read on the new certificate's private key when it cannot read it already
        (as after a PFX import, where only SYSTEM and Administrators can). Without that access the service
        cannot start with the certificate.
      - Without it, a key the service account cannot read is an error, found before anything is changed.
      - Access is judged as Windows checks it, by SID (the service account's and its groups'), never by name;
        Read is granted to the account's SID.
    type: bool
    default: false
  update_references:
    description:
      - With V(false) the module only makes the new certificate available (imported from the PFX, or renewed with
        O(renew_reusing_key)) and, with O(grant_key_access), readable by the service; it writes no settings, so nothing
        is restarted and the old certificate stays. The caller then binds RV(new_thumbprint), for example with
        M(xtractuniversal.tls.xu_tls_binding) (the renew role does so while TLS is off).
      - V(false) cannot be combined with O(remove_old=true).
    type: bool
    default: true
  allow_no_reference:
    description:
      - Go on when no setting references the old certificate (or the new one). By default that is an error,
        since it usually means a mistyped O(old_thumbprint) or settings kept in files the module does not read
        (see O(settings_files)).
    type: bool
    default: false
  allow_shorter:
    description:
      - Take a new certificate that expires before the one it replaces. By default such a certificate is refused (a
        PFX issued for another purpose, a stale copy), before anything is changed.
      - When allowed, the old certificate is never removed from the store (O(remove_old) is ignored for it), so the
        longer one stays at hand.
    type: bool
    default: false
  strict_san:
    description:
      - Fail when the new certificate does not name the host (O(fqdn)) in its Subject Alternative Name or lacks
        the Server Authentication extended key usage. By default these problems are warnings.
    type: bool
    default: false
  fqdn:
    description:
      - The host name clients use; the new certificate's SAN should cover it.
      - Defaults to the host's own DNS name as the host reports it. When given, a PFX is checked against it
        before the host is contacted.
      - When given, the probes of the host's ports also use it as TLS server name and HTTP C(Host) header. Otherwise
        the probes after a change use the DNS name the host reports (host name and domain), and the first read's
        probes C(localhost). A server that answers only to its DNS name (strict host name binding) is so reached.
      - A DNS name or an IPv4 address, checked before the host is contacted.
    type: str
  settings_files:
    description:
      - More JSON files, relative to the install dir, to replace references in, besides the product's own
        settings files (C(config\servers\tls.json) and the port settings). They are read in the same remote
        call. A listed file that does not exist is warned about.
    type: list
    elements: str
    default: []
  restart:
    description:
      - When to restart the service so that it loads the new certificate.
      - V(if_changed) restarts when a settings file changed; V(always) also restarts when nothing else changed;
        V(never) leaves the service running with the old certificate until its next restart.
      - After a restart, every port must answer with the certificate the settings name, or the settings are
        rolled back and the service is restarted again. When the old certificate is no longer in the store
        (for example win-acme deleted it), going back to it cannot work, so the settings stay on the new
        certificate and the failure is reported.
    type: str
    choices: [never, if_changed, always]
    default: if_changed
  wait_timeout:
    description:
      - Seconds to wait for the service to start and open its ports after a restart.
    type: int
    default: 120
requirements:
  - cryptography on the controller
  - pywinrm (and pyspnego for NTLM) on the controller for the C(winrm) connection
notes:
  - Only string values are replaced, never property names. Files that hold the thumbprint in other forms
    (for example Base64) are not changed.
  - A PFX imported in a run that then fails and rolls back stays in the store; the failure reports it as
    C(imported_thumbprint).
  - Designer users who pinned the old certificate (XU 4.28.8 and later) are asked to accept the new one.
  - Certificates referenced by other software (for example IIS bindings) are not looked for; mind that with
    O(remove_old).
seealso:
  - module: xtractuniversal.tls.xu_tls_info
author:
  - xtractuniversal.tls maintainers (@xtractuniversal)
"""

EXAMPLES = r"""
- name: Swap to a certificate win-acme put into the store (what xu-le.ps1 does)
  xtractuniversal.tls.xu_cert_swap:
    old_thumbprint: "{{ old_thumbprint }}"
    new_thumbprint: "{{ new_thumbprint }}"

- name: Import a PFX from the controller, swap to it and remove the old certificate once the new one is served
  xtractuniversal.tls.xu_cert_swap:
    old_thumbprint: "ad 3b 9b 0c 9f 6e 3f 1a 2b 3c 4d 5e 6f 70 81 92 a3 b4 ec e6"
    pfx_path: "{{ inventory_hostname }}.pfx"
    pfx_password: "{{ vault_pfx_password }}"
    grant_key_access: true
    ca_path: corporate-ca.pem
    strict_san: true
    remove_old: true
  register: swap

- name: Bind the certificate win-acme renewed (it is in the store, bound to nothing) and remove the old one
  xtractuniversal.tls.xu_cert_swap:
    old_thumbprint: "{{ xu.web_server.certificate_thumbprint }}"
    new_thumbprint: auto
    adopt_issuer: "O=Let's Encrypt"
    adopt_min_days: 30
    grant_key_access: true
    remove_old: true
  register: adopted

- name: Enrol a new certificate (new key) from the WebServer template and swap to it, for example after it expired
  xtractuniversal.tls.xu_cert_swap:
    old_thumbprint: "{{ xu.web_server.certificate_thumbprint }}"
    enroll:
      template: WebServer
      dns_names: ["{{ inventory_hostname }}", "xu.example.com"]
    grant_key_access: true
    remove_old: true

- name: Renew the bound certificate with the same key through AD CS
  xtractuniversal.tls.xu_cert_swap:
    old_thumbprint: "{{ xu.web_server.certificate_thumbprint }}"
    renew_reusing_key: true
  register: renewal

- name: Show the renewed certificate
  ansible.builtin.debug:
    var: renewal.new_thumbprint

- name: A Board Connector server that also keeps the thumbprint in an extra settings file
  xtractuniversal.tls.xu_cert_swap:
    product: board_connector
    old_thumbprint: "{{ old_thumbprint }}"
    new_thumbprint: "{{ new_thumbprint }}"
    settings_files:
      - config\servers\designer.json
"""

RETURN = r"""
adoption:
  description:
    - With O(new_thumbprint=auto), the certificate chosen (C(chosen), null when none qualifies) and every other
      certificate of C(LocalMachine\My) passed over, with the reason (C(passed_over), each with C(thumbprint),
      C(subject) and C(reason)).
  returned: with O(new_thumbprint=auto)
  type: dict
  sample:
    chosen: 5D0C4E1F2A3B4C5D6E7F8091A2B3C4D5E6F70819
    passed_over:
      - thumbprint: 0A1B2C3D4E5F60718293A4B5C6D7E8F901234567
        subject: CN=other.example.com
        reason: its SAN does not name xu01.example.com
busy:
  description: True when another run holds the host with a live lease in its journal (a renewal is working on it); nothing was changed.
  returned: on failure, when another run holds the host
  type: bool
owner:
  description: The run that holds the host, when RV(busy) (C(run_id), C(step), C(lease_expires)).
  returned: on failure, when another run holds the host
  type: dict
old_thumbprint:
  description: The old certificate's thumbprint, cleaned (40 upper-case hex digits).
  returned: always
  type: str
  sample: AD3B9B0C9F6E3F1A2B3C4D5E6F708192A3B4ECE6
new_thumbprint:
  description:
    - The new certificate's thumbprint. After O(renew_reusing_key), the renewed certificate's.
    - Null in check mode with O(renew_reusing_key) when the renewal is still to be done.
  returned: success
  type: str
  sample: 5D0C4E1F2A3B4C5D6E7F8091A2B3C4D5E6F70819
references:
  description: Each settings value that referenced the old certificate, with its file, its JSON path, and its value before and after.
  returned: success
  type: list
  elements: dict
  sample: [{"file": "C:\\Program Files\\XtractUniversal\\config\\servers\\tls.json", "path": "WebServer.Certificate.Thumbprint",
            "old_value": "AD3B9B0C9F6E3F1A2B3C4D5E6F708192A3B4ECE6", "new_value": "5D0C4E1F2A3B4C5D6E7F8091A2B3C4D5E6F70819"}]
backup_files:
  description: Each changed settings file and its backup.
  returned: success
  type: dict
  sample: {"C:\\Program Files\\XtractUniversal\\config\\servers\\tls.json":
           "C:\\Program Files\\XtractUniversal\\config\\servers\\tls.json.20261126T201157Z.bak"}
imported:
  description:
    - Whether the PFX was imported (false when the certificate was in the store already, with its key).
    - True also when the store held the certificate archived or without its private key and the import repaired it.
  returned: success
  type: bool
key_access_granted:
  description: Whether the service account was granted Read on the new certificate's private key.
  returned: success
  type: bool
removed_old:
  description:
    - Whether the old certificate was removed from C(LocalMachine\My).
    - False, with a warning, when the removal (a remote call after the swap was judged good) failed or was not answered.
  returned: success
  type: bool
enrolled:
  description: Whether C(certreq) enrolled a new certificate in this run (in check mode, whether it would).
  returned: with O(enroll)
  type: bool
renewed:
  description: Whether C(certreq) renewed the old certificate in this run (false when an earlier run had renewed it).
  returned: with O(renew_reusing_key)
  type: bool
restarted:
  description: Whether the service was restarted.
  returned: always
  type: bool
served:
  description: What each port served after the restart, probed from the host itself; empty without a restart.
  returned: always
  type: dict
  sample: {"web_https": {"port": 8165, "tls": true, "answering": true, "thumbprint": "5D0C4E1F2A3B4C5D6E7F8091A2B3C4D5E6F70819",
                         "http_status": 200, "error": null}}
rolled_back:
  description: Whether a failed change was rolled back, the service restarted and seen serving its previous certificates again.
  returned: always
  type: bool
imported_thumbprint:
  description: On a failure after the PFX was imported, the imported certificate, which stays in the store.
  returned: failure after a PFX import
  type: str
new_certificate:
  description:
    - Details of the new certificate (as in M(xtractuniversal.tls.xu_tls_info)); for a PFX also its C(chain)
      and C(chain_trusted_by) (C(pfx), C(ca_path) or null).
  returned: when the new certificate is known before the change
  type: dict
diff:
  description: Each changed settings file before and after, with C(--diff).
  returned: with C(--diff) when settings change
  type: list
  elements: dict
"""
