# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Certificates, PFX files, thumbprints and host names, judged on the controller. Private to this collection."""
