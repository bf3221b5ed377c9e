# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whether a host serves what a renewal (or a rollback) should have left, from xu_tls_info's report. Private to this collection."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.renew._info import PLAIN_HTTP_PROTOCOL, as_dict, served, service_running, upper


@dataclass(frozen=True)
class Verification:
    """The verdict on one certificate; ``serving_tls`` says whether the HTTP hold may go, whatever the verdict."""

    ok: bool
    problems: tuple[str, ...]
    thumbprint: str | None
    serving_tls: bool

    def as_fact(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": list(self.problems), "thumbprint": self.thumbprint, "serving_tls": self.serving_tls}


def serving_tls(info: Mapping[str, Any]) -> bool:
    """Whether the server answers HTTPS with a certificate and nothing answers plain HTTP (the HTTP hold may go)."""
    https = served(info, "web_https")
    return service_running(info) and bool(https.get("answering") and https.get("thumbprint")) and not served(info, "web_http").get("answering")


def _certificate_problems(certificate: Mapping[str, Any], expected: str, require_valid: bool) -> list[str]:
    problems = []
    if not certificate.get("in_store"):
        problems.append(f"the certificate {expected} is not in LocalMachine\\My")
    elif certificate.get("key_readable_by_service") is False:
        problems.append(f"the service account cannot read the private key of {expected}")
    if require_valid:
        if certificate.get("expired") or certificate.get("not_yet_valid"):
            problems.append(f"the certificate {expected} is not valid now ({certificate.get('not_before')} to {certificate.get('not_after')})")
        if certificate.get("san_covers_fqdn") is not True:
            problems.append(f"the certificate {expected} does not name the host in its Subject Alternative Name")
    return problems


def verify(
    info: Mapping[str, Any], expected: Any, web_protocol: str | None = None, config_tls: bool | None = None, require_valid: bool = True
) -> Verification:
    """Whether the host serves ``expected`` as a renewal (or a rollback) should leave it: the verify step's verdict."""
    wanted = upper(expected)
    if wanted is None and web_protocol == PLAIN_HTTP_PROTOCOL:
        return _verify_plain_http(info)
    if wanted is None:
        return Verification(False, ("no certificate to verify",), None, serving_tls(info))
    problems: list[str] = []
    if not service_running(info):
        problems.append(f"the service is {as_dict(info.get('service')).get('state', 'missing')}")
    web = as_dict(info.get("web_server"))
    config = as_dict(info.get("config_server"))
    if web_protocol is not None and web.get("protocol") != web_protocol:
        problems.append(f"the web server protocol is {web.get('protocol')}, not {web_protocol}")
    if upper(web.get("certificate_thumbprint")) != wanted:
        problems.append(f"the settings bind {web.get('certificate_thumbprint')} to the web server, not {wanted}")
    https = served(info, "web_https")
    if upper(https.get("thumbprint")) != wanted:
        problems.append(f"the HTTPS port {https.get('port')} presents {https.get('thumbprint') or 'no certificate'}, not {wanted}")
    elif https.get("http_status") != 200:
        problems.append(f"GET /version over HTTPS answered {https.get('http_status')}, not 200")
    if served(info, "web_http").get("answering"):
        problems.append(f"the web server still answers plain HTTP on port {served(info, 'web_http').get('port')}")
    if config_tls is None:
        config_tls = bool(config.get("tls"))
    if config_tls:
        if upper(config.get("certificate_thumbprint")) != wanted:
            problems.append(f"the settings bind {config.get('certificate_thumbprint')} to the configuration server, not {wanted}")
        config_served = served(info, "config_server")
        if upper(config_served.get("thumbprint")) != wanted:
            problems.append(
                f"the configuration server port {config_served.get('port')} presents {config_served.get('thumbprint') or 'no certificate'}, not {wanted}"
            )
    problems += _certificate_problems(as_dict(web.get("certificate")), wanted, require_valid)
    return Verification(not problems, tuple(problems), wanted, serving_tls(info))


def _verify_plain_http(info: Mapping[str, Any]) -> Verification:
    """Whether the host serves plain HTTP as it did before a run that turned TLS on was rolled back."""
    problems: list[str] = []
    if not service_running(info):
        problems.append(f"the service is {as_dict(info.get('service')).get('state', 'missing')}")
    protocol = as_dict(info.get("web_server")).get("protocol")
    if protocol != PLAIN_HTTP_PROTOCOL:
        problems.append(f"the web server protocol is {protocol}, not {PLAIN_HTTP_PROTOCOL}")
    http = served(info, "web_http")
    if not http.get("answering"):
        problems.append(f"the web server does not answer plain HTTP on port {http.get('port')}")
    elif http.get("http_status") != 200:
        problems.append(f"GET /version over HTTP answered {http.get('http_status')}, not 200")
    return Verification(not problems, tuple(problems), None, serving_tls(info))
