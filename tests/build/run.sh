#!/usr/bin/env bash
# Build the collection artifact, install it into an empty collections path, and check that
# ansible-doc renders every module from the installed copy.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
bin=$repo/.venv/bin
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$bin/ansible-galaxy" collection build "$repo" --output-path "$work/dist" >/dev/null
artifact=$(ls "$work"/dist/xtractuniversal-tls-*.tar.gz)
cd "$work"  # away from the checkout and its ansible.cfg, so only the installed copy can be found
export ANSIBLE_COLLECTIONS_PATH="$work/collections"
"$bin/ansible-galaxy" collection install "$artifact" -p "$work/collections" >/dev/null
test -f "$work/collections/ansible_collections/xtractuniversal/tls/MANIFEST.json"
echo "built and installed $(basename "$artifact")"

# Nothing from the developer's tree may leak into the artifact; what users need is in it.
tar -tzf "$artifact" > "$work/files.txt"
if grep -E '(^|/)(\.venv|\.venv-matrix|\.collections|\.ansible|lab-run|\.git|tests/bench|tests/matrix|tests/build)(/|$)|(^|/)(\.plugin-cache\.yaml|requirements-dev\.txt|Makefile|ansible\.cfg|\.ansible-lint(-ignore)?)$' "$work/files.txt"; then
  echo "the artifact contains development files" >&2; exit 1
fi
for shipped in COPYING CHANGELOG.rst README.md requirements.txt bindep.txt meta/runtime.yml meta/execution-environment.yml \
    meta/ee-requirements.txt changelogs/changelog.yaml docs/installing.md docs/execution-environment.yml; do
  grep -qx "$shipped" "$work/files.txt" || { echo "the artifact lacks $shipped" >&2; exit 1; }
done

count=0
for stub in "$work"/collections/ansible_collections/xtractuniversal/tls/plugins/modules/*.py; do
  module=xtractuniversal.tls.$(basename "$stub" .py)
  "$bin/ansible-doc" --type module "$module" > "$work/doc.txt"
  if ! grep -q "EXAMPLES" "$work/doc.txt" || ! grep -q "RETURN VALUES" "$work/doc.txt"; then
    echo "ansible-doc $module lacks examples or return values" >&2
    exit 1
  fi
  count=$((count + 1))
done
"$bin/ansible-doc" --list xtractuniversal.tls --type module | grep -q xu_tls_info
echo "ansible-doc rendered $count modules from the installed collection"

# What ansible-builder reads from the installed collection, and the requirement files it points at.
XU_INSTALLED_COLLECTIONS="$work/collections" "$bin/pytest" -q -p no:cacheprovider -p no:xdist "$repo/tests/build"
