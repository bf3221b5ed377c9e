# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reaching a host: the agent, its errors judged, the connection's protection, one snapshot of the host. Private to this collection."""
