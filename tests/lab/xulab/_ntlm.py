"""NTLM pieces of the lab's WS-Management listener.

Two things live here: the process-wide NTLM user file that pyspnego's acceptor
reads (it takes credentials only from the file named by ``NTLM_USER_FILE``), and
the MS-WSMV 2.2.9.1.1 framing of messages sealed with the NTLM session keys.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import struct
import tempfile
import threading

import spnego

# The functions pyspnego itself derives the hashes with, so the file holds exactly what it would compute.
from spnego._ntlm_raw.crypto import lmowfv1, ntowfv1

from .processes import process_alive

ENCRYPTED_PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
ENCRYPTED_CONTENT_TYPE = f'multipart/encrypted;protocol="{ENCRYPTED_PROTOCOL}";boundary="Encrypted Boundary"'

_BOUNDARY = b"--Encrypted Boundary"
_OCTET_STREAM_HEADER = b"\tContent-Type: application/octet-stream\r\n"
_ORIGINAL_LENGTH = re.compile(rb"OriginalContent: [^\r\n]*Length=(\d+)")
_NTLM_SIGNATURE_SIZE = 16
_NTLMSSP_MAGIC = b"NTLMSSP\x00"

NEGOTIATE_MESSAGE = 1
AUTHENTICATE_MESSAGE = 3

_DIRECTORY_PREFIX = "xulab-ntlm-"
_DIRECTORY_NAME = re.compile(rf"^{_DIRECTORY_PREFIX}(\d+)-")

# Characters that would break the user file's lines; in a name, a backslash would split it into a domain and a user.
_FORBIDDEN_IN_USER_FILE = (":", "\r", "\n")
_FORBIDDEN_IN_NAMES = ("\\",)


class EncryptedBodyError(ValueError):
    """The request body is not a well-formed, correctly sealed MS-WSMV message."""


def new_acceptor() -> spnego.ContextProxy:
    """A fresh NTLM acceptor context, always pyspnego's own NTLM code (never GSSAPI)."""
    return spnego.server(protocol="ntlm", options=spnego.NegotiateOptions.use_ntlm)


def ntlm_message_type(token: bytes) -> int | None:
    """1, 2 or 3 for a raw NTLMSSP token; None for anything else (e.g. SPNEGO-wrapped)."""
    if len(token) < 12 or not token.startswith(_NTLMSSP_MAGIC):
        return None
    message_type: int = struct.unpack_from("<I", token, 8)[0]
    return message_type


def is_encrypted_content_type(content_type: str) -> bool:
    lowered = content_type.lower()
    return "multipart/encrypted" in lowered and ENCRYPTED_PROTOCOL.lower() in lowered


def seal_message(context: spnego.ContextProxy, plaintext: bytes) -> bytes:
    """The response body carrying ``plaintext`` sealed with the connection's NTLM keys."""
    wrapped = context.wrap(plaintext, encrypt=True).data
    signature, sealed = wrapped[:_NTLM_SIGNATURE_SIZE], wrapped[_NTLM_SIGNATURE_SIZE:]
    return b"".join(
        (
            _BOUNDARY,
            b"\r\n\tContent-Type: ",
            ENCRYPTED_PROTOCOL.encode("ascii"),
            b"\r\n\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=",
            str(len(plaintext)).encode("ascii"),
            b"\r\n",
            _BOUNDARY,
            b"\r\n",
            _OCTET_STREAM_HEADER,
            struct.pack("<i", len(signature)),
            signature,
            sealed,
            _BOUNDARY,
            b"--\r\n",
        )
    )


def unseal_message(context: spnego.ContextProxy, body: bytes) -> bytes:
    """The plaintext of a sealed request body; raises EncryptedBodyError if it is not one."""
    length_match = _ORIGINAL_LENGTH.search(body)
    if length_match is None:
        raise EncryptedBodyError("no OriginalContent length")
    plaintext_length = int(length_match.group(1))
    payload_start = body.find(_OCTET_STREAM_HEADER, length_match.end())
    if payload_start < 0:
        raise EncryptedBodyError("no octet-stream part")
    position = payload_start + len(_OCTET_STREAM_HEADER)
    if len(body) < position + 4:
        raise EncryptedBodyError("truncated signature length")
    signature_length: int = struct.unpack_from("<i", body, position)[0]
    if signature_length != _NTLM_SIGNATURE_SIZE:
        raise EncryptedBodyError("unexpected signature length")
    position += 4
    # NTLM seals with RC4, a stream cipher: the sealed part is exactly as long as the plaintext.
    sealed_end = position + signature_length + plaintext_length
    if not body.startswith(_BOUNDARY + b"--", sealed_end):
        raise EncryptedBodyError("sealed data does not match its declared length")
    try:
        return context.unwrap(body[position:sealed_end]).data
    except Exception as error:  # pyspnego raises several types for a bad signature or sequence number
        raise EncryptedBodyError("signature check failed") from error


class _UserFile:
    """The NTLM user file shared by every NTLM listener of this process.

    Its lines are in the smbpasswd form, with the account's LM and NT hashes, which pyspnego reads as they are. In
    the Heimdal form (``DOMAIN:USER:PASSWORD``) pyspnego derives both hashes from the password for every
    authentication (the LM hash with DES in Python: 7 ms of the lab's CPU per connection, one per Ansible task).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (DOMAIN, USER) upper-cased, as pyspnego compares them, -> the line's (domain, user, password)
        self._entries: dict[tuple[str, str], tuple[str, str, str]] = {}
        # password -> its smbpasswd LM and NT hash fields
        self._hashes: dict[str, tuple[str, str]] = {}
        self._directory: str | None = None
        self._owner_pid = 0

    def register(self, username: str, password: str, domain: str) -> str:
        for value in (username, password, domain):
            if any(character in value for character in _FORBIDDEN_IN_USER_FILE):
                raise ValueError("NTLM user names, domains and passwords must not contain ':' or line breaks")
        if any(character in value for value in (username, domain) for character in _FORBIDDEN_IN_NAMES):
            raise ValueError("NTLM user names and domains must not contain '\\'")
        # pyspnego matches the exact (domain, user) pair the client sent; Windows accepts all these forms.
        forms = [("", username)]
        if domain:
            forms += [(domain, username), ("", f"{username}@{domain}")]
        with self._lock:
            for form_domain, form_user in forms:
                key = (form_domain.upper(), form_user.upper())
                known = self._entries.get(key)
                if known is not None and known[2] != password:
                    raise ValueError(f"NTLM account {form_domain}\\{form_user} is already registered with another password")
                self._entries[key] = (form_domain, form_user, password)
            if password not in self._hashes:
                self._hashes[password] = (lmowfv1(password).hex().upper(), ntowfv1(password).hex().upper())
            path = self._write()
        os.environ["NTLM_USER_FILE"] = path
        return path

    def _write(self) -> str:
        if self._directory is None or self._owner_pid != os.getpid():
            # A forked child gets its own directory so neither process deletes the other's file at exit.
            _remove_orphaned_directories()
            self._owner_pid = os.getpid()
            self._directory = tempfile.mkdtemp(prefix=f"{_DIRECTORY_PREFIX}{self._owner_pid}-")
            atexit.register(_remove_directory, self._directory, self._owner_pid)
        path = os.path.join(self._directory, "users")
        staging = path + ".new"
        descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            # USERNAME:UID:LM_HASH:NT_HASH:ACCT_FLAGS:TIMESTAMP; pyspnego reads the domain from a DOMAIN\\ prefix.
            stream.writelines(
                f"{domain}\\{user}:0:{lm}:{nt}:[U]:LCT-00000000\n" if domain else f"{user}:0:{lm}:{nt}:[U]:LCT-00000000\n"
                for domain, user, password in self._entries.values()
                for lm, nt in [self._hashes[password]]
            )
        os.replace(staging, path)
        return path


def _remove_directory(directory: str, owner_pid: int) -> None:
    if os.getpid() == owner_pid:
        shutil.rmtree(directory, ignore_errors=True)


def _remove_orphaned_directories() -> None:
    """Removes user files of lab processes that were killed (atexit does not run on SIGTERM or SIGKILL)."""
    temporary = tempfile.gettempdir()
    for name in os.listdir(temporary):
        match = _DIRECTORY_NAME.match(name)
        if match is None or process_alive(int(match.group(1))):
            continue
        path = os.path.join(temporary, name)
        try:
            owner = os.stat(path).st_uid
        except OSError:
            continue  # another process removed it first
        if owner == os.getuid():
            shutil.rmtree(path, ignore_errors=True)


_USER_FILE = _UserFile()


def register_account(username: str, password: str, domain: str) -> str:
    """Makes ``username`` acceptable to every NTLM acceptor of this process; returns the user file's path."""
    return _USER_FILE.register(username, password, domain)
