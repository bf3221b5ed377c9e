"""A scripted host for unit tests of the controller logic: answers the agent protocol from a dict."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from support.certs import der, mint
from xulab.errors import cim_query_not_found

INSTALL_DIR = "C:\\Program Files\\XtractUniversal"
ROOTED = re.compile(r"^([A-Za-z]:|[\\/])")
SERVICE_ACCOUNT = "NT Service\\XtractUniversal Service"
# The virtual account's SID (derived from the service name) and the groups of a service logon.
SERVICE_SID = "S-1-5-80-2835434641-1716488285-1104975628-79970361-2622572616"
SERVICE_GROUPS = ["S-1-1-0", "S-1-5-11", "S-1-5-32-545", "S-1-5-6"]
SYSTEM_SID = "S-1-5-18"
READABLE_ACL = [
    {"identity": "NT AUTHORITY\\SYSTEM", "sid": SYSTEM_SID, "rights": "FullControl", "type": "Allow"},
    {"identity": "NT SERVICE\\XtractUniversal Service", "sid": SERVICE_SID, "rights": "Read", "type": "Allow"},
]
# A new machine key's ACL: the service account is not on it until granted.
MACHINE_KEY_ACL = [
    {"identity": "NT AUTHORITY\\SYSTEM", "sid": SYSTEM_SID, "rights": "FullControl", "type": "Allow"},
    {"identity": "BUILTIN\\Administrators", "sid": "S-1-5-32-544", "rights": "FullControl", "type": "Allow"},
]


def tls_json(protocol: str = "HttpsUnrestricted", web: str | None = None, auth: str = "CustomCredentialsTls", config: str | None = None) -> str:
    def certificate(thumbprint: str | None) -> dict[str, Any]:
        return {"StoreLocation": "LocalMachine", "StoreName": "My", "Thumbprint": thumbprint}

    return json.dumps({
        "WebServer": {"Protocol": protocol, "Certificate": certificate(web)},
        "ConfigServer": {"Authentication": auth, "Certificate": certificate(config)},
    }, indent=2)


def group_not_found(group: str) -> dict[str, Any]:
    """What Windows answers Get-NetFirewallRule -Group for a group without rules (the lab's shape, tests/lab/xulab/errors.py)."""
    return cim_query_not_found("Get-NetFirewallRule", "MSFT_NetFirewallRule", "RuleGroup", group).as_json()


def task_not_found(name: str) -> dict[str, Any]:
    return cim_query_not_found("Get-ScheduledTask", "MSFT_ScheduledTask", "TaskName", name).as_json()


FAKE_CA_CONFIG = "ca01.example.com\\Example Issuing CA"


class HostError(Exception):
    """A primitive's failure, answered as ``{"status": "error", "error": {"type", "message"}}``."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message


@dataclass
class FakeHost:
    files: dict[str, str] = field(default_factory=dict)
    certificates: list[dict[str, Any]] = field(default_factory=list)
    served: dict[int, x509.Certificate | None] = field(default_factory=dict)
    http_ports: set[int] = field(default_factory=set)
    rules: list[dict[str, Any]] = field(default_factory=list)
    task: dict[str, Any] | None = None
    task_group: str | None = None
    service_state: str = "Running"
    service_found: bool = True
    errors: dict[str, dict[str, str]] = field(default_factory=dict)
    # op name -> error answered the next time that op runs, then forgotten.
    fail_once: dict[str, dict[str, str]] = field(default_factory=dict)
    journals: dict[str, str] = field(default_factory=dict)
    # Entries written to the Application event log (event_write).
    event_log: list[dict[str, Any]] = field(default_factory=list)
    # What the web server answers to GET (e.g. /version) on every port that serves HTTP.
    http_status: int = 200
    calls: list[list[dict[str, Any]]] = field(default_factory=list)
    # cert_enroll: the templates the host may enrol, and those the CA holds for approval (answered EnrollPending).
    enrol_templates: set[str] = field(default_factory=lambda: {"WebServer"})
    pending_templates: set[str] = field(default_factory=set)
    enrol_requests: int = 0
    ca_configs: list[str] = field(default_factory=lambda: [FAKE_CA_CONFIG])
    answer_override: Callable[[str, bytes], tuple[int, str, str]] | None = None
    # The index of the operation that fails in the next call (IOException), then forgotten.
    fail_at: int | None = None
    # The host's clock: this far ahead of the controller's (negative: behind), as every answer says it.
    clock_offset_s: float = 0.0

    def host_now(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=self.clock_offset_s)

    def trigger(self, delay_s: float) -> str:
        """A task's trigger as the agent sets it: the host's now plus the delay, rounded up to the whole second."""
        at = self.host_now() + datetime.timedelta(seconds=delay_s)
        at = at.replace(microsecond=0) + datetime.timedelta(seconds=1) if at.microsecond else at
        return at.strftime("%Y-%m-%dT%H:%M:%SZ")

    def add_certificate(self, cert: x509.Certificate, *, has_private_key: bool = True, acl: list[dict[str, Any]] | None = None) -> str:
        raw = der(cert)
        self.certificates.append({
            "der_b64": base64.b64encode(raw).decode(),
            "has_private_key": has_private_key,
            "friendly_name": "",
            "key": {"provider": "CNG", "acl": READABLE_ACL if acl is None else acl} if has_private_key else None,
        })
        thumbprint = hashlib.sha1(raw, usedforsecurity=False).hexdigest().upper()
        self.certificates[-1]["thumbprint"] = thumbprint
        return thumbprint

    def transport(self, command: str, stdin: bytes) -> tuple[int, str, str]:
        if self.answer_override is not None:
            return self.answer_override(command, stdin)
        assert command.startswith("PowerShell -NoProfile -NonInteractive -ExecutionPolicy Unrestricted -EncodedCommand ")
        payload = json.loads(stdin)
        assert payload["agent"].startswith("# xtractuniversal.tls agent 1")
        request = payload["request"]
        self.calls.append(request["ops"])
        results = []
        failed = False
        fail_at, self.fail_at = self.fail_at, None
        for index, op in enumerate(request["ops"]):
            entry: dict[str, Any] = {"id": op["id"], "op": op["op"]}
            if failed and request["stop_on_error"]:
                entry["status"] = "skipped"
                results.append(entry)
                continue
            injected = {"type": "IOException", "message": "injected fault"} if index == fail_at else None
            error = injected or self.fail_once.pop(op["op"], None) or self.errors.get(op["op"])
            if error is None:
                try:
                    entry.update(status="ok", result=getattr(self, "op_" + op["op"])(op["args"]))
                except HostError as e:
                    error = {"type": e.error_type, "message": e.message}
            if error is not None:
                entry.update(status="error", error=error)
                failed = failed or op.get("optional") is not True
            results.append(entry)
        host_time = self.host_now().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        answer = {"agent": "xtractuniversal.tls", "protocol": 1, "results": results, "host_time": host_time, "host_elapsed_ms": 0}
        return 0, json.dumps(answer), ""

    def op_event_write(self, args: dict[str, Any]) -> dict[str, Any]:
        """The host's Application log: entries are kept in ``event_log``."""
        if args.get("entry_type") not in ("Information", "Warning", "Error") or not 1 <= int(args.get("event_id") or 0) <= 65535:
            raise HostError("InvalidArgument", "event_id must be 1 to 65535")
        if not args.get("message"):
            raise HostError("InvalidArgument", "message must be 1 to 31000 characters")
        registered = not self.event_log
        self.event_log.append({"event_id": args["event_id"], "entry_type": args["entry_type"], "message": args["message"]})
        return {"log": "Application", "source": "xtractuniversal.tls", "registered": registered}

    def op_cert_enroll(self, args: dict[str, Any]) -> dict[str, Any]:
        """As the lab's AD CS, simply: only the machine reaches the CA; a new key that only SYSTEM and Administrators read."""
        names = args.get("dns_names") or []
        if not args.get("template") or not names:
            raise HostError("InvalidArgument", "template and dns_names are required")
        run_as = args.get("run_as") or "machine"
        if run_as == "machine" and args.get("ca_config") not in self.ca_configs:
            raise HostError("InvalidArgument" if args.get("ca_config") is None else "CertreqFailed",
                            "ca_config is required as the machine" if args.get("ca_config") is None else "certreq exited with -2147023174: RPC")
        if run_as == "caller":
            raise HostError("CertreqFailed", "certreq exited with -2146877419: The enrollment policy server cannot be located. 0x80094015")
        self.enrol_requests += 1
        request_id = 1000 + self.enrol_requests
        template = str(args["template"]).casefold()
        if template in {t.casefold() for t in self.pending_templates}:
            raise HostError("EnrollPending", f"request {request_id} is pending at the CA: Certificate request is pending: Taken Under Submission (0)")
        if template not in {t.casefold() for t in self.enrol_templates}:
            raise HostError("CertreqFailed", f"certreq exited with -2146877422: RequestId: {request_id} Certificate request is denied")
        cert, _key = mint(names[0], sans=tuple(names), days_left=730, valid_from_days_ago=0.007)
        thumbprint = self.add_certificate(cert, acl=[dict(rule) for rule in MACHINE_KEY_ACL])
        output = f"RequestId: {request_id}\r\nCertificate retrieved(Issued) Issued\r\nInstalled Certificate:\r\n  Thumbprint: {thumbprint.lower()}"
        return {"thumbprint": thumbprint, "output": output, "exit_code": 0, "enrolled_as": run_as, "swept": [], "sweep_error": None}

    def op_ca_list(self, args: dict[str, Any]) -> dict[str, Any]:
        """One enterprise CA (``ca_configs`` more), publishing every template the host may enrol or wait for."""
        templates = sorted(self.enrol_templates | self.pending_templates)
        return {"cas": [{"config": config, "templates": templates} for config in self.ca_configs], "swept": [], "sweep_error": None}

    def op_discover(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "computer": {"hostname": "xu01", "domain": "example.com"},
            "service": {
                "name": "XtractUniversal Service", "display_name": "Xtract Universal", "state": self.service_state,
                "start_mode": "Auto", "account": SERVICE_ACCOUNT, "account_sid": SERVICE_SID, "account_groups": list(SERVICE_GROUPS),
                "image_path": f'"{INSTALL_DIR}\\XtractService.exe"', "dependents": [],
            } if self.service_found else None,
            "install_dir": INSTALL_DIR,
            "install_dir_exists": True,
            "files": [
                {
                    "path": path,
                    # As the agent combines them: a rooted path is its own full path.
                    "full_path": path if ROOTED.match(path) else f"{INSTALL_DIR}\\{path}",
                    "exists": path in self.files,
                    "content": self.files.get(path),
                    "sha256": hashlib.sha256(self.files[path].encode()).hexdigest() if path in self.files else None,
                }
                for path in args["files"]
            ],
        }

    def op_cert_list(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"certificates": self.certificates}

    def op_cert_check(self, args: dict[str, Any]) -> dict[str, Any]:
        thumbprint = str(args["thumbprint"]).upper()
        entry = next((c for c in self.certificates if c["thumbprint"] == thumbprint and not c.get("archived")), None)
        if entry is None:
            raise HostError("NotFound", f"{thumbprint} is not in LocalMachine\\My")
        if not entry.get("has_private_key"):
            raise HostError("NotFound", f"{thumbprint} is in LocalMachine\\My without its private key")
        return {"thumbprint": thumbprint, "has_private_key": True}

    def op_fw_get(self, args: dict[str, Any]) -> dict[str, Any]:
        if not self.rules:
            return {"rules": None, "rules_error": group_not_found(args["group"])}
        return {"rules": self.rules}

    def op_task_get(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"task": self.task, "task_error": None if self.task is not None else task_not_found(args["name"])}

    def op_port_probe(self, args: dict[str, Any]) -> dict[str, Any]:
        port = args["port"]
        if args["tls"]:
            cert = self.served.get(port)
            if cert is None:
                return {"connected": port in self.http_ports, "tls_error": "handshake failed", "der_b64": None,
                        "http_status": None, "http_body": None, "error": None if port in self.http_ports else "refused"}
            return {"connected": True, "tls_error": None, "der_b64": base64.b64encode(der(cert)).decode(),
                    "http_status": self.http_status if args["http_path"] else None, "http_body": None, "error": None}
        if port in self.http_ports:
            return {"connected": True, "tls_error": None, "der_b64": None, "http_status": self.http_status, "http_body": "{}", "error": None}
        return {"connected": False, "tls_error": None, "der_b64": None, "http_status": None, "http_body": None, "error": "refused"}

    def check_served(self, required: list[dict[str, Any]] | None) -> None:
        """As the agent's Assert-XuServed: each port presents its certificate, and answers GET http_path as listed."""
        for requirement in required or []:
            probe = self.op_port_probe({"port": requirement["port"], "tls": True, "http_path": requirement.get("http_path")})
            der_b64 = probe["der_b64"]
            seen = hashlib.sha1(base64.b64decode(der_b64)).hexdigest().upper() if der_b64 else "no certificate"  # noqa: S324 - a thumbprint
            if seen != requirement["thumbprint"]:
                raise HostError("PreconditionFailed", f"port {requirement['port']} presents {seen}, not {requirement['thumbprint']}")
            if requirement.get("http_path") and probe["http_status"] not in requirement.get("http_statuses", []):
                raise HostError("PreconditionFailed", f"GET {requirement['http_path']} on port {requirement['port']} answered {probe['http_status']}")

    def op_served_check(self, args: dict[str, Any]) -> dict[str, Any]:
        self.check_served(args.get("require_served"))
        return {"served": True}

    def op_file_check(self, args: dict[str, Any]) -> dict[str, Any]:
        prefix = INSTALL_DIR.lower() + "\\"
        path = str(args["path"])
        relative = path[len(prefix):] if path.lower().startswith(prefix) else path
        content = next((text for key, text in self.files.items() if key.lower() in (relative.lower(), path.lower())), None)
        found = None if content is None else hashlib.sha256(content.encode()).hexdigest()
        expected = str(args["sha256"]).lower()
        if expected == "absent" and found is not None:
            raise HostError("HashMismatch", f"{path} exists")
        if expected not in ("absent", found):
            raise HostError("HashMismatch", f"{path} does not exist" if found is None else f"{path} has sha256 {found}, not {expected}")
        return {"sha256": found}

    def op_fw_set(self, args: dict[str, Any]) -> dict[str, Any]:
        removed = len(self.rules)
        self.rules = [dict(rule) for rule in args["rules"]]
        return {"removed": removed, "added": len(self.rules)}

    def op_task_register(self, args: dict[str, Any]) -> dict[str, Any]:
        run_at = self.trigger(args["delay_s"])
        self.task = {"name": args["name"], "state": "Ready", "next_run_utc": run_at, "description": args["description"]}
        self.task_group = args["fw_group_to_remove"]
        return {"registered": True, "run_at_utc": run_at}

    def op_task_remove(self, args: dict[str, Any]) -> dict[str, Any]:
        removed = self.task is not None
        self.task = None
        return {"removed": removed}

    def op_journal_read(self, args: dict[str, Any]) -> dict[str, Any]:
        content = self.journals.get(args["name"])
        digest = hashlib.sha256(content.encode()).hexdigest() if content is not None else None
        return {"exists": content is not None, "content": content, "sha256": digest}

    def op_journal_write(self, args: dict[str, Any]) -> dict[str, Any]:
        expected = args.get("expected_sha256")
        if expected is not None:
            found = self.op_journal_read(args)["sha256"]
            if (expected == "absent" and found is not None) or expected not in ("absent", found):
                raise HostError("HashMismatch", f"journal {args['name']} has sha256 {found}, not {expected}")
        if args["content"] is None:
            self.journals.pop(args["name"], None)
        else:
            self.journals[args["name"]] = args["content"]
        return {"path": f"C:\\ProgramData\\xtractuniversal.tls\\{args['name']}.json"}


def intercept(host: FakeHost, hook: Callable[[bytes], tuple[int, str, str] | None]) -> None:
    """Put ``hook`` in front of the host's answers: it sees each request's stdin first and returns
    an answer of its own (rc, stdout, stderr), or None to let the host answer."""

    def answer(command: str, stdin: bytes) -> tuple[int, str, str]:
        own = hook(stdin)
        if own is not None:
            return own
        host.answer_override = None
        try:
            return host.transport(command, stdin)
        finally:
            host.answer_override = answer

    host.answer_override = answer
