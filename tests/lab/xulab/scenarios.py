"""How hosts look when the lab hands them out: an XU installation and a TLS situation per host.

`healthy`: HTTPS and TLS on the configuration server, one certificate valid for
`--expiring-in` days, its key readable by the service. `mixed` cycles through healthy,
expiring soon, expired (still served), TLS off (a valid certificate in the store, unbound)
and missing certificate (win-acme replaced the bound certificate while XU kept serving it).
`adopt`: healthy hosts with certificates beside the bound one (xulab.nearmiss): each of the
first seven carries one near miss (`adopt_wrong_san` ... `adopt_shorter`), the eighth
(`adopt_better`) all seven near misses and one better certificate; then again from the first.
"""

from __future__ import annotations

import json

from .accounts import XU_SERVICE_ACCOUNT, sid_of
from .certstore import KeyContainer, StoredCertificate, default_machine_key_acl
from .host import Host
from .listeners import XU_VERSION
from .nearmiss import NEAR_MISS_KINDS, plant
from .renewals import WINACME_LIFETIME_DAYS, winacme_renew
from .xusettings import CONFIG_DIR, CONFIG_SERVER_SETTINGS, IMAGE_PATH, TLS_SETTINGS, VERSION_FILE, WEB_SETTINGS

SCENARIOS = ("healthy", "mixed", "adopt")
MIXED_PROFILES = ("healthy", "expiring_soon", "expired", "tls_off", "missing_cert")
ADOPT_PROFILES = (*(f"adopt_{kind}" for kind in NEAR_MISS_KINDS), "adopt_better")
EXPIRING_SOON_DAYS = 10
EXPIRED_DAYS_AGO = 3


MIXED_WINDOWS_VERSIONS = ("2022", "2019", "2016")


def windows_version_for(scenario: str, index: int) -> str:
    """healthy and adopt: Server 2022; mixed: 2022, 2019 and 2016 in turn, so every profile meets every version."""
    if scenario in ("healthy", "adopt"):
        return "2022"
    return MIXED_WINDOWS_VERSIONS[(index - 1) % len(MIXED_WINDOWS_VERSIONS)]


def profile_for(scenario: str, index: int) -> str:
    if scenario == "healthy":
        return "healthy"
    if scenario == "adopt":
        return ADOPT_PROFILES[(index - 1) % len(ADOPT_PROFILES)]
    return MIXED_PROFILES[(index - 1) % len(MIXED_PROFILES)]


def settings_bytes(document: dict[str, object]) -> bytes:
    """Settings as XU writes them: indented JSON with Windows line ends."""
    return json.dumps(document, indent=2).replace("\n", "\r\n").encode("utf-8")


def tls_document(thumbprint: str) -> dict[str, object]:
    certificate = {"StoreLocation": "LocalMachine", "StoreName": "My", "Thumbprint": thumbprint}
    return {
        "WebServer": {"Protocol": "HttpsUnrestricted", "Certificate": dict(certificate)},
        "ConfigServer": {"Authentication": "CustomCredentialsTls", "Certificate": dict(certificate)},
    }


def install_xu(host: Host) -> None:
    """The files an XU installation leaves on disk."""
    executable = host.fs.resolve(IMAGE_PATH.strip('"'))
    executable.parent.mkdir(parents=True, exist_ok=True)
    executable.write_bytes(b"MZ\x90\x00 Xtract Universal service (lab placeholder)\r\n")
    for folder in ("extractions", "connections", "private", "servers\\web", "servers\\config"):
        host.fs.resolve(f"{CONFIG_DIR}\\{folder}").mkdir(parents=True, exist_ok=True)
    host.fs.resolve(VERSION_FILE).write_bytes(XU_VERSION.encode("ascii"))
    host.fs.resolve(WEB_SETTINGS).write_bytes(settings_bytes({"HttpPort": 8065, "HttpsPort": 8165}))
    host.fs.resolve(CONFIG_SERVER_SETTINGS).write_bytes(settings_bytes({"Port": 8064}))
    host.fs.resolve("C:\\ProgramData").mkdir(parents=True, exist_ok=True)


def provision_certificate(
    host: Host, *, days_left: float, lifetime_days: float, provider: str, service_can_read: bool, friendly_name: str = ""
) -> StoredCertificate:
    """A certificate for the host's name in LocalMachine\\My, as an administrator installed it."""
    certificate, key = host.mint(host.default_request(days_left, lifetime_days))
    acl = default_machine_key_acl()
    container = KeyContainer(key, provider, acl)
    if service_can_read:
        container.grant_read(sid_of(XU_SERVICE_ACCOUNT))
    return host.add_certificate(certificate, container, source="provision", friendly_name=friendly_name or host.fqdn)


def bind(host: Host, entry: StoredCertificate) -> None:
    host.fs.resolve(TLS_SETTINGS).write_bytes(settings_bytes(tls_document(entry.thumbprint)))


async def provision(host: Host, profile: str, expiring_in: float) -> None:
    """Install XU, set up the profile's certificates and settings, start the service."""
    install_xu(host)
    if profile == "tls_off":
        provision_certificate(host, days_left=365, lifetime_days=365, provider="CNG", service_can_read=False)
    elif profile == "missing_cert":
        # A win-acme certificate from 50 days ago; win-acme renews it below while XU runs.
        entry = provision_certificate(
            host, days_left=WINACME_LIFETIME_DAYS - 50, lifetime_days=WINACME_LIFETIME_DAYS, provider="CNG",
            service_can_read=True, friendly_name=f"{host.fqdn} @ win-acme",
        )
        bind(host, entry)
    else:
        base = "healthy" if profile in ADOPT_PROFILES else profile
        days_left = {"healthy": expiring_in, "expiring_soon": EXPIRING_SOON_DAYS, "expired": -EXPIRED_DAYS_AGO}[base]
        # Certificates that have been around a while often still sit in a legacy CSP.
        provider = "CNG" if base == "healthy" else "CSP"
        bind(host, provision_certificate(host, days_left=days_left, lifetime_days=365, provider=provider, service_can_read=True))
    await host.service.start_now()
    if profile == "missing_cert":
        winacme_renew(host)
    elif profile == "adopt_better":
        for kind in (*NEAR_MISS_KINDS, "better"):
            plant(host, kind)
    elif profile in ADOPT_PROFILES:
        plant(host, profile.removeprefix("adopt_"))
