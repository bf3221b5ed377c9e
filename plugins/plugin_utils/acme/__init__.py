# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Central ACME issuance on the controller: no ACME client on any server. Private to this collection.

The renewal engine calls ``issue.issue_for_host`` (and ``issue.assess_host`` / ``issue.dry_run``) in its own
process; the certificate's private key lives only there, in memory, and leaves it only inside a PFX on the
agent's standard input. ``docs/acme.md`` describes the flow, the options and what was tried against which CA.
"""
