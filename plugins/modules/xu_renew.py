#!/usr/bin/python
# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# The module runs on the controller: see plugins/action/xu_renew.py.

from __future__ import annotations

DOCUMENTATION = r"""
module: xu_renew
short_description: Renew the TLS certificate of one Xtract Universal server, step by step, from one task
version_added: 0.2.0
description:
  - The engine of the C(xtractuniversal.tls.renew) role; use the role (or the C(xtractuniversal.tls.renew) playbook),
    which runs it over a fleet with a canary, batches and a fleet summary. The module is public so that its steps
    and results are documented.
  - With O(phase=assess) the module reads the server once and decides what a renewal does on it (renew, finish an
    interrupted run, nothing, or why it cannot), and lists the steps it would go through. Nothing is changed.
  - With O(phase=act) the module goes through those steps in the vendor's order, as M(xtractuniversal.tls.xu_cert_swap),
    M(xtractuniversal.tls.xu_tls_binding) and M(xtractuniversal.tls.xu_firewall_gate) would, each step one remote call
    (the verification none, as it judges what the last call saw). C(reuse_key) with the C(documented) strategy closes the
    gate, turns TLS off, renews the certificate with its key through AD CS, turns TLS on with it, verifies and opens the
    gate; the other modes install the new certificate, reference it, restart once, verify and remove the old one.
  - C(acme) orders the new certificate from an ACME CA on the controller first (DNS-01 through the zone's DNS server;
    the key is made on the controller and travels to the host only inside the PFX, on the agent's standard input).
    Where the CA offers renewal information (RFC 9773) about the served certificate, it decides whether the host is due.
  - The run keeps a journal on the host, written before the first change and in every call that changes the host after
    it. It is the run's lease; another run leaves the host alone while it is live, and a call whose journal another run
    has rewritten since changes nothing. A failed step is rolled back from the journal's backups (or completed, when the
    previous certificate can no longer be served), verified, and the gate opened; an interrupted run's journal is
    completed or rolled back by the next run once its lease has expired.
  - The result lists every step with its start, duration, remote calls and outcome; each change is also in the host's
    Application event log.
  - C(become) is ignored; the module runs on the controller and its remote calls use the connection's own account.
extends_documentation_fragment:
  - xtractuniversal.tls.attributes
attributes:
  check_mode:
    support: full
    details: With O(phase=act) in check mode the result lists the steps the host would go through, and nothing is changed.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: A server whose certificate is not due is left alone; a second run after a renewal finds it not due.
options:
  phase:
    description:
      - V(assess) reads and decides; V(act) renews (finishing an interrupted run first).
    type: str
    choices: [assess, act]
    default: act
  options:
    description:
      - The role's variables (C(xu_renew_mode), C(xu_renew_strategy), ...) by name, as C(ansible-doc -t role
        xtractuniversal.tls.renew) documents them; each is given its documented type and default, and an empty value
        (an AWX survey's empty answer) means the default.
      - The two secrets are options of their own, O(pfx_content) and O(pfx_password).
    type: dict
    required: true
  pfx_content:
    description:
      - The new certificate as a base64 PFX (C(xu_renew_pfx_content)); never logged.
    type: str
  pfx_password:
    description:
      - The PFX's password (C(xu_renew_pfx_password)); never logged.
    type: str
  acme:
    description:
      - With C(xu_renew_mode=acme), the role's C(xu_renew_acme_*) variables by name (the CA, the account key, the DNS
        server and its TSIG key, C(xu_renew_acme_names)); see the role's documentation and C(docs/acme.md).
      - Its secrets (the account key and its passphrase, the EAB MAC key, the TSIG secret, the DNS provider's options)
        are masked in the result, as is the ordered PFX's one-time password.
    type: dict
  assessment:
    description:
      - The result of O(phase=assess) for this host in this run. The act phase then decides from the snapshot that
        read took, without a remote call of its own (a snapshot older than 15 minutes is read again).
      - Omitted, the act phase reads the host first.
    type: dict
  run_id:
    description:
      - The run this task belongs to, shared by every host of a run; it is the lease's owner in the journal and is named
        in every event log entry. The role passes C(xu_renew_run_id), the AWX job id (C(awx-<id>)) or one id drawn for
        the run. Omitted, the task draws one.
    type: str
  halt:
    description:
      - Why this host must not be attempted (the earlier batches failed more than allowed). The act phase then changes
        nothing and reports the host C(not_attempted) with this reason.
    type: str
author:
  - xtractuniversal.tls maintainers (@xtractuniversal)
"""

EXAMPLES = r"""
- name: Read every server and decide
  xtractuniversal.tls.xu_renew:
    phase: assess
    options:
      xu_renew_mode: reuse_key
  register: assessed

- name: Renew the servers that are due, with the vendor's documented steps
  xtractuniversal.tls.xu_renew:
    phase: act
    options:
      xu_renew_mode: reuse_key
      xu_renew_strategy: documented
      xu_renew_gate_allow_from: [10.0.5.0/24]
    assessment: "{{ assessed }}"
    run_id: "{{ assessed.run_id }}"
  when: assessed.action in ['renew', 'resume']
"""

RETURN = r"""
action:
  description: What the run does on the host, as the assessment decided it.
  returned: phase=assess
  type: str
  choices: [renew, resume, none, blocked, busy, unreachable, unreadable]
  sample: renew
plan:
  description: The assessment's decision in full (the reason, the old certificate, where the new one comes from, ...).
  returned: phase=assess
  type: dict
  sample: {"action": "renew", "reason": "the web server certificate 7BE9... expires in 9 days", "mode": "replace"}
steps:
  description:
    - The steps, in order. After O(phase=assess) and in check mode, those the host would go through (C(step), C(says)).
    - After O(phase=act), those it went through, each with C(started), C(duration_s), C(calls) (remote calls), C(outcome)
      (C(ok), C(failed), C(unreachable), C(busy)) and C(detail) (what failed, or what a recovery did).
  returned: always
  type: list
  elements: dict
  sample: [{"step": "install", "started": "2026-12-07T10:00:01Z", "duration_s": 2.1, "calls": 1, "outcome": "ok", "detail": null}]
state:
  description: The snapshot of the host the assessment read, for O(assessment) of the act phase.
  returned: phase=assess
  type: dict
run_id:
  description: The run's id.
  returned: phase=assess
  type: str
  sample: awx-4711
summary:
  description:
    - "The host's summary: C(result) (C(renewed), C(not_due), C(failed), C(blocked), C(busy), C(skipped), C(unreachable),
      C(not_attempted), C(completed), C(rolled_back), C(tls_enabled), C(would_renew), ...), C(reason), C(mode),
      C(strategy), C(old_thumbprint), C(new_thumbprint), C(new_expiry), C(days_left), C(outage_s), C(resumed),
      C(failed_step), C(restored), C(host)."
  returned: after phase=act, and after phase=assess for a host with nothing to do
  type: dict
  sample: {"result": "renewed", "old_thumbprint": "7BE9DCCA9AA3004DFC055CF28BDADA3B17A0830F", "outage_s": 1.2}
acme:
  description:
    - With C(xu_renew_mode=acme). C(assessment) is the CA's word on the served certificate (C(names) to order,
      C(left_out) names no CA issues, C(cert_id), C(ari) the renewal window, C(due), C(reason)).
    - After O(phase=act), C(order) is what the CA issued (C(names), C(order), C(replaces), C(serial_number),
      C(not_after), C(issuer), C(challenge_records), C(seconds) per phase), null when nothing was ordered.
    - In check mode, C(dry_run) is what was proven without ordering (the account, the names, the zones, the DNS
      credentials).
  returned: with xu_renew_mode=acme
  type: dict
  sample: {"assessment": {"names": ["xu01.example.com"], "due": true, "reason": "the CA's renewal window is over: renew now"}, "order": null}
"""
