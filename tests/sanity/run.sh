#!/usr/bin/env bash
# ansible-test sanity on a copy of the collection laid out as ansible_collections/xtractuniversal/tls,
# which is where ansible-test insists on running.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
python=$repo/.venv/bin/python

# ansible-test bootstraps pip in its venvs with a script it downloads from a host outside the
# package registries; the stand-in installs the bundled pip and then the requested one from PyPI.
pip_version=$("$python" -c 'from types import SimpleNamespace
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(SimpleNamespace(version="3.12"))["pip"].replace(".", "_"))')
install -D -m 0644 "$repo/tests/sanity/pip_bootstrap.py" "$HOME/.ansible/test/cache/get_pip_${pip_version}.py"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dest=$work/ansible_collections/xtractuniversal/tls
mkdir -p "$dest"
(cd "$repo" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$dest")
cd "$dest"
git init -q && git add -A  # ansible-test lists the collection's files through git
"$repo/.venv/bin/ansible-test" sanity --python 3.12 --color no "$@"
