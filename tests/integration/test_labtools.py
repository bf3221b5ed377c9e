"""The test kit's own helpers, where a mistake would hide other tests' output."""

from __future__ import annotations

import sys
import threading

import labtools
import pytest

from xulab import __main__ as xulab_cli


def test_xulab_in_threads_keeps_each_thread_s_output_and_gives_the_streams_back(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two threads start labs at once (as the chaos suite's workers do) while the main thread prints its report."""
    all_inside = threading.Barrier(3)
    leave = threading.Event()

    def fake_main(args: list[str]) -> int:
        print(f"out of {args[0]}")
        print(f"err of {args[0]}", file=sys.stderr)
        all_inside.wait(timeout=30)
        assert leave.wait(timeout=30)
        print(f"more of {args[0]}")
        return 0

    monkeypatch.setattr(xulab_cli, "main", fake_main)
    stdout, stderr = sys.stdout, sys.stderr
    outputs: dict[str, str] = {}
    threads = [threading.Thread(target=lambda name=name: outputs.update({name: labtools.xulab(name)})) for name in ("first", "second")]
    for thread in threads:
        thread.start()
    all_inside.wait(timeout=30)
    print("the report")
    leave.set()
    for thread in threads:
        thread.join(timeout=30)

    assert outputs == {"first": "out of first\nmore of first\n", "second": "out of second\nmore of second\n"}
    assert sys.stdout is stdout and sys.stderr is stderr
    assert capsys.readouterr() == ("the report\n", "")
