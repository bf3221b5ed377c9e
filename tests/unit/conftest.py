"""Make the collection importable as ansible_collections.xtractuniversal.tls for the unit tests."""

from __future__ import annotations

import pathlib

from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder

REPO = pathlib.Path(__file__).resolve().parents[2]
COLLECTIONS = REPO / ".collections"
_link = COLLECTIONS / "ansible_collections" / "xtractuniversal" / "tls"
if not _link.exists():
    _link.parent.mkdir(parents=True, exist_ok=True)
    _link.symlink_to(pathlib.Path("../../.."), target_is_directory=True)

# The same loader ansible-playbook installs, so doc fragments and plugin_utils resolve.
_AnsibleCollectionFinder(paths=[str(COLLECTIONS)])._install()
