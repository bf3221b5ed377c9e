# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The maintenance gate: the firewall rule group that keeps clients out during a restart. Private to this collection."""
