# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tables printed as a list of lines, the form that reads well under every callback and in AWX. Private to this collection."""

from __future__ import annotations

import textwrap
from collections.abc import Collection, Sequence

# Longer lines are folded by the yaml callback and wrapped by AWX's output pane.
NOTE_WIDTH = 76


def column_lines(headings: Sequence[str], rows: Sequence[Sequence[str]], right_aligned: Collection[str] = ()) -> list[str]:
    """The heading line and one line per row, each column as wide as its widest cell, two spaces apart."""
    widths = [max(len(row[column]) for row in (headings, *rows)) for column in range(len(headings))]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.rjust(width) if heading in right_aligned else cell.ljust(width)
            for cell, width, heading in zip(cells, widths, headings, strict=True)
        ]
        return "  ".join(padded).rstrip()

    return [line(cells) for cells in (headings, *rows)]


def note_lines(text: str, indent: str, subsequent_indent: str) -> list[str]:
    """``text`` wrapped at NOTE_WIDTH without breaking a word (a thumbprint stays whole)."""
    return textwrap.wrap(
        text, NOTE_WIDTH, initial_indent=indent, subsequent_indent=subsequent_indent, break_long_words=False, break_on_hyphens=False
    )


def outside_limit_line(count: int) -> str:
    """The one line that stands for the hosts of the group left out by --limit (a table of 200 hosts run on one has one)."""
    hosts = "1 host of the group is" if count == 1 else f"{count} hosts of the group are"
    return f"NOT TARGETED  {hosts} outside --limit (AWX: Limit)"
