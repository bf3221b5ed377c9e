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

# Nothing from the developer's tree may leak into the artifact.
if tar -tzf "$artifact" | grep -E '(^|/)(\.venv|\.collections|lab-run|\.git)/'; then
  echo "the artifact contains development files" >&2; exit 1
fi

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
