"""The host side of the agent protocol's primitives (docs/agent-protocol.md).

Each function does on the simulated host what the agent's primitive of the same name
does on Windows, with the same arguments, results and errors, including the agent's
own argument checks and messages.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import os
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from . import offload
from .accounts import account_sid
from .ca import PfxPasswordError, generate_key, is_intermediate, pfx_from_portable, pfx_key_provider, read_pfx_portable
from .ca import thumbprint as der_thumbprint
from .certstore import KeyContainer, default_machine_key_acl, normalise_thumbprint
from .enrolment import DEFAULT_KEY_PROVIDER, KEY_PROVIDERS, EnrolmentRequest, certreq_enrol
from .errors import InnerException, PrimitiveError, cim_query_not_found, is_absent
from .firewall import FirewallRule
from .folders import check_journal_dir, initialize_journal_dir
from .host import Host, sha256_hex
from .probe import SERVER_NAME, port_probe
from .psvalues import as_int, as_items, as_text
from .renewals import certreq_renew
from .timefmt import ceil_second, iso_utc
from .winpath import is_path_rooted, join_windows_path, normalise_windows_path
from .xuservice import ServiceStartError, ServiceStopError, XuService

Args = dict[str, object]
Result = dict[str, object]
Primitive = Callable[[Host, Args], Awaitable[Result]]

TASK_NAME_PATTERN = r"^[A-Za-z0-9 ._-]{1,64}\Z"
JOURNAL_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}\Z"
TEMPLATE_NAME_PATTERN = r"^[A-Za-z0-9 ._-]{1,64}\Z"
CA_CONFIG_PATTERN = r"^[A-Za-z0-9_.-]{1,253}\\[A-Za-z0-9 _.()-]{1,64}\Z"
# The agent's spelling of the patterns in its messages (PowerShell regex, \z).
_PATTERN_TEXT = {
    TASK_NAME_PATTERN: "^[A-Za-z0-9 ._-]{1,64}\\z",
    JOURNAL_NAME_PATTERN: "^[A-Za-z0-9_.-]{1,64}\\z",
    TEMPLATE_NAME_PATTERN: "^[A-Za-z0-9 ._-]{1,64}\\z",
    CA_CONFIG_PATTERN: "^[A-Za-z0-9_.-]{1,253}\\\\[A-Za-z0-9 _.()-]{1,64}\\z",
}
ENROL_KEY_LENGTHS = (2048, 3072, 4096)
SERVICE_POLL_S = 0.05
PORT_POLL_S = 0.1
PORT_TEST_TIMEOUT_S = 0.5
DEFAULT_SERVICE_TIMEOUT_S = 60.0
ERROR_SERVICE_DOES_NOT_EXIST = 1060
BASE64_ERROR = (
    "The input is not a valid Base-64 string as it contains a non-base 64 character, more than two padding "
    "characters, or an illegal character among the padding characters. "
)


# -- argument handling, as loose as PowerShell's ----------------------------------------------


def _name(value: object, pattern: str, what: str) -> str:
    if not isinstance(value, str) or re.match(pattern, value) is None:
        raise PrimitiveError("InvalidArgument", f"{what} must match {_PATTERN_TEXT[pattern]}")
    return value


def _rooted(value: object, what: str) -> str:
    if not is_path_rooted(value):
        raise PrimitiveError("InvalidArgument", f"{what} must be an absolute path")
    assert isinstance(value, str)
    return value


UTF8_BOM = b"\xef\xbb\xbf"
# The DER encoding of the PBES2 OID (1.2.840.113549.1.5.13): a PFX encrypted the way OpenSSL 3 does by default.
_PBES2_OID = bytes.fromhex("06092a864886f70d01050d")
SHA1_OID = "1.3.14.3.2.26"
# HRESULT_FROM_WIN32(ERROR_INVALID_PASSWORD, 86): what PFXImportCertStore's wrong-password failure carries.
ERROR_INVALID_PASSWORD = -2147024810


def _der(data: bytes, position: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER item at `position`."""
    if position + 2 > len(data):
        raise ValueError("truncated")
    tag, length, start = data[position], data[position + 1], position + 2
    if length & 0x80:
        count = length & 0x7F
        length, start = int.from_bytes(data[start:start + count], "big"), start + count
    if start + length > len(data):
        raise ValueError("truncated")
    return tag, start, start + length


def pfx_mac_algorithm(data: bytes) -> str | None:
    """The OID of a PFX's MAC digest (PFX: version, authSafe, macData: DigestInfo first); None without a MAC."""
    try:
        _tag, body, end = _der(data, 0)
        position = _der(data, _der(data, body)[2])[2]
        if position >= end:
            return None
        algorithm = _der(data, _der(data, _der(data, position)[1])[1])[1]
        tag, start, stop = _der(data, algorithm)
    except ValueError:
        return None
    if tag != 0x06 or stop <= start:
        return None
    encoded = data[start:stop]
    numbers, value = [encoded[0] // 40, encoded[0] % 40], 0
    for byte in encoded[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            numbers.append(value)
            value = 0
    return ".".join(map(str, numbers))


def _utf8_text(data: bytes) -> str:
    """The agent's ConvertFrom-XuBytes: UTF-8, a BOM dropped, bad bytes replaced."""
    if data.startswith(UTF8_BOM):
        data = data[3:]
    return data.decode("utf-8", errors="replace")


def _sha256(data: bytes) -> str:
    return sha256_hex(data)


# -- files ------------------------------------------------------------------------------------


def _existing_file(host: Host, windows_path: str) -> Path | None:
    """[IO.File]::Exists: false for a folder and for any path that cannot be resolved."""
    try:
        path = host.fs.resolve(windows_path)
    except PrimitiveError:
        return None
    return path if path.is_file() else None


def _write_atomic(host: Host, windows_path: str, data: bytes, backup: str | None) -> None:
    """The agent's Write-XuAtomic: a temp file beside the target, then File.Replace (with backup) or File.Move."""
    target = host.fs.resolve(windows_path)
    if not host.fs.drive_exists(windows_path):
        raise PrimitiveError("DirectoryNotFoundException", f"Could not find a part of the path '{windows_path}'.")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        folder = host.fs.to_windows(target.parent)
        raise PrimitiveError(
            "IOException", f"Cannot create '{folder}' because a file or directory with the same name already exists."
        ) from exc
    temporary = target.with_name(target.name + ".xutls.tmp")
    try:
        temporary.write_bytes(data)
        if target.is_file():
            if backup is not None:
                backup_path = host.fs.resolve(backup)
                if not backup_path.parent.is_dir():
                    raise PrimitiveError("DirectoryNotFoundException", f"Could not find a part of the path '{backup}'.")
                os.replace(target, backup_path)
            os.replace(temporary, target)
        elif target.exists():
            raise PrimitiveError("IOException", "Cannot create a file when that file already exists.")
        else:
            os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def _move_file(host: Host, source: Path, destination: str) -> None:
    """[IO.File]::Move: a rename (one volume); the destination must not exist, unless it is the file itself."""
    if not host.fs.drive_exists(destination):
        raise PrimitiveError("DirectoryNotFoundException", "Could not find a part of the path.")
    target = host.fs.resolve(destination)
    if target.exists() and not target.samefile(source):
        raise PrimitiveError("IOException", "Cannot create a file when that file already exists.")
    if not target.parent.is_dir():
        raise PrimitiveError("DirectoryNotFoundException", "Could not find a part of the path.")
    if not target.exists():
        os.rename(source, target)


def _report_write(host: Host, windows_path: str, event: str, backup: str | None, digest: str) -> None:
    path = host.fs.resolve(windows_path)
    file_name = normalise_windows_path(windows_path)
    if host.is_settings_file(path):
        host.emit(event, file=file_name, backup=backup, sha256=digest)
    else:
        host.emit("journal", name=file_name, action="write" if event == "settings_write" else "restore")


# -- primitives -------------------------------------------------------------------------------


async def discover(host: Host, a: Args) -> Result:
    service = host.service
    if a.get("service_name"):
        found = as_text(a.get("service_name")).casefold() == service.name.casefold()
    else:
        wanted = a.get("service_display_name")
        found = wanted is not None and as_text(wanted).casefold() == service.display_name.casefold()
    install_dir = as_text(a.get("install_dir")) or None
    if found and install_dir is None:
        install_dir = service.image_path.strip().strip('"').rsplit("\\", 1)[0]
    files = []
    for item in as_items(a.get("files")):
        relative = as_text(item)
        entry: Result = {"path": item, "full_path": None, "exists": False, "content": None, "sha256": None}
        if is_path_rooted(relative):
            entry["full_path"] = relative
        elif install_dir:
            entry["full_path"] = join_windows_path(install_dir, relative)
        entry.update(bom=False, utf8_valid=False, backups=_backups_beside(host, str(entry["full_path"])) if entry["full_path"] else [])
        path = _existing_file(host, str(entry["full_path"])) if entry["full_path"] else None
        if path is not None:
            data = path.read_bytes()
            bom = data.startswith(UTF8_BOM)
            try:
                content: str | None = data[3 if bom else 0 :].decode("utf-8")
            except UnicodeDecodeError:
                content = None
            entry.update(exists=True, content=content, bom=bom, utf8_valid=content is not None, sha256=_sha256(data))
        files.append(entry)
    install_dir_exists = False
    if install_dir is not None:
        try:
            install_dir_exists = host.fs.resolve(install_dir).is_dir()
        except PrimitiveError:
            install_dir_exists = False
    return {
        "computer": {"hostname": host.name, "domain": host.identity.domain, "os_version": host.os_version},
        "service": service.describe() if found else None,
        "install_dir": install_dir,
        "install_dir_exists": install_dir_exists,
        "files": files,
    }


async def cert_list(host: Host, a: Args) -> Result:
    wanted = None
    if a.get("thumbprints") is not None:
        wanted = {normalise_thumbprint(item) for item in as_items(a.get("thumbprints"))}
    store = host.stores.open(as_text(a.get("store")) or "My")
    entries = store.all_entries() if a.get("include_archived") is True else store.entries()
    return {"certificates": [e.listing() for e in entries if wanted is None or e.thumbprint in wanted]}


async def cert_check(host: Host, a: Args) -> Result:
    # A guard for what follows it in the same call: the settings are about to name this certificate.
    thumbprint = normalise_thumbprint(a.get("thumbprint"))
    entry = host.stores.my.get(thumbprint)
    if entry is None:
        raise PrimitiveError("NotFound", f"{thumbprint} is not in LocalMachine\\My")
    if entry.key is None:
        raise PrimitiveError("NotFound", f"{thumbprint} is in LocalMachine\\My without its private key")
    return {"thumbprint": thumbprint, "has_private_key": True}


async def pfx_import(host: Host, a: Args) -> Result:
    if not a.get("pfx_b64"):
        raise PrimitiveError("InvalidArgument", "pfx_b64 is required")
    try:
        data = base64.b64decode(re.sub(r"\s", "", as_text(a.get("pfx_b64"))), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PrimitiveError("FormatException", BASE64_ERROR) from exc
    password = a.get("password")
    if not host.reads_pbes2_pfx and (_PBES2_OID in data or pfx_mac_algorithm(data) not in (None, SHA1_OID)):
        # Windows Server 2016's PFXImportCertStore knows no PBES2 and takes the file for one with another password. It predates
        # the SHA-256 MAC of Windows' own AES export (1709 / Server 2019); unverified whether it checks one: the lab refuses it.
        raise PrimitiveError("CryptographicException", "The specified network password is not correct.", hresult=ERROR_INVALID_PASSWORD)
    try:
        contents = pfx_from_portable(await offload.run(read_pfx_portable, data, None if password is None else as_text(password)))
    except PfxPasswordError as exc:
        message = "Cannot find the requested object." if exc.not_a_pfx else "The specified network password is not correct."
        raise PrimitiveError("CryptographicException", message) from exc
    if contents.key is None:
        raise PrimitiveError("InvalidArgument", "the PFX holds no certificate with a private key")
    certificate = contents.certificate
    thumbprint = der_thumbprint(certificate.public_bytes(serialization.Encoding.DER))
    # The store is opened with IncludeArchived: an archived copy, or one without its key, is repaired from the PFX.
    old = host.stores.my.get(thumbprint, include_archived=True)
    present = old is not None and old.key is not None and not old.archived
    repaired = old is not None and not present
    if not present:
        # .NET Framework's Import (MachineKeySet, PersistKeySet) puts an RSA key in a legacy CSP unless the PFX names a KSP.
        provider = pfx_key_provider(data)
        container = KeyContainer(contents.key, provider, default_machine_key_acl(), exportable=bool(a.get("exportable")))
        entry = host.add_certificate(certificate, container, source="pfx_import", friendly_name=contents.friendly_name)
        if entry.archived:
            # X509Store.Add kept the archived flag of the entry it replaced; the agent clears it.
            entry.archived = False
            host.emit("cert_unarchive", thumbprint=thumbprint)
    # The PFX's intermediates go to LocalMachine\CA (also when the leaf was there already); roots go nowhere.
    chain_added: list[str] = []
    intermediates = [other for other in contents.others if is_intermediate(other)]
    if intermediates:
        store = host.stores.open("CA")
        for other in intermediates:
            other_thumbprint = der_thumbprint(other.public_bytes(serialization.Encoding.DER))
            if other_thumbprint != thumbprint and store.get(other_thumbprint) is None:
                host.add_certificate(other, None, source="pfx_import", store=store)
                chain_added.append(other_thumbprint)
    return {"thumbprint": thumbprint, "already_present": present, "repaired": repaired, "chain_added": chain_added}


def _backups_beside(host: Host, full_path: str) -> list[str]:
    """[IO.Directory]::GetFiles(parent, '<name>.*.bak'), sorted as Sort-Object sorts strings (case-insensitively).

    As on Windows, a three-letter extension in the pattern matches every extension that starts with it
    (``*.bak`` finds ``x.bakup`` too): the caller must filter, and the lab makes it."""
    parent, _sep, name = full_path.rpartition("\\")
    try:
        folder = host.fs.resolve(parent)
    except PrimitiveError:
        return []
    if not folder.is_dir():
        return []
    prefix = name.casefold() + "."
    found = [f"{parent}\\{child.name}" for child in folder.iterdir()
             if child.is_file() and child.name.casefold().startswith(prefix) and child.suffix.casefold().startswith(".bak")]
    return sorted(found, key=str.casefold)


async def require_served(host: Host, required: object) -> None:
    """Each listed port must present its certificate (and answer GET http_path with one of http_statuses), probed by port_probe itself."""
    for item in as_items(required):
        fields = item if isinstance(item, dict) else {}
        port = as_int(fields.get("port"))
        wanted = normalise_thumbprint(fields.get("thumbprint"))
        path = as_text(fields.get("http_path")) or None
        seen = await port_probe(
            host,
            {"host": "localhost", "server_name": fields.get("server_name"), "port": port, "tls": True, "http_path": path, "timeout_ms": 5000},
        )
        der_b64 = seen["der_b64"]
        served = der_thumbprint(base64.b64decode(der_b64)) if isinstance(der_b64, str) and der_b64 else None
        problem = seen["error"] or seen["tls_error"]
        if served != wanted or problem:
            what = served or "no certificate"
            if problem:
                what += f" ({problem})"
            raise PrimitiveError("PreconditionFailed", f"port {port} presents {what}, not {wanted}")
        if path is not None:
            statuses = [as_int(status) for status in as_items(fields.get("http_statuses"))]
            if seen["http_status"] not in statuses:
                wanted_statuses = " or ".join(str(status) for status in statuses)
                raise PrimitiveError("PreconditionFailed", f"GET {path} on port {port} answered {seen['http_status']}, not {wanted_statuses}")


async def cert_remove(host: Host, a: Args) -> Result:
    thumbprint = normalise_thumbprint(a.get("thumbprint"))
    await require_served(host, a.get("require_served"))
    store = host.stores.open(as_text(a.get("store")) or "My")
    return {"removed": host.remove_certificate(thumbprint, store)}


async def served_check(host: Host, a: Args) -> Result:
    # A guard for what follows it in the same call.
    await require_served(host, a.get("require_served"))
    return {"served": True}


async def file_check(host: Host, a: Args) -> Result:
    # A guard for what follows it in the same call.
    path = _rooted(a.get("path"), "path")
    expected = a.get("sha256")
    if not isinstance(expected, str) or not expected:
        raise PrimitiveError("InvalidArgument", "sha256 must be a hex digest or absent")
    expected = expected.lower()
    existing = _existing_file(host, path)
    found = _sha256(existing.read_bytes()) if existing is not None else None
    if expected == "absent":
        if found is not None:
            raise PrimitiveError("HashMismatch", f"{path} exists")
    elif found is None:
        raise PrimitiveError("HashMismatch", f"{path} does not exist")
    elif expected != found:
        raise PrimitiveError("HashMismatch", f"{path} has sha256 {found}, not {expected}")
    return {"sha256": found}


async def key_grant_read(host: Host, a: Args) -> Result:
    thumbprint = normalise_thumbprint(a.get("thumbprint"))
    if not a.get("account"):
        raise PrimitiveError("InvalidArgument", "account is required")
    entry = host.stores.my.get(thumbprint)
    if entry is None or entry.key is None:
        raise PrimitiveError("NotFound", f"no certificate with a private key has thumbprint {thumbprint}")
    sid = account_sid(as_text(a.get("account")))
    changed = entry.key.grant_read(sid)
    if changed:
        host.emit("key_acl", thumbprint=thumbprint, account=entry.key.acl[-1].identity, sid=sid)
    return {"changed": changed, "sid": sid}


async def cert_renew_reuse_key(host: Host, a: Args) -> Result:
    thumbprint = normalise_thumbprint(a.get("thumbprint"))
    old = host.stores.my.get(thumbprint)
    if old is None:
        raise PrimitiveError("NotFound", f"no certificate has thumbprint {thumbprint}")
    run_as = "machine" if a.get("run_as") is None else as_text(a.get("run_as"))
    if run_as not in ("machine", "caller"):
        raise PrimitiveError("InvalidArgument", "run_as must be machine or caller")
    if run_as == "machine":
        # Invoke-XuAsSystem keeps certreq's output in the collection's folder.
        initialize_journal_dir(host)
    timeout_s = 300.0 if a.get("timeout_s") is None else float(as_int(a.get("timeout_s")))
    code, output, swept = certreq_renew(host, thumbprint, run_as, timeout_s)
    if code != 0:
        raise PrimitiveError("CertreqFailed", f"certreq exited with {code}: {output}")
    public_key = old.certificate.public_key()
    candidates = [
        e for e in host.stores.my.entries() if e.thumbprint != thumbprint and e.certificate.public_key() == public_key
    ]
    if not candidates:
        raise PrimitiveError("NotFound", f"certreq succeeded but no new certificate with the key of {thumbprint} is in the store")
    newest = max(candidates, key=lambda e: e.certificate.not_valid_before_utc)
    return {"thumbprint": newest.thumbprint, "output": output, "exit_code": code, "enrolled_as": run_as, "swept": swept, "sweep_error": None}


def _enrolment_arguments(a: Args) -> tuple[str, list[str], str | None, str, int, str]:
    """cert_enroll's checks, in the agent's order: template, dns_names, ca_config, key_provider, key_length, run_as."""
    template = _name(a.get("template"), TEMPLATE_NAME_PATTERN, "template")
    bad_names = "dns_names must be a non-empty list of DNS names"
    names = []
    for item in as_items(a.get("dns_names")):
        if not isinstance(item, str) or SERVER_NAME.match(item) is None:
            raise PrimitiveError("InvalidArgument", bad_names)
        names.append(item)
    if not names:
        raise PrimitiveError("InvalidArgument", bad_names)
    config = None if a.get("ca_config") is None else _name(a.get("ca_config"), CA_CONFIG_PATTERN, "ca_config")
    provider = DEFAULT_KEY_PROVIDER if a.get("key_provider") is None else as_text(a.get("key_provider"))
    if provider not in KEY_PROVIDERS:
        raise PrimitiveError("InvalidArgument", "key_provider must be schannel_csp or software_ksp")
    key_length = 2048 if a.get("key_length") is None else as_int(a.get("key_length"))
    if key_length not in ENROL_KEY_LENGTHS:
        raise PrimitiveError("InvalidArgument", "key_length must be 2048, 3072 or 4096")
    run_as = "machine" if a.get("run_as") is None else as_text(a.get("run_as"))
    if run_as not in ("machine", "caller"):
        raise PrimitiveError("InvalidArgument", "run_as must be machine or caller")
    if run_as == "machine" and config is None:
        # certreq -submit without -config asks on a desktop which CA to use; the SYSTEM task's session 0 has none.
        raise PrimitiveError("InvalidArgument", "ca_config is required as the machine (ca_list names the CAs)")
    return template, names, config, provider, key_length, run_as


# The agent finds a pending request's id by the form of the line that quotes it, not by certreq's (translatable) label.
PENDING_REQUEST_ID = re.compile(r'^[^:\r\n]{1,40}:\s*"(\d+)"\s*$', re.M)


async def cert_enroll(host: Host, a: Args) -> Result:
    """certreq -new, -submit and -accept with a template, as the machine or in the session (enrolment.certreq_enrol)."""
    template, names, config, provider, key_length, run_as = _enrolment_arguments(a)
    # The request file goes into the collection's folder, which certreq (as SYSTEM) reads it from.
    initialize_journal_dir(host)
    # certreq -new makes the key, in the session too; a pool key stands in for a 2048-bit one (generating is slow).
    if key_length == 2048:
        key = host.pick_key()
    else:
        key = await asyncio.get_running_loop().run_in_executor(None, generate_key, key_length)
    timeout_s = 300.0 if a.get("timeout_s") is None else float(as_int(a.get("timeout_s")))
    outcome = certreq_enrol(host, EnrolmentRequest(template, tuple(names), config, key, provider), run_as, timeout_s)
    if outcome.exit_code != 0:
        raise PrimitiveError("CertreqFailed", f"certreq exited with {outcome.exit_code}: {outcome.output}")
    if outcome.thumbprint is None:
        if (pending := PENDING_REQUEST_ID.search(outcome.output)) is not None:
            raise PrimitiveError("EnrollPending", f"request {pending.group(1)} is pending at the CA: {outcome.output}")
        raise PrimitiveError("CertreqFailed", f"certreq wrote no certificate: {outcome.output}")
    entry = host.stores.my.get(outcome.thumbprint)
    if entry is None or entry.key is None:
        raise PrimitiveError("NotFound", f"certreq accepted {outcome.thumbprint} but My lacks it or its private key")
    return {"thumbprint": outcome.thumbprint, "output": outcome.output, "exit_code": outcome.exit_code, "enrolled_as": run_as,
            "swept": list(outcome.swept), "sweep_error": None}


async def ca_list(host: Host, a: Args) -> Result:
    """The forest's enterprise CAs and their templates, read from AD in a SYSTEM task (the agent's $CaListScript)."""
    timeout_s = 120.0 if a.get("timeout_s") is None else float(as_int(a.get("timeout_s")))
    initialize_journal_dir(host)
    templates = sorted(t.name for t in host.enterprise_ca.templates.values())
    cas, swept = host.certreq.run(timeout_s, {"certreq-<id>.txt": b""}, lambda _id: [
        {"config": service.config, "templates": list(templates)} for service in host.enterprise_ca.services
    ])
    return {"cas": cas, "swept": swept, "sweep_error": None}


async def file_write(host: Host, a: Args) -> Result:
    path = _rooted(a.get("path"), "path")
    content = a.get("content")
    if not isinstance(content, str):
        raise PrimitiveError("InvalidArgument", "content must be text")
    backup = _rooted(a.get("backup_path"), "backup_path") if a.get("backup_path") is not None else None
    existing = _existing_file(host, path)
    previous = _sha256(existing.read_bytes()) if existing is not None else None
    if a.get("expected_sha256") is not None:
        expected = as_text(a.get("expected_sha256")).lower()
        if expected == "absent":
            if previous is not None:
                raise PrimitiveError("HashMismatch", f"{path} exists")
        elif previous is None:
            raise PrimitiveError("HashMismatch", f"{path} does not exist")
        elif expected != previous:
            raise PrimitiveError("HashMismatch", f"{path} has sha256 {previous}, not {expected}")
    if previous is None:
        backup = None
    data = (UTF8_BOM if a.get("bom") is True else b"") + content.encode("utf-8")
    _write_atomic(host, path, data, backup)
    digest = _sha256(data)
    _report_write(host, path, "settings_write", backup, digest)
    return {"sha256": digest, "previous_sha256": previous, "backup_path": backup}


async def file_restore(host: Host, a: Args) -> Result:
    backup = _rooted(a.get("backup_path"), "backup_path")
    path = _rooted(a.get("path"), "path")
    source = _existing_file(host, backup)
    if source is None:
        raise PrimitiveError("NotFound", f"backup {backup} does not exist")
    keep = None
    if a.get("keep_current_path") is not None and _existing_file(host, path) is not None:
        keep = _rooted(a.get("keep_current_path"), "keep_current_path")
    data = source.read_bytes()
    _write_atomic(host, path, data, keep)
    digest = _sha256(data)
    _report_write(host, path, "settings_restore", backup, digest)
    return {"sha256": digest, "kept_current_path": keep}


async def file_remove(host: Host, a: Args) -> Result:
    path = _rooted(a.get("path"), "path")
    backup = _rooted(a.get("backup_path"), "backup_path") if a.get("backup_path") is not None else None
    existing = _existing_file(host, path)
    if existing is None:
        return {"removed": False, "backup_path": None}
    file_name = normalise_windows_path(path)
    is_settings = host.is_settings_file(existing)
    if backup is None:
        existing.unlink()
    else:
        _move_file(host, existing, backup)
    if is_settings:
        host.emit("settings_remove", file=file_name, backup=backup)
    else:
        host.emit("journal", name=file_name, action="remove")
    return {"removed": True, "backup_path": backup}


async def _wait_for_ports(host: Host, ports: list[int], elapsed: Callable[[], float], limit: float) -> dict[int, bool]:
    """Test-XuPort on each port until all are open, the service is no longer running, or the limit is reached."""
    is_open = dict.fromkeys(ports, False)
    while True:
        for port in ports:
            if not is_open[port]:
                is_open[port] = await host.local_port_open(port, PORT_TEST_TIMEOUT_S)
        if host.service.state != "Running" or all(is_open.values()) or elapsed() >= limit:
            return is_open
        await asyncio.sleep(PORT_POLL_S)


def _service_named(host: Host, name: str) -> XuService:
    if not name:
        raise PrimitiveError("InvalidArgument", "name is required")
    if name.casefold() != host.service.name.casefold():
        # ServiceController(name).ServiceName for a service that does not exist (GenerateNames: NoService, inner Win32 1060).
        raise PrimitiveError(
            "InvalidOperationException",
            f"Service '{name}' was not found on computer '.'. The specified service does not exist as an installed service",
            inner=[InnerException("Win32Exception", native_code=ERROR_SERVICE_DOES_NOT_EXIST)],
        )
    return host.service


async def service_restart(host: Host, a: Args) -> Result:
    """The agent's loop: wait out StartPending, stop the running dependents (within the limit), stop, wait out StopPending,
    start, wait for the ports; the dependents stopped here are started again in every outcome."""
    name = as_text(a.get("name"))
    service = _service_named(host, name)
    limit = DEFAULT_SERVICE_TIMEOUT_S if a.get("timeout_s") is None else float(as_text(a.get("timeout_s")))
    ports = [as_int(port) for port in as_items(a.get("wait_ports"))]
    loop = asyncio.get_running_loop()
    began = loop.time()
    stopped: list[str] = []

    def elapsed() -> float:
        return loop.time() - began

    async def wait_leaves(states: tuple[str, ...], state: Callable[[], str]) -> None:
        while state() in states and elapsed() < limit:
            await asyncio.sleep(SERVICE_POLL_S)

    def dependent_state(dependent_name: str) -> Callable[[], str]:
        return lambda: next(d.state for d in service.dependents if d.name == dependent_name)

    async def stop_dependents() -> str | None:
        """ServiceController.Stop() would wait 30 s for each, whatever the limit: each is stopped and waited for here."""
        for dependent in service.dependents:
            if dependent.state == "Stopped":
                continue
            if dependent.state != "StopPending":
                stopped.append(dependent.name)
                service.stop_dependent(dependent.name)
            await wait_leaves(("Running", "StopPending", "StartPending"), dependent_state(dependent.name))
            if dependent.state != "Stopped":
                return f"the dependent service {dependent.name} did not stop within {limit:g} s ({dependent.state}), so {name} was not stopped"
        return None

    async def stop_and_start() -> str | None:
        await wait_leaves(("StartPending",), lambda: service.state)
        if service.state == "StartPending":
            return f"the service did not finish starting within {limit:g} s (StartPending)"
        problem = await stop_dependents()
        if problem is not None:
            return problem
        if service.state not in ("Stopped", "StopPending"):
            await service.stop()
        await wait_leaves(("Running", "StopPending"), lambda: service.state)
        if service.state != "Stopped":
            return f"the service did not stop within {limit:g} s ({service.state})"
        await service.start()
        restarted.append(True)
        await asyncio.sleep(SERVICE_POLL_S)
        await wait_leaves(("StartPending",), lambda: service.state)
        if service.state == "Stopped":
            return "the service stopped while starting"
        return None

    restarted: list[bool] = []
    try:
        start_error = await stop_and_start()
    except (ServiceStartError, ServiceStopError) as exc:
        start_error = str(exc)
    finally:
        for dependent_name in reversed(stopped):
            if dependent_state(dependent_name)() == "Stopped":
                with contextlib.suppress(ServiceStartError):
                    service.start_dependent(dependent_name)
    is_open = await _wait_for_ports(host, ports, elapsed, limit) if restarted else dict.fromkeys(ports, False)
    states = {dependent.name: dependent.state for dependent in service.dependents}
    return {
        "started": bool(restarted) and service.state == "Running" and all(is_open.values()),
        "restarted": bool(restarted),
        "state": service.state,
        "start_error": start_error,
        "ports": [{"port": port, "open": is_open[port]} for port in ports],
        "dependents": [{"name": dependent, "state": states[dependent]} for dependent in stopped],
        "elapsed_s": round(elapsed(), 1),
    }


FIREWALL_RULE_CLASS = "MSFT_NetFirewallRule"
SCHEDULED_TASK_CLASS = "MSFT_ScheduledTask"


def _group_not_found(group: str) -> PrimitiveError:
    """Get-NetFirewallRule -Group for a group without rules. Unverified: which CIM property the error names (the lab says
    RuleGroup, the property -Group filters on); the controller's table matches the prefix CmdletizationQuery_NotFound."""
    return cim_query_not_found("Get-NetFirewallRule", FIREWALL_RULE_CLASS, "RuleGroup", group)


def _task_not_found(name: str) -> PrimitiveError:
    """Get-ScheduledTask -TaskName for a task that does not exist (as public transcripts show it for -TaskName)."""
    return cim_query_not_found("Get-ScheduledTask", SCHEDULED_TASK_CLASS, "TaskName", name)


async def fw_get(host: Host, a: Args) -> Result:
    """Each query as Windows answers it: a group without rules is the query's not-found error record, reported beside it."""
    group = _name(a.get("group"), TASK_NAME_PATTERN, "group")
    host.firewall.require_service("Get-NetFirewallRule")
    persistent = host.firewall.group_rules(group)
    active = host.firewall.active_group_rules(group)
    host.firewall.require_service("Get-NetFirewallProfile")
    return {
        "rules": [rule.as_json() for rule in persistent] if persistent else None,
        "rules_error": None if persistent else _group_not_found(group).as_json(),
        "active_rules": [rule.name for rule in active] if active else None,
        "active_rules_error": None if active else _group_not_found(group).as_json(),
        "profiles": host.firewall.profiles_json(),
    }


async def fw_set(host: Host, a: Args) -> Result:
    """Remove the group's rules, then New-NetFirewallRule each; a rejected rule puts the previous rules back.

    The group's rules are read first; reading an empty group fails on Windows, and only an error the request's
    absent_errors name (the controller's "not found") lets the call go on with no previous rules."""
    group = _name(a.get("group"), TASK_NAME_PATTERN, "group")
    wanted = as_items(a.get("rules"))
    for rule in wanted:
        if not isinstance(rule, dict) or not rule.get("name") or not rule.get("display_name"):
            raise PrimitiveError("InvalidArgument", "every rule needs name and display_name")
    host.firewall.require_service("Get-NetFirewallRule")
    previous = host.firewall.group_rules(group)
    if not previous and not is_absent(absent := _group_not_found(group)):
        raise absent
    removed = host.firewall.remove_group(group)
    added = 0
    try:
        for rule in wanted:
            assert isinstance(rule, dict)
            host.firewall.add(FirewallRule.from_args(group, rule))
            added += 1
    except PrimitiveError:
        host.firewall.remove_group(group)
        for rule in previous:
            host.firewall.add(rule)
        host.emit_firewall(group, removed=removed, added=added, restored=len(previous))
        raise
    host.emit_firewall(group, removed=removed, added=added)
    return {"removed": removed, "added": added}


async def task_get(host: Host, a: Args) -> Result:
    name = _name(a.get("name"), TASK_NAME_PATTERN, "name")
    task = host.tasks.get(name)
    if task is None:
        return {"task": None, "task_error": _task_not_found(name).as_json()}
    next_run = iso_utc(task.run_at) if task.run_at > host.clock.now() else None
    return {"task": {"name": task.name, "state": "Ready", "next_run_utc": next_run, "description": task.description}, "task_error": None}


# A gate's longest auto-open delay (7 days), as the agent checks it.
MAX_TASK_DELAY_S = 7 * 24 * 3600


async def task_register(host: Host, a: Args) -> Result:
    """The trigger is the host's own now plus `delay_s`, rounded up to the whole second: the controller's clock never enters."""
    name = _name(a.get("name"), TASK_NAME_PATTERN, "name")
    group = _name(a.get("fw_group_to_remove"), TASK_NAME_PATTERN, "fw_group_to_remove")
    delay = a.get("delay_s")
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 < delay <= MAX_TASK_DELAY_S:
        raise PrimitiveError("InvalidArgument", f"delay_s must be a number of seconds above 0, at most {MAX_TASK_DELAY_S}")
    description = None if a.get("description") is None else as_text(a.get("description"))
    run_at = ceil_second(host.clock.now() + timedelta(seconds=float(delay)))
    host.tasks.register(name, run_at, group, description)
    return {"registered": True, "run_at_utc": iso_utc(run_at)}


async def task_remove(host: Host, a: Args) -> Result:
    name = _name(a.get("name"), TASK_NAME_PATTERN, "name")
    if host.tasks.get(name) is None:
        if is_absent(absent := _task_not_found(name)):
            return {"removed": False}
        raise absent
    return {"removed": host.tasks.remove(name)}


EVENT_SOURCE = "xtractuniversal.tls"
EVENT_TYPES = ("Information", "Warning", "Error")
MAX_EVENT_MESSAGE = 31000


async def event_write(host: Host, a: Args) -> Result:
    """EventLog.WriteEntry under the collection's source in the Application log, registered on first use."""
    event_id = 0 if a.get("event_id") is None else as_int(a.get("event_id"))
    if not 1 <= event_id <= 65535:
        raise PrimitiveError("InvalidArgument", "event_id must be 1 to 65535")
    entry_type = a.get("entry_type")
    if entry_type not in EVENT_TYPES:
        raise PrimitiveError("InvalidArgument", "entry_type must be Information, Warning or Error")
    message = as_text(a.get("message"))
    if not 1 <= len(message) <= MAX_EVENT_MESSAGE:
        raise PrimitiveError("InvalidArgument", "message must be 1 to 31000 characters")
    registered = EVENT_SOURCE not in host.event_sources
    if registered:
        host.event_sources.add(EVENT_SOURCE)
    host.emit("eventlog", log="Application", source=EVENT_SOURCE, event_id=event_id, entry_type=entry_type, message=message)
    return {"log": "Application", "source": EVENT_SOURCE, "registered": registered}


async def journal_read(host: Host, a: Args) -> Result:
    path = host.journal_path(_name(a.get("name"), JOURNAL_NAME_PATTERN, "name"))
    check_journal_dir(host)
    existing = _existing_file(host, path)
    if existing is None:
        return {"exists": False, "content": None, "sha256": None}
    data = existing.read_bytes()
    return {"exists": True, "content": _utf8_text(data), "sha256": _sha256(data)}


async def journal_write(host: Host, a: Args) -> Result:
    name = _name(a.get("name"), JOURNAL_NAME_PATTERN, "name")
    path = host.journal_path(name)
    check_journal_dir(host)
    content = a.get("content")
    if a.get("expected_sha256") is not None:
        current = _existing_file(host, path)
        found = _sha256(current.read_bytes()) if current is not None else None
        expected = as_text(a.get("expected_sha256")).lower()
        if expected == "absent" and found is not None:
            raise PrimitiveError("HashMismatch", f"journal {name} exists")
        if expected not in ("absent", found):
            raise PrimitiveError("HashMismatch", f"journal {name} has sha256 {found}, not {expected}")
    if content is None:
        existing = _existing_file(host, path)
        if existing is not None:
            existing.unlink()
            host.emit("journal", name=name, action="remove")
        return {"path": path}
    initialize_journal_dir(host)
    _write_atomic(host, path, as_text(content).encode("utf-8"), None)
    host.emit("journal", name=name, action="write")
    return {"path": path}


PRIMITIVES: dict[str, Primitive] = {
    "discover": discover,
    "cert_list": cert_list,
    "cert_check": cert_check,
    "pfx_import": pfx_import,
    "cert_remove": cert_remove,
    "served_check": served_check,
    "file_check": file_check,
    "key_grant_read": key_grant_read,
    "cert_renew_reuse_key": cert_renew_reuse_key,
    "cert_enroll": cert_enroll,
    "ca_list": ca_list,
    "file_write": file_write,
    "file_restore": file_restore,
    "file_remove": file_remove,
    "service_restart": service_restart,
    "port_probe": port_probe,
    "fw_get": fw_get,
    "fw_set": fw_set,
    "task_get": task_get,
    "task_register": task_register,
    "task_remove": task_remove,
    "event_write": event_write,
    "journal_read": journal_read,
    "journal_write": journal_write,
}
