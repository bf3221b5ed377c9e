"""Fixtures of the integration tests.

Starting a lab costs seconds, resetting one a fraction of a second (`xulab reset`, which can also give the lab
another shape: `up`'s options). So each pytest worker keeps its labs for the whole session and hands them out
reset: every test still gets the lab `up` with its arguments hands out (tests/unit/lab/test_lab_reset.py).
"""

from __future__ import annotations

import pathlib
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from labtools import Lab, lab_shape, start_lab, stop_lab

from xulab import layout
from xulab.errors import LabError

# What a lab keeps in its directory; anything else there a test put (group_vars beside the inventory, say).
LAB_FILES = frozenset(
    path.name
    for path in (layout.hosts_dir(pathlib.Path()), layout.ssh_dir(pathlib.Path()), layout.log_file(pathlib.Path()), *layout.generated(pathlib.Path()))
    if path.parent == pathlib.Path()
)


class LabPool:
    """The labs of one pytest worker, each with the shape (`up`'s arguments) it has now."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp_path_factory = tmp_path_factory
        self._shapes: dict[pathlib.Path, dict[str, Any]] = {}
        # Labs a test may have changed since their last reset (or start).
        self._used: set[pathlib.Path] = set()

    def lab(self, args: tuple[str, ...], taken: set[pathlib.Path]) -> Lab:
        """A lab of the shape ``args`` that this test does not hold yet (``taken``), as `up` hands it out."""
        shape = lab_shape(args)
        free = [directory for directory in self._shapes if directory not in taken]
        if not free:
            return self._start(args, shape)
        # One of that shape already if there is one (a plain reset), else one to reshape.
        directory = next((directory for directory in free if self._shapes[directory] == shape), free[0])
        try:
            if self._shapes[directory] != shape:
                self._reset(directory, args)
            elif directory in self._used:
                self._reset(directory, ())
        except (LabError, AssertionError):
            # A lab a test broke (or killed) is replaced, not repaired.
            del self._shapes[directory]
            stop_lab(directory)
            return self._start(args, shape)
        self._shapes[directory] = shape
        self._used.add(directory)
        return Lab(directory)

    def _reset(self, directory: pathlib.Path, args: tuple[str, ...]) -> None:
        for path in directory.iterdir():
            if path.name not in LAB_FILES:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        Lab(directory).reset(*args)

    def _start(self, args: tuple[str, ...], shape: dict[str, Any]) -> Lab:
        lab = start_lab(self._tmp_path_factory.mktemp("lab"), *args)
        self._shapes[lab.dir] = shape
        self._used.add(lab.dir)
        return lab

    def stop(self) -> None:
        for directory in self._shapes:
            stop_lab(directory)


@pytest.fixture(scope="session")
def lab_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabPool]:
    pool = LabPool(tmp_path_factory)
    yield pool
    pool.stop()


@pytest.fixture
def lab_factory(lab_pool: LabPool) -> Any:
    """``lab_factory(*args)``: the lab `xulab up ARGS` hands out (a lab of the worker's, reset to that shape).

    Two calls in one test give two labs.
    """
    taken: set[pathlib.Path] = set()

    def lab(*args: str) -> Lab:
        handed = lab_pool.lab(args, taken)
        taken.add(handed.dir)
        return handed

    return lab


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A file whose tests share a module-scoped fixture (an installed collection, say) runs on one worker
    (`--dist loadgroup`); the other tests go to whichever worker is free, the labs are the worker's."""
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        definitions = info.name2fixturedefs.values() if info is not None else []
        if any(definition[-1].scope == "module" for definition in definitions):
            item.add_marker(pytest.mark.xdist_group(item.path.name))
