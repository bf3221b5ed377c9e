# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""XU itself: its settings, its TLS binding, a restart with rollback, what it serves. Private to this collection."""
