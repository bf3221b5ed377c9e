# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Certificate thumbprints as users paste them. Private to this collection."""

from __future__ import annotations

import re
import unicodedata

_HEX40 = re.compile(r"^[0-9A-F]{40}$")


class ThumbprintError(ValueError):
    """A value that is not a certificate thumbprint, even after cleaning."""


def clean_thumbprint(value: object, option: str = "thumbprint") -> str:
    """Return the 40 upper-case hex digits of a thumbprint pasted in any usual form.

    The Windows certificate dialog copies an invisible left-to-right mark (U+200E)
    and spaces; other tools add colons or use lower case. All of that is removed;
    anything else that is not hex is an error naming the option.
    """
    if not isinstance(value, str):
        raise ThumbprintError(f"{option} must be a string of 40 hexadecimal digits, got {type(value).__name__}")
    kept = [
        ch
        for ch in value
        if not ch.isspace() and ch not in ":-" and unicodedata.category(ch) != "Cf"
    ]
    shown = "".join(kept)
    # Checked before upper-casing: str.upper() turns some letters into hex digits (U+FB00 'ﬀ' becomes 'FF').
    cleaned = shown.upper() if re.fullmatch(r"[0-9A-Fa-f]*", shown) else shown
    if not _HEX40.match(cleaned):
        raise ThumbprintError(
            f"{option} {shown!r} is not a certificate thumbprint: expected 40 hexadecimal digits"
            f" (spaces, colons and invisible marks are ignored), got {len(cleaned)} characters"
            + ("" if re.fullmatch(r"[0-9A-Fa-f]*", shown) else " including non-hexadecimal ones")
        )
    return cleaned


def looks_like_thumbprint(value: object) -> bool:
    """True for a string that cleans to a thumbprint (used to find references in settings)."""
    try:
        clean_thumbprint(value)
    except ThumbprintError:
        return False
    return True
