"""Windows paths on a lab host: case-insensitive, normalised, failing as .NET does."""

from __future__ import annotations

import pathlib

import pytest

from xulab.errors import PrimitiveError
from xulab.winpath import HostFileSystem, is_path_rooted, join_windows_path, normalise_windows_path


def test_names_resolve_case_insensitively_to_existing_entries(tmp_path: pathlib.Path) -> None:
    fs = HostFileSystem(tmp_path)
    folder = tmp_path / "C" / "Program Files" / "XtractUniversal"
    folder.mkdir(parents=True)
    (folder / "version.txt").write_text("6.8.1.2")
    resolved = fs.resolve("c:/PROGRAM FILES\\xtractuniversal\\.\\sub\\..\\VERSION.TXT")
    assert resolved == folder / "version.txt"
    assert fs.to_windows(resolved) == "C:\\Program Files\\XtractUniversal\\version.txt"
    # A new name keeps the case it was given.
    assert fs.resolve("C:\\program files\\XtractUniversal\\New.json") == folder / "New.json"
    assert fs.is_under(resolved, "C:\\PROGRAM FILES\\xtractuniversal")


def test_path_forms() -> None:
    assert normalise_windows_path("c:\\a\\b. \\c") == "C:\\a\\b\\c"
    assert normalise_windows_path("\\ProgramData\\x") == "C:\\ProgramData\\x"
    assert join_windows_path("C:\\Program Files\\XtractUniversal", "config\\tls.json") == "C:\\Program Files\\XtractUniversal\\config\\tls.json"
    assert join_windows_path("C:\\x", "D:\\y") == "D:\\y"
    assert is_path_rooted("C:\\x") and is_path_rooted("\\x") and not is_path_rooted("config\\x")


@pytest.mark.parametrize(
    ("path", "error_type"),
    [("C:\\a|b", "ArgumentException"), ("\\\\server\\share\\x", "IOException"), ("C:\\a:b", "NotSupportedException")],
)
def test_malformed_paths_fail_like_dotnet(path: str, error_type: str) -> None:
    with pytest.raises(PrimitiveError) as caught:
        normalise_windows_path(path)
    assert caught.value.error_type == error_type
