"""The execution environment recipe (docs/execution-environment.yml) as ansible-builder turns it into a build context.

No image is built here (no container runtime in CI): the generated Containerfile must name an interpreter every
ansible-core the recipe allows runs on, and the collection's bindep.txt the headers of that interpreter for the
Kerberos wheels the builder stage compiles.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest
import yaml
from bindep.depends import Depends  # type: ignore[import-untyped]
from packaging.specifiers import SpecifierSet
from packaging.version import Version

REPO = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
RECIPE = REPO / "docs" / "execution-environment.yml"


def controller_pythons() -> dict[str, tuple[str, str]]:
    """The controller Pythons of each ansible-core release (tests/matrix/versions.txt, from each release's support matrix)."""
    found = {}
    for line in (REPO / "tests" / "matrix" / "versions.txt").read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 3:
            low, high = fields[2].split("-")
            found[".".join(fields[0].split(".")[:2])] = (low, high)
    return found


def minor(version: str) -> tuple[int, int]:
    major, second = version.split(".")[:2]
    return int(major), int(second)


@pytest.fixture(scope="module")
def containerfile(tmp_path_factory: pytest.TempPathFactory) -> str:
    context = tmp_path_factory.mktemp("ee") / "context"
    subprocess.run([str(BIN / "ansible-builder"), "create", "--file", str(RECIPE), "--context", str(context), "--output-filename", "Containerfile"],
                   check=True, capture_output=True, text=True, cwd=RECIPE.parent)
    return (context / "Containerfile").read_text()


def argument(containerfile: str, name: str) -> str:
    found = re.search(rf'^ARG {name}="([^"]*)"$', containerfile, re.MULTILINE)
    assert found, f"no ARG {name} in the Containerfile"
    return found.group(1)


def test_the_image_runs_ansible_core_on_a_python_every_allowed_release_supports(containerfile: str) -> None:
    interpreter = argument(containerfile, "PYCMD")
    version = re.fullmatch(r"/usr/bin/python(3\.\d+)", interpreter)
    # /usr/bin/python3 on UBI 9 is the platform's 3.9: no supported ansible-core runs on it.
    assert version, f"the interpreter is not named explicitly: {interpreter}"
    assert argument(containerfile, "PYPKG") == f"python{version.group(1)}"
    core = next(ref for ref in argument(containerfile, "ANSIBLE_INSTALL_REFS").split() if ref.startswith("ansible-core"))
    allowed = SpecifierSet(core.removeprefix("ansible-core"))
    supported = controller_pythons()
    releases = [release for release in supported if Version(f"{release}.0") in allowed]
    assert releases, core
    for release in releases:
        low, high = supported[release]
        assert minor(low) <= minor(version.group(1)) <= minor(high), f"ansible-core {release} does not run on Python {version.group(1)}"


def test_the_kerberos_wheels_are_built_with_the_image_s_python_headers(containerfile: str) -> None:
    interpreter = argument(containerfile, "PYCMD").removeprefix("/usr/bin/python")
    bindep = Depends((REPO / "bindep.txt").read_text())
    built_with = {rule[0] for rule in bindep.active_rules(["platform:rpm", "compile"])}
    headers = {package for package in built_with if re.fullmatch(r"python3(\.\d+)?-devel", package)}
    assert headers == {f"python{interpreter}-devel"}


def test_the_recipe_holds_the_collection_and_is_the_one_the_docs_show() -> None:
    recipe = yaml.safe_load(RECIPE.read_text())
    assert [c["name"] for c in recipe["dependencies"]["galaxy"]["collections"]] == ["xtractuniversal.tls"]
    installing = (REPO / "docs" / "installing.md").read_text()
    body = "\n".join(line for line in RECIPE.read_text().splitlines() if not line.startswith("#"))
    assert body in installing
