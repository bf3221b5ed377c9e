"""Documentation text as ansible-doc renders it: Windows paths show one backslash, wherever they are written."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._action_base import MODULES_DIR, module_documentation

REPO = pathlib.Path(__file__).resolve().parents[2]
ROLE_SPECS = sorted(REPO.glob("roles/*/meta/argument_specs.yml"))
FILTER_DOCS = sorted(REPO.glob("plugins/filter/*.yml"))


def strings(node: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, str):
        yield where, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from strings(value, f"{where}[{index}]")


def doubled_backslashes(document: Any, name: str) -> list[str]:
    # A plain or single-quoted YAML scalar keeps "\\" as two characters, which ansible-doc prints as they are.
    return [where for where, text in strings(document, name) if "\\\\" in text]


@pytest.mark.parametrize("path", ROLE_SPECS + FILTER_DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_yaml_docs_render_one_backslash(path: pathlib.Path) -> None:
    assert doubled_backslashes(yaml.safe_load(path.read_text(encoding="utf-8")), path.name) == []


@pytest.mark.parametrize("module", sorted(p.stem for p in MODULES_DIR.glob("xu_*.py")))
def test_module_docs_render_one_backslash(module: str) -> None:
    assert doubled_backslashes(module_documentation(module), module) == []


def test_the_check_sees_a_doubled_backslash() -> None:
    assert doubled_backslashes(yaml.safe_load("d:\n  - C(LocalMachine\\\\My)\n"), "d") == ["d.d[0]"]
    assert doubled_backslashes(yaml.safe_load('d: "C(LocalMachine\\\\My)"\n'), "d") == []
