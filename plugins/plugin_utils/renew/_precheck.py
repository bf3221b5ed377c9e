# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The renew role's judgement of a host's new PFX before anything is written. Private to this collection.

A dry run (``--check``) and the assessment must refuse what the real run would refuse: a wrong
or missing password, a key that does not match, a certificate that is not valid now, a chain that
does not lead to ``ca_path``, a certificate for another host or without Server Authentication.
The PFX is judged by the very function ``xu_cert_swap`` runs (``parse_request``), with the
module's own defaults, on the controller and without a remote call; messages name the role's
variables, not the module's options.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from functools import cache
from typing import Any

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._certificate import iso, parse_iso
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._pfx import eku_problem, san_problem
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._action_base import argument_spec_from_options, module_documentation
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import XuError
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._cert_swap import ControllerFiles, parse_request

# Module options as the role's variables spell them, for messages a role user reads.
ROLE_VARIABLES = {
    option: f"xu_renew_{option}"
    for option in (
        "pfx_password", "pfx_path", "pfx_content", "ca_path", "strict_san", "new_thumbprint", "fqdn", "wait_timeout", "remove_old", "allow_shorter",
    )
}
_OPTION_WORD = re.compile(r"(?<![\w.])(" + "|".join(ROLE_VARIABLES) + r")(?![\w])")


def role_wording(message: str) -> str:
    """``message`` with each module option that has a role variable named as that variable."""
    return _OPTION_WORD.sub(lambda match: ROLE_VARIABLES[match.group(1)], message)


@cache
def _swap_spec() -> dict[str, Any]:
    return argument_spec_from_options(module_documentation("xu_cert_swap").get("options") or {})


def _swap_params(given: Mapping[str, Any]) -> dict[str, Any]:
    """The swap's options as the role passes them, with the module's defaults for the rest."""
    result = ArgumentSpecValidator(_swap_spec()).validate({key: value for key, value in given.items() if value is not None})
    if result.error_messages:
        raise XuError("; ".join(result.error_messages))
    return dict(result.validated_parameters)


def pfx_blocker(
    plan: Mapping[str, Any],
    *,
    pfx: bytes | None,
    pfx_source: str,
    pfx_content: str | None,
    password: str | None,
    ca_bundle: bytes | None,
    strict_san: bool,
    now: datetime.datetime,
    allow_shorter: bool = False,
) -> str | None:
    """Why the real run would refuse this host's new PFX, in the role's words; None when it would take it."""
    fqdn = str(plan.get("fqdn") or "").strip().lower() or None
    try:
        files = ControllerFiles(pfx=pfx, pfx_source=pfx_source, ca_bundle=ca_bundle)
        params = _swap_params({
            "old_thumbprint": plan.get("old_thumbprint") or None,
            # Turning TLS on replaces nothing: the swap only installs the PFX.
            "update_references": not plan.get("enable_tls"),
            # The swap reads the file; its name only has to be there.
            "pfx_path": "given" if pfx is not None else None,
            "pfx_content": None if pfx is not None else pfx_content,
            "pfx_password": password or None,
            "ca_path": "given" if ca_bundle is not None else None,
            "strict_san": strict_san,
        })
        request = parse_request(params, files, now)
    except XuError as e:
        return role_wording(str(e))
    if request.pfx is None:
        return None
    bound_until = parse_iso(plan.get("not_after"))
    if bound_until is not None and request.pfx.leaf.not_after < bound_until and not allow_shorter:
        return role_wording(
            f"it expires on {iso(request.pfx.leaf.not_after)}, before the bound certificate ({plan.get('not_after')});"
            " give a certificate that lasts longer, or set allow_shorter: true (the old certificate then stays in the store)"
        )
    problems = [problem for problem in (san_problem(request.pfx.leaf, fqdn), eku_problem(request.pfx.leaf)) if problem]
    if problems and strict_san:
        return f"{'; '.join(problems)} (xu_renew_strict_san is true: use a certificate issued for this host)"
    return None
