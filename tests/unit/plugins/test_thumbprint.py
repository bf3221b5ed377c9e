from __future__ import annotations

import pytest

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.certs._thumbprint import (
    ThumbprintError,
    clean_thumbprint,
    looks_like_thumbprint,
)

TP = "AD3B9B0C9F6E3F1A2B3C4D5E6F708192A3B4ECE6"


@pytest.mark.parametrize(
    "pasted",
    [
        TP,
        TP.lower(),
        "\u200e" + TP.lower(),  # what the Windows certificate dialog copies
        "ad 3b 9b 0c 9f 6e 3f 1a 2b 3c 4d 5e 6f 70 81 92 a3 b4 ec e6",
        "\u200ead 3b 9b 0c 9f 6e 3f 1a 2b 3c 4d 5e 6f 70 81 92 a3 b4 ec e6\u200e",
        ":".join(TP[i:i + 2] for i in range(0, 40, 2)),
        f"  {TP}\n",
        "\ufeff" + TP,
    ],
)
def test_pasted_forms_clean_to_the_thumbprint(pasted: str) -> None:
    assert clean_thumbprint(pasted) == TP


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (TP[:-1], "got 39 characters"),
        (TP + "A", "got 41 characters"),
        (TP[:-1] + "G", "non-hexadecimal"),
        ("", "got 0 characters"),
        ("CN=xu01.example.com", "non-hexadecimal"),
    ],
)
def test_non_thumbprints_are_rejected_with_a_clear_message(value: str, fragment: str) -> None:
    with pytest.raises(ThumbprintError, match="web_certificate") as error:
        clean_thumbprint(value, "web_certificate")
    assert fragment in str(error.value)
    assert "40 hexadecimal digits" in str(error.value)


def test_non_strings_are_rejected() -> None:
    with pytest.raises(ThumbprintError, match="got int"):
        clean_thumbprint(1234)


def test_looks_like_thumbprint() -> None:
    assert looks_like_thumbprint(TP.lower())
    assert not looks_like_thumbprint("HttpsUnrestricted")
    assert not looks_like_thumbprint(None)


def test_a_letter_that_upper_cases_into_hex_digits_is_not_hex() -> None:
    # U+FB00 (the "ff" ligature) becomes "FF" with str.upper(): 39 hex digits and one ligature are not a thumbprint.
    with pytest.raises(ThumbprintError, match="including non-hexadecimal ones"):
        clean_thumbprint("ad3b9b0c9f6e3f1a2b3c4d5e6f708192a3b4ec\ufb00")
