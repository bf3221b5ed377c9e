"""Test-only bridge: the ACME issuance the renewal engine will run in its act phase, handed to today's role.

Until the engine calls ``plugins/plugin_utils/acme/issue.py`` itself (``xu_renew_mode: acme``), the tests run it in
this action, per host, in Ansible's worker process, and give the role the PFX through ``xu_renew_pfx_content``. The
result carries the PFX and its one-time password, so it is always censored (``_ansible_no_log``); ``acme`` repeats
what may be shown. Not shipped: the collection's build ignores nothing here, but no playbook names this action.
"""

from __future__ import annotations

import base64
import datetime
import socket
import ssl
from typing import Any

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from cryptography import x509

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils._errors import XuError
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.acme import client, issue
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.acme.settings import settings_from_vars

display = Display()


def served_certificate(address: str, port: int) -> x509.Certificate | None:
    """The certificate the host's web server presents now (what its clients see), None when it presents none."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((address, port), timeout=10) as raw, context.wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
    except OSError:
        return None
    return x509.load_der_x509_certificate(der) if der else None


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        variables = task_vars or {}
        host = str(variables.get("inventory_hostname"))
        try:
            settings = settings_from_vars({k: self._templar.template(v) for k, v in variables.items() if k.startswith("xu_renew_acme_")})
            fqdn = str(self._templar.template(variables.get("xu_renew_fqdn") or variables.get("xu_fqdn") or host))
            served = served_certificate(str(variables.get("ansible_host", host)), int(self._task.args.get("port", 8165)))
            request = issue.HostRequest(host, fqdn, tuple(self._task.args.get("names") or ()), served)
            if self._task.check_mode:
                result.update(dry_run=issue.dry_run(settings, request, log=lambda m: display.vv(m, host=host)), changed=False)
                return result
            session = client.open_session(settings, check_mode=False)
            now = datetime.datetime.now(datetime.timezone.utc)
            assessment = issue.assess_host(settings, request, session, now)
            if assessment.verdict is not None:
                due, reason = assessment.verdict.due, assessment.verdict.reason
            else:  # the role's own rule, which the engine applies where the CA gives no renewal information
                assert served is not None
                left = (served.not_valid_after_utc - now).total_seconds() / 86400
                due = left < float(self._templar.template(variables.get("xu_renew_before_days", 30)))
                reason = f"{assessment.note}; {left:.1f} days left"
            result.update(issued=False, assessment=assessment.to_result() | {"due": due, "reason": reason})
            if due:
                outcome = issue.issue_for_host(settings, request, session=session, replaces=assessment.cert_id, log=lambda m: display.vv(m, host=host))
                result.update(
                    issued=True,
                    changed=True,
                    acme=outcome.to_result(),
                    pfx_content=base64.b64encode(outcome.pfx.content).decode("ascii"),
                    pfx_password=outcome.pfx.password.reveal(),
                )
        except XuError as e:
            result.update(failed=True, msg=e.msg, **{k: v for k, v in e.fields.items() if k.startswith("acme_")})
        result["_ansible_no_log"] = True
        return result
