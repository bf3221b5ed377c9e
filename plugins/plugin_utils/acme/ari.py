# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""When the CA says a certificate is due: its renewal information (RFC 9773). Private to this collection.

Where the CA offers none (or does not know the certificate), the engine's own rule decides, as for every other mode
(``xu_renew_before_days`` / ``xu_renew_before_percent``).
"""

from __future__ import annotations

import datetime
import hashlib
import re
from dataclasses import dataclass
from typing import Any

_FRACTION = re.compile(r"(\.\d{1,6})\d*")


def parse_rfc3339(text: str) -> datetime.datetime:
    """An RFC 3339 timestamp as an aware datetime (Python 3.10's fromisoformat takes neither Z nor 9 fraction digits)."""
    normal = _FRACTION.sub(lambda m: m.group(1), text.strip().replace("z", "Z").replace("Z", "+00:00"), count=1)
    moment = datetime.datetime.fromisoformat(normal)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return moment.astimezone(datetime.timezone.utc)


@dataclass(frozen=True)
class RenewalWindow:
    """The CA's suggested window (RFC 9773 4.2) and what came with it."""

    start: datetime.datetime
    end: datetime.datetime
    explanation_url: str
    retry_after_seconds: float | None

    @classmethod
    def parse(cls, data: dict[str, Any], retry_after_seconds: float | None = None) -> RenewalWindow:
        """ValueError when the answer is not a renewal information object with a usable window."""
        window = data.get("suggestedWindow")
        if not isinstance(window, dict) or not isinstance(window.get("start"), str) or not isinstance(window.get("end"), str):
            raise ValueError("the renewal information has no suggestedWindow with start and end")
        start, end = parse_rfc3339(window["start"]), parse_rfc3339(window["end"])
        if end <= start:
            # RFC 9773 4.2: a window whose end is not after its start is invalid and must be ignored.
            raise ValueError(f"the suggested window ends ({window['end']}) before it starts ({window['start']})")
        explanation = data.get("explanationURL")
        return cls(start, end, explanation if isinstance(explanation, str) else "", retry_after_seconds)

    def chosen_time(self, cert_id: str) -> datetime.datetime:
        """A point in the window, spread over it by the certificate's identity and the same on every run.

        RFC 9773 4.2 asks for a uniformly random time in the window; one derived from the certificate's ID is as
        uniform over a fleet and does not move between two runs, so a daily job renews on one day, not on whichever
        run's draw came first.
        """
        fraction = int.from_bytes(hashlib.sha256(cert_id.encode("ascii")).digest()[:8], "big") / 2**64
        return self.start + (self.end - self.start) * fraction

    def to_result(self) -> dict[str, Any]:
        return {
            "start": self.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end": self.end.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "explanation_url": self.explanation_url or None,
            "retry_after_seconds": self.retry_after_seconds,
        }


@dataclass(frozen=True)
class Verdict:
    due: bool
    reason: str
    source: str  # "ari", or "served" when the host serves no certificate this CA can speak about


def ari_verdict(window: RenewalWindow, cert_id: str, now: datetime.datetime) -> Verdict:
    """Due once the chosen time has come; a window already past (as after a revocation) makes it due at once."""
    when = window.chosen_time(cert_id)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    span = f"{window.start:%Y-%m-%dT%H:%M:%SZ} to {window.end:%Y-%m-%dT%H:%M:%SZ}"
    if now >= window.end:
        return Verdict(True, f"the CA's renewal window ({span}) is over: renew now", "ari")
    if now >= when:
        return Verdict(True, f"the CA's renewal window ({span}) is open and this certificate's time in it ({stamp}) has come", "ari")
    return Verdict(False, f"the CA suggests renewing from {stamp} (its window is {span})", "ari")
