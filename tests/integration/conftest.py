"""Fixtures of the integration tests."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
from labtools import Lab, start_lab, stop_lab


@pytest.fixture
def lab_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Start labs on demand; each is stopped at the end of the test."""
    started: list[pathlib.Path] = []

    def start(*args: str) -> Lab:
        directory = tmp_path_factory.mktemp("lab")
        started.append(directory)
        return start_lab(directory, *args)

    yield start
    for directory in started:
        stop_lab(directory)
