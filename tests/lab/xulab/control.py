"""The client side of `DIR/control.sock`: one JSON request, one JSON answer."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from . import layout
from .errors import LabError

DEFAULT_TIMEOUT_S = 60.0
# A reset builds and provisions every host again: a 10-host lab takes about a second, a loaded machine longer.
RESET_TIMEOUT_S = 300.0


def request(directory: Path, op: str, timeout_s: float = DEFAULT_TIMEOUT_S, **fields: Any) -> Any:
    """Send `{"op": op, **fields}` to the lab in `directory`; its result, or LabError."""
    path = layout.control_socket(directory)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(timeout_s)
            connection.connect(str(path))
            connection.sendall(json.dumps({"op": op, **fields}).encode("utf-8") + b"\n")
            buffer = b""
            while not buffer.endswith(b"\n"):
                chunk = connection.recv(65536)
                if not chunk:
                    break
                buffer += chunk
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise LabError(f"no lab is running in {directory}") from exc
    except OSError as exc:
        raise LabError(f"cannot talk to the lab in {directory}: {exc}") from exc
    try:
        answer = json.loads(buffer)
    except ValueError as exc:
        raise LabError(f"the lab in {directory} gave no answer") from exc
    if not answer.get("ok"):
        raise LabError(str(answer.get("error")))
    return answer.get("result")
