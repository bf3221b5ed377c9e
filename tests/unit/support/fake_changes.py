"""A scripted host whose changes take effect, for unit tests of modules that change a host.

``ChangingFakeHost`` answers the agent protocol like ``FakeHost`` and also carries out the
changing primitives on its in-memory state: ``file_write``, ``file_restore``,
``file_remove``, ``key_grant_read`` and ``service_restart``. A restart makes the fake XU
read its settings the way XU does, so ``port_probe`` then presents what the settings say,
or nothing when XU could not start (a bound certificate missing, without a private key, or
with a key the service account may not read).

Knobs (all plain attributes, set them in the constructor or afterwards):

* ``settings_map``: where this XU keeps each setting in tls.json (dotted paths, as the
  module option); the collection's assumed layout by default.
* ``restart_failures``: the next N service starts fail as a service control manager
  timeout does: the service stays Stopped and nothing listens.
* ``after_start``: callables run after every successful start, with the host, e.g. to make
  the service present another certificate than its settings say.
* ``fail_once``: op name -> error (``{"type": ..., "message": ...}``) answered the next time
  that op runs (FakeHost's ``errors`` answer every time).

Records: ``restarts`` (how many restarts were attempted) and ``start_error`` (why the last
start failed, or None). Subclasses add primitives as ``op_<name>(args)`` methods; an op
method reports a failure of the primitive by raising ``HostError``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.xu._profiles import DEFAULT_SETTINGS_MAP
from support.fake_host import INSTALL_DIR, SERVICE_GROUPS, SERVICE_SID, FakeHost, HostError

SERVICE_NAME = "XtractUniversal Service"
TLS_FILE = "config\\servers\\tls.json"
WEB_PORTS_FILE = "config\\servers\\web\\general.json"
CONFIG_PORT_FILE = "config\\servers\\config\\general.json"
SCM_TIMEOUT = (
    f"Cannot start service {SERVICE_NAME} on computer '.'. "
    "The service did not respond to the start or control request in a timely fashion."
)
# The names this fake host translates to SIDs (NTAccount.Translate); anything else is not mapped.
_SIDS_BY_NAME = {"nt service\\xtractuniversal service": SERVICE_SID, "nt authority\\network service": "S-1-5-20"}


def sha256_text(text: str) -> str:
    """The hash the agent reports: of the UTF-8 bytes on disk."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _member(node: Any, key: str) -> Any:
    if not isinstance(node, dict):
        return None
    return next((value for name, value in node.items() if name.lower() == key.lower()), None)


def read_setting(document: Any, path: str) -> Any:
    """The value at a dotted path (``A.B[0].C``), property names case-insensitive as XU reads them."""
    node = document
    for key, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        if not index:
            node = _member(node, key)
        elif isinstance(node, list) and int(index) < len(node):
            node = node[int(index)]
        else:
            return None
    return node


@dataclass
class ChangingFakeHost(FakeHost):
    settings_map: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SETTINGS_MAP))
    restart_failures: int = 0
    after_start: list[Callable[[ChangingFakeHost], None]] = field(default_factory=list)
    restarts: int = 0
    start_error: str | None = None

    # -- files -------------------------------------------------------------------------------

    def _key(self, path: str) -> str:
        """The key of ``files`` for a host path: relative to the install dir, as discover asks for them."""
        prefix = INSTALL_DIR.lower() + "\\"
        key = path[len(prefix):] if path.lower().startswith(prefix) else path
        # Windows paths are case-insensitive: an existing entry keeps its spelling.
        return next((existing for existing in self.files if existing.lower() == key.lower()), key)

    def file(self, path: str) -> str | None:
        """A file's content by host path or by path relative to the install dir; None when absent."""
        return self.files.get(self._key(path))

    def op_discover(self, args: dict[str, Any]) -> dict[str, Any]:
        result = super().op_discover(args)
        for entry in result["files"]:
            content = self.file(entry["path"])
            entry.update(exists=content is not None, content=content, sha256=None if content is None else sha256_text(content))
            # As the agent lists them: <name>.*.bak beside the file, full paths, sorted.
            full = entry["full_path"].lower()
            entry["backups"] = sorted(
                f"{INSTALL_DIR}\\{key}" if not key.lower().startswith("c:\\") else key
                for key in self.files
                if (f"{INSTALL_DIR}\\{key}" if not key.lower().startswith("c:\\") else key).lower().startswith(full + ".")
                and key.lower().rsplit(".", 1)[-1].startswith("bak")  # as Windows matches *.bak
            )
        return result

    def op_file_write(self, args: dict[str, Any]) -> dict[str, Any]:
        key = self._key(args["path"])
        previous = self.files.get(key)
        previous_sha256 = None if previous is None else sha256_text(previous)
        expected = args.get("expected_sha256")
        if expected == "absent" and previous is not None:
            raise HostError("HashMismatch", f"{args['path']} exists")
        if expected not in (None, "absent") and previous_sha256 != str(expected).lower():
            found = "does not exist" if previous is None else f"has sha256 {previous_sha256}, not {expected}"
            raise HostError("HashMismatch", f"{args['path']} {found}")
        backup = None
        if previous is not None and args.get("backup_path") is not None:
            backup = args["backup_path"]
            self.files[self._key(backup)] = previous
        self.files[key] = args["content"]
        return {"sha256": sha256_text(args["content"]), "previous_sha256": previous_sha256, "backup_path": backup}

    def op_file_restore(self, args: dict[str, Any]) -> dict[str, Any]:
        saved = self.file(args["backup_path"])
        if saved is None:
            raise HostError("NotFound", f"backup {args['backup_path']} does not exist")
        key = self._key(args["path"])
        kept = args.get("keep_current_path") if key in self.files else None
        if kept is not None:
            self.files[self._key(kept)] = self.files[key]
        self.files[key] = saved
        return {"sha256": sha256_text(saved), "kept_current_path": kept}

    def op_file_remove(self, args: dict[str, Any]) -> dict[str, Any]:
        key = self._key(args["path"])
        if key not in self.files:
            return {"removed": False, "backup_path": None}
        content = self.files.pop(key)
        if args.get("backup_path") is not None:
            self.files[self._key(args["backup_path"])] = content
        return {"removed": True, "backup_path": args.get("backup_path")}

    # -- certificates ------------------------------------------------------------------------

    def certificate_entry(self, thumbprint: str) -> dict[str, Any] | None:
        wanted = re.sub(r"[^0-9A-Fa-f]", "", thumbprint).upper()
        return next((c for c in self.certificates if c["thumbprint"] == wanted), None)

    def key_readable(self, entry: dict[str, Any], sid: str = SERVICE_SID) -> bool:
        if not entry["has_private_key"] or entry["key"] is None:
            return False
        principals = {sid, *(SERVICE_GROUPS if sid == SERVICE_SID else [])}
        rules = [rule for rule in entry["key"]["acl"] if rule["sid"] in principals]
        if any(rule["type"] == "Deny" for rule in rules):
            return False
        return any(rule["type"] == "Allow" and rule["rights"] in ("Read", "FullControl") for rule in rules)

    def op_key_grant_read(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("account"):
            raise HostError("InvalidArgument", "account is required")
        entry = self.certificate_entry(args["thumbprint"])
        if entry is None or not entry["has_private_key"]:
            raise HostError("NotFound", f"no certificate with a private key has thumbprint {args['thumbprint']}")
        account = str(args["account"])
        sid = account.upper() if account.upper().startswith("S-1-") else _SIDS_BY_NAME.get(account.lower())
        if sid is None:
            raise HostError("IdentityNotMappedException", "Some or all identity references could not be translated.")
        if self.key_readable(entry, sid):
            return {"changed": False, "sid": sid}
        # A new list: certificates may share FakeHost's default ACL list.
        rule = {"identity": account, "sid": sid, "rights": "Read", "type": "Allow"}
        entry["key"] = dict(entry["key"], acl=[*entry["key"]["acl"], rule])
        return {"changed": True, "sid": sid}

    # -- the service -------------------------------------------------------------------------

    def _document(self, path: str) -> Any:
        content = self.file(path)
        return None if content is None else json.loads(content)

    def _port(self, path: str, key: str, default: int) -> int:
        value = _member(self._document(path), key)
        return value if isinstance(value, int) else default

    def _bound(self, thumbprint: Any, role: str) -> x509.Certificate:
        """The certificate XU would load for ``role``; raises HostError with XU's reason when it cannot."""
        entry = self.certificate_entry(thumbprint) if isinstance(thumbprint, str) and thumbprint else None
        if entry is None:
            raise HostError("StartFailure", f"{role}: the certificate with thumbprint {thumbprint} was not found in LocalMachine\\My.")
        if not entry["has_private_key"]:
            raise HostError("StartFailure", f"{role}: the certificate {entry['thumbprint']} has no private key.")
        if not self.key_readable(entry):
            raise HostError("StartFailure", f"{role}: Keyset does not exist.")
        return x509.load_der_x509_certificate(base64.b64decode(entry["der_b64"]))

    def start_service(self) -> bool:
        """Start as XU does: read the settings, load the certificates, listen. False (and Stopped) when it cannot."""
        self.served, self.http_ports = {}, set()
        try:
            tls = self._document(TLS_FILE) or {}
            http_port = self._port(WEB_PORTS_FILE, "HttpPort", 8065)
            https_port = self._port(WEB_PORTS_FILE, "HttpsPort", 8165)
            config_port = self._port(CONFIG_PORT_FILE, "Port", 8064)
            protocol = read_setting(tls, self.settings_map["web_protocol"]) or "HttpUnrestricted"
            authentication = read_setting(tls, self.settings_map["config_server_authentication"]) or "WindowsCredentials"
            served: dict[int, x509.Certificate | None] = {}
            plain = set()
            if str(protocol).lower() == "httpunrestricted":
                plain.add(http_port)
            else:
                served[https_port] = self._bound(read_setting(tls, self.settings_map["web_certificate"]), "Web server")
            if str(authentication).lower() == "customcredentialstls":
                served[config_port] = self._bound(read_setting(tls, self.settings_map["config_server_certificate"]), "Configuration server")
            else:
                plain.add(config_port)
        except (HostError, ValueError) as e:
            self.service_state, self.start_error = "Stopped", str(e)
            return False
        self.served, self.http_ports = served, plain
        self.service_state, self.start_error = "Running", None
        for hook in self.after_start:
            hook(self)
        return True

    def op_service_restart(self, args: dict[str, Any]) -> dict[str, Any]:
        if args.get("name") != SERVICE_NAME:
            raise HostError("NotFound", f"service {args.get('name')} does not exist")
        self.restarts += 1
        start_error: str | None
        if self.restart_failures > 0:
            self.restart_failures -= 1
            self.served, self.http_ports = {}, set()
            self.service_state, self.start_error = "Stopped", SCM_TIMEOUT
            start_error = SCM_TIMEOUT
        else:
            start_error = None if self.start_service() else "the service stopped while starting"
        ports = [{"port": port, "open": port in self.served or port in self.http_ports} for port in args.get("wait_ports") or []]
        return {
            "started": self.service_state == "Running" and all(p["open"] for p in ports),
            "state": self.service_state,
            "start_error": start_error,
            "ports": ports,
            "elapsed_s": 0.1,
        }
