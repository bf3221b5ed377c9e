"""The collection as users and execution environments get it: its requirement files and what ansible-builder reads.

tests/build/run.sh runs this with XU_INSTALLED_COLLECTIONS set to the collections path it installed the built
artifact into; run alone, the fixture builds and installs the artifact itself.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
import yaml
from bindep.depends import Depends  # type: ignore[import-untyped]
from packaging.requirements import Requirement

REPO = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
# Kerberos over WinRM: pywinrm's extra builds pykerberos, pyspnego's builds gssapi and krb5; none has Linux wheels.
RPM_BUILD_ONLY = {"krb5-devel", "gcc", "python3.12-devel"}
RPM_RUNTIME = {"krb5-libs", "krb5-workstation"}


def requirements(path: pathlib.Path) -> dict[str, Requirement]:
    found = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            requirement = Requirement(line)
            found[requirement.name.lower()] = requirement
    return found


@pytest.fixture(scope="module")
def collections_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    given = os.environ.get("XU_INSTALLED_COLLECTIONS")
    if given:
        yield pathlib.Path(given)
        return
    work = tmp_path_factory.mktemp("artifact")
    galaxy = str(BIN / "ansible-galaxy")
    subprocess.run([galaxy, "collection", "build", str(REPO), "--output-path", str(work / "dist")], check=True, capture_output=True, cwd=work)
    (artifact,) = (work / "dist").glob("xtractuniversal-tls-*.tar.gz")
    subprocess.run([galaxy, "collection", "install", str(artifact), "-p", str(work / "collections")], check=True, capture_output=True, cwd=work)
    yield work / "collections"


def introspect(collections: pathlib.Path) -> dict[str, list[str]]:
    done = subprocess.run([str(BIN / "ansible-builder"), "introspect", str(collections)], capture_output=True, text=True, check=True, cwd=collections)
    report: dict[str, list[str]] = yaml.safe_load(done.stdout)
    # Each line ends with the collection it came from.
    return {kind: [line.split("  # from collection ")[0] for line in lines] for kind, lines in report.items()}


def test_introspect_reports_the_kerberos_python_requirements_as_ranges(collections_path: pathlib.Path) -> None:
    python = [Requirement(line) for line in introspect(collections_path)["python"]]
    # Kerberos, CredSSP and the psrp connection (pypsrp): every transport the README names works in an execution environment.
    assert {r.name: sorted(r.extras) for r in python} == {"cryptography": [], "pywinrm": ["credssp", "kerberos"], "pyspnego": ["kerberos"],
                                                          "pypsrp": ["credssp", "kerberos"], "dnspython": []}
    for requirement in python:
        assert not any(spec.operator in ("==", "===") for spec in requirement.specifier), requirement
        assert any(spec.operator == ">=" for spec in requirement.specifier), requirement


def test_introspect_reports_the_system_packages_kerberos_builds_and_runs_with(collections_path: pathlib.Path) -> None:
    bindep = Depends("\n".join(introspect(collections_path)["system"]) + "\n")
    # ansible-builder's builder stage installs the compile profile; the final image only the default one.
    built_with = {rule[0] for rule in bindep.active_rules(["platform:rpm", "compile"])}
    runs_with = {rule[0] for rule in bindep.active_rules(["platform:rpm", "default"])}
    assert built_with == RPM_BUILD_ONLY | RPM_RUNTIME
    assert runs_with == RPM_RUNTIME


def test_the_user_requirements_are_ranges_without_ansible_core() -> None:
    user = requirements(REPO / "requirements.txt")
    assert "ansible-core" not in user and "ansible" not in user
    assert all(not any(spec.operator in ("==", "===") for spec in r.specifier) for r in user.values()), user


def test_the_execution_environment_asks_for_the_same_ranges_with_kerberos() -> None:
    user = requirements(REPO / "requirements.txt")
    ee = requirements(REPO / "meta" / "ee-requirements.txt")
    assert {name: r.specifier for name, r in ee.items() if name != "pypsrp"} == {name: r.specifier for name, r in user.items()}


def test_the_development_pins_satisfy_the_user_ranges() -> None:
    dev = requirements(REPO / "requirements-dev.txt")
    for name, requirement in requirements(REPO / "requirements.txt").items():
        pinned = [spec.version for spec in dev[name].specifier if spec.operator == "=="]
        assert pinned and requirement.specifier.contains(pinned[0]), (name, dev[name])
    assert [spec.operator for spec in dev["ansible-core"].specifier] == ["=="]


def test_requires_ansible_names_a_release_the_matrix_tests() -> None:
    requires = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())["requires_ansible"]
    oldest = re.fullmatch(r">=(\d+\.\d+)\.0", requires)
    assert oldest, requires
    tested = [line.split()[0] for line in (REPO / "tests" / "matrix" / "versions.txt").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert oldest.group(1) in {".".join(version.split(".")[:2]) for version in tested}


def test_the_matrix_tests_the_development_ansible_core() -> None:
    dev = requirements(REPO / "requirements-dev.txt")["ansible-core"]
    tested = (REPO / "tests" / "matrix" / "versions.txt").read_text()
    assert f"\n{next(iter(dev.specifier)).version} " in tested


def test_every_connection_the_readme_names_has_its_packages_named() -> None:
    """winrm with Kerberos or CredSSP, and psrp, need packages of their own: the docs say which, the image has them."""
    readme = (REPO / "README.md").read_text()
    installing = (REPO / "docs" / "installing.md").read_text()
    assert "psrp" in readme and "CredSSP" in readme
    for text in (readme, installing):
        assert "pypsrp" in text and "pywinrm[credssp]" in text and "pywinrm[kerberos]" in text
    image = requirements(REPO / "meta" / "ee-requirements.txt")
    assert "pypsrp" in image and {"credssp", "kerberos"} <= image["pywinrm"].extras
