"""Reports shaped like xu_tls_info's and journals shaped like the renew role's, for the tests of its decisions."""

from __future__ import annotations

from typing import Any

OLD = "A" * 40
NEW = "B" * 40
OTHER = "C" * 40
TLS_PATH = "C:\\Program Files\\XtractUniversal\\config\\servers\\tls.json"
ORIGINAL_SHA = "1" * 64
BACKUP = TLS_PATH + ".20261126T205741Z.bak"


def certificate(thumbprint: str, *, days_left: int = 200, in_store: bool = True, readable: bool | None = True, covers: bool | None = True) -> dict[str, Any]:
    return {
        "thumbprint": thumbprint, "not_before": "2026-01-01T00:00:00Z", "not_after": "2027-06-01T00:00:00Z",
        "days_left": days_left, "expired": days_left < 0, "not_yet_valid": False, "san_covers_fqdn": covers,
        "server_auth": True, "in_store": in_store, "has_private_key": in_store, "key_readable_by_service": readable if in_store else False,
    }


def store(*thumbprints: str, days_left: int = 200, covers: bool = True) -> list[dict[str, Any]]:
    return [{"thumbprint": t, "not_after": "2027-06-01T00:00:00Z", "days_left": days_left, "san_covers_fqdn": covers,
             "has_private_key": True, "key_readable_by_service": True} for t in thumbprints]


def info(
    bound: str = OLD,
    *,
    days_left: int = 200,
    in_store: bool = True,
    protocol: str = "https_unrestricted",
    config_tls: bool = True,
    config_thumbprint: str | None = None,
    served: str | None = None,
    http_answering: bool = False,
    running: bool = True,
    sha: str = ORIGINAL_SHA,
    certificates: list[dict[str, Any]] | None = None,
    journal: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A report of xu_tls_info: the server binds ``bound`` and serves ``served`` (default: ``bound``)."""
    tls = protocol != "http_unrestricted"
    served = bound if served is None else served
    config_thumbprint = bound if config_thumbprint is None else config_thumbprint
    return {
        "installed": True,
        "fqdn": "xu01.example.com",
        "service": {"state": "Running" if running else "Stopped"},
        "settings_files": [{"path": TLS_PATH, "exists": True, "sha256": sha}],
        "web_server": {
            "protocol": protocol, "protocol_setting": "x", "tls": tls, "http_port": 8065, "https_port": 8165,
            "certificate_thumbprint": bound, "certificate": certificate(bound, days_left=days_left, in_store=in_store) if tls else None,
        },
        "config_server": {
            "authentication": "custom_credentials_tls" if config_tls else "windows_credentials", "tls": config_tls, "port": 8064,
            "certificate_thumbprint": config_thumbprint,
            "certificate": certificate(config_thumbprint, days_left=days_left, in_store=in_store) if config_tls else None,
        },
        "served": {
            "web_http": {"port": 8065, "answering": http_answering or (running and not tls), "thumbprint": None, "http_status": 200},
            "web_https": {"port": 8165, "answering": running and tls, "thumbprint": served if running and tls else None,
                          "http_status": 200 if running and tls else None},
            "config_server": {"port": 8064, "answering": running, "thumbprint": served if running and config_tls else None},
        },
        "store_certificates": store(bound) if certificates is None and in_store else (certificates or []),
        "gate": {"state": "open"},
        "journal": journal,
        "problems": [],
    }


def journal(**changes: Any) -> dict[str, Any]:
    content: dict[str, Any] = {
        "run_id": "r1", "mode": "reuse_key", "strategy": "documented", "step": "started", "old_thumbprint": OLD,
        "new_thumbprint": None, "backup_files": {}, "previous_web_protocol": "https_unrestricted", "config_tls": True,
        "original_sha256": ORIGINAL_SHA, "tls_path": TLS_PATH, "remove_old": False, "gate": True, "started": "2026-11-26T20:00:00Z",
    }
    content.update(changes)
    return content
