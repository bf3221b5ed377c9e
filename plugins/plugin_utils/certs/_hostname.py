# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host names as the options give them. Private to this collection."""

from __future__ import annotations

import re

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import XuError

# The names the agent's port_probe takes as server_name (a DNS name or an IPv4 address); checked here first,
# so that a bad name fails before the host is contacted instead of as failed probes after a restart.
_DNS_NAME = re.compile(r"^(?=.{1,253}\Z)[A-Za-z0-9_-]{1,63}(\.[A-Za-z0-9_-]{1,63})*\Z")


def clean_fqdn(value: object, option: str = "fqdn") -> str | None:
    """The name in lower case, without surrounding space or a final dot; None when not given; XuError when not a DNS name."""
    if value is None:
        return None
    text = str(value).strip().rstrip(".").lower()
    if not text:
        return None
    if not _DNS_NAME.match(text):
        raise XuError(
            f"{option} {str(value)!r} is not a DNS name: letters, digits, '-' and '_' in labels of at most 63 characters,"
            " separated by dots, 253 characters at most"
        )
    return text
