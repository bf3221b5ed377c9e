"""Windows paths on a simulated host, mapped onto a folder of the lab machine.

`C:\\Program Files\\XtractUniversal\\config` lives at `<root>/C/Program Files/XtractUniversal/config`.
Names resolve case-insensitively, as NTFS does for Win32 callers, and malformed paths
fail with the exception .NET Framework raises for them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import PrimitiveError

_DRIVE = re.compile(r"^([A-Za-z]):")
_ILLEGAL_CHARS = set('<>"|?*') | {chr(code) for code in range(32)}
# The only volume a lab host has.
SYSTEM_DRIVE = "C"


def is_path_rooted(path: object) -> bool:
    """[IO.Path]::IsPathRooted: a leading separator or a drive letter."""
    return isinstance(path, str) and (path[:1] in ("\\", "/") or _DRIVE.match(path) is not None)


def split_windows_path(path: str) -> tuple[str, list[str]]:
    """Return (drive letter, normalised components) of a rooted Windows path, as GetFullPath resolves it."""
    if not isinstance(path, str) or not path.strip():
        raise PrimitiveError("ArgumentException", "The path is not of a legal form.")
    if any(char in _ILLEGAL_CHARS for char in path):
        raise PrimitiveError("ArgumentException", "Illegal characters in path.")
    if path[:2] in ("\\\\", "//", "\\/", "/\\"):
        raise PrimitiveError("IOException", "The network path was not found.")
    match = _DRIVE.match(path)
    if match is not None:
        drive, rest = match.group(1).upper(), path[match.end() :]
    elif path[:1] in ("\\", "/"):
        # Rooted without a drive: the current drive, which is the system drive.
        drive, rest = SYSTEM_DRIVE, path
    else:
        raise PrimitiveError("InvalidArgument", f"Path is not rooted: {path}")
    if ":" in rest:
        raise PrimitiveError("NotSupportedException", "The given path's format is not supported.")
    components: list[str] = []
    for raw_part in re.split(r"[\\/]+", rest):
        # Win32 drops trailing dots and spaces of every component.
        part = raw_part.rstrip(" .") if raw_part not in (".", "..") else raw_part
        if part in ("", "."):
            continue
        if part == "..":
            if components:
                components.pop()
            continue
        components.append(part)
    return drive, components


def join_windows_path(base: str, relative: str) -> str:
    """[IO.Path]::Combine: a rooted second part wins, else one separator between the parts."""
    if is_path_rooted(relative):
        return relative
    if base.endswith(("\\", "/", ":")):
        return base + relative
    return base + "\\" + relative


def format_windows_path(drive: str, components: list[str]) -> str:
    return f"{drive}:\\" + "\\".join(components)


def normalise_windows_path(path: str) -> str:
    drive, components = split_windows_path(path)
    return format_windows_path(drive, components)


class HostFileSystem:
    """The C: drive of one host, stored under `root/C`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def resolve(self, path: str) -> Path:
        """Map a Windows path to the lab path, matching existing names case-insensitively."""
        drive, components = split_windows_path(path)
        current = self.root / drive
        for component in components:
            current = current / self._existing_name(current, component)
        return current

    def drive_exists(self, path: str) -> bool:
        drive, _components = split_windows_path(path)
        return drive == SYSTEM_DRIVE and (self.root / drive).is_dir()

    def to_windows(self, path: Path) -> str:
        """The Windows path of a file under this host's root."""
        relative = path.relative_to(self.root)
        drive, *components = relative.parts
        return format_windows_path(drive, list(components))

    def is_under(self, path: Path, folder: str) -> bool:
        """Whether `path` is inside the Windows folder `folder` (case-insensitive)."""
        return _is_relative_to(_fold(path), _fold(self.resolve(folder)))

    def all_files(self) -> list[Path]:
        found: list[Path] = []
        for directory, _subdirectories, names in os.walk(self.root):
            found.extend(Path(directory) / name for name in names)
        return sorted(found)

    @staticmethod
    def _existing_name(folder: Path, name: str) -> str:
        if (folder / name).exists() or not folder.is_dir():
            return name
        wanted = name.casefold()
        for entry in os.listdir(folder):
            if entry.casefold() == wanted:
                return entry
        return name


def _fold(path: Path) -> Path:
    return Path(str(path).casefold())


def _is_relative_to(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents
