"""The collection's Python runs on 3.10: ansible-core 2.16 and 2.17 support controllers on Python 3.10.

``py_compile`` under 3.10 only catches syntax; these checks read the code for standard library
names that appeared in 3.11 or later, which fail only when the line runs.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PLUGINS = pathlib.Path(__file__).resolve().parents[3] / "plugins"
SUPPORT = pathlib.Path(__file__).resolve().parents[1] / "support"

# module -> names it gained after Python 3.10.
NEWER_NAMES = {
    "datetime": {"UTC"},
    "enum": {"StrEnum", "ReprEnum", "verify", "EnumCheck", "FlagBoundary", "global_enum", "member", "nonmember", "property"},
    "typing": {"Self", "LiteralString", "Never", "NotRequired", "Required", "TypeVarTuple", "Unpack", "assert_never", "assert_type",
               "reveal_type", "dataclass_transform", "override", "TypeAliasType", "get_overloads", "clear_overloads"},
    "hashlib": {"file_digest"},
    "asyncio": {"TaskGroup", "timeout", "timeout_at", "Runner"},
    "contextlib": {"chdir"},
    "operator": {"call"},
    "itertools": {"batched"},
    "logging": {"getLevelNamesMapping"},
}
NEWER_MODULES = {"tomllib", "wsgiref.types"}


def _python_files() -> list[pathlib.Path]:
    return sorted([*PLUGINS.rglob("*.py"), *SUPPORT.rglob("*.py")])


def newer_uses(source: str) -> list[str]:
    """Uses of standard library names newer than Python 3.10, as ``line: name``."""
    tree = ast.parse(source, feature_version=(3, 10))
    found = []
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name] = alias.name
                if alias.name in NEWER_MODULES:
                    found.append(f"{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module in NEWER_MODULES:
                found.append(f"{node.lineno}: from {node.module}")
            for alias in node.names:
                if alias.name in NEWER_NAMES.get(node.module, ()):
                    found.append(f"{node.lineno}: from {node.module} import {alias.name}")
        elif isinstance(node, getattr(ast, "TryStar", ())):  # 3.11+ syntax; absent from 3.10's ast
            found.append(f"{getattr(node, 'lineno', 0)}: except*")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            module = aliases.get(node.value.id)
            if module is not None and node.attr in NEWER_NAMES.get(module, ()):
                found.append(f"{node.lineno}: {module}.{node.attr}")
    return found


def test_the_checker_finds_what_3_10_lacks() -> None:
    source = "import datetime\nfrom typing import Self\nimport tomllib\nx = datetime.datetime.now(datetime.UTC)\n"
    assert newer_uses(source) == ["2: from typing import Self", "3: import tomllib", "4: datetime.UTC"]


@pytest.mark.parametrize("path", _python_files(), ids=lambda p: str(p.relative_to(PLUGINS.parent)))
def test_runs_on_python_3_10(path: pathlib.Path) -> None:
    assert newer_uses(path.read_text(encoding="utf-8")) == []
