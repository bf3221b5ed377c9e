#!/usr/bin/env bash
# The integration targets (tests/integration/targets) run by ansible-test windows-integration against a
# one-host lab, through the same inventory.winrm mechanism as against real Windows servers
# (docs/testing-on-windows.md). Arguments are passed on to ansible-test (target names, -v, ...).
# The lab is stopped and every temporary file removed however the run ends.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
bin=$repo/.venv/bin
start=$SECONDS

# Short paths: the lab keeps a unix socket in its dir.
lab=$(mktemp -d /tmp/xu-targets-lab.XXXXXX)
work=$(mktemp -d /tmp/xu-targets.XXXXXX)
trap '"$bin/python" -m xulab down --dir "$lab" >/dev/null 2>&1 || true; rm -rf "$lab" "$work"' EXIT

"$bin/python" -m xulab up --dir "$lab" --hosts 1 --scenario healthy --restart-delay 0.2
host=xu01

# The PFX files the targets import: a good one, and one without the Server Authentication EKU.
certs=$lab/certs
(umask 077 && mkdir -p "$certs" && head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$certs/password")
# The test PFX expires with the bound certificate: the targets swap to it and back, and neither may be the shorter one.
bound=$("$bin/python" -m xulab state --dir "$lab" --host "$host" \
  | "$bin/python" -c 'import json, sys; print(json.load(sys.stdin)["service"]["listeners"][0]["thumbprint"])')
"$bin/python" -m xulab issue --dir "$lab" --host "$host" --out "$certs/good.pfx" --password-file "$certs/password" \
  --expires-with "$bound" >/dev/null
"$bin/python" -m xulab issue --dir "$lab" --host "$host" --out "$certs/no-server-auth.pfx" --password-file "$certs/password" \
  --no-server-auth >/dev/null

# inventory.winrm: group windows, with the lab's connection variables (from its inventory.yml) and the
# kit's variables. Passwords stay in files of their own (mode 0600), read with the file lookup, as
# docs/testing-on-windows.md advises for real servers.
(umask 077 && "$bin/python" - "$lab" "$certs" > "$lab/inventory.winrm") <<'PY'
import pathlib
import sys

import yaml

lab, certs = (pathlib.Path(arg) for arg in sys.argv[1:3])
servers = yaml.safe_load((lab / "inventory.yml").read_text())["all"]["children"]["xu_servers"]
winrm_password = certs / "winrm-password"
winrm_password.write_text(servers["vars"].pop("ansible_password"))


def from_file(path: pathlib.Path) -> str:
    return "\"{{ lookup('ansible.builtin.file', '%s') }}\"" % path


print("[windows]")
for name, host_vars in servers["hosts"].items():
    print(name, " ".join(f"{key}={value}" for key, value in host_vars.items()))
print()
print("[windows:vars]")
kit = {
    "ansible_password": from_file(winrm_password),
    "xu_test_pfx_path": certs / "good.pfx",
    "xu_test_bad_pfx_path": certs / "no-server-auth.pfx",
    "xu_test_pfx_password": from_file(certs / "password"),
    "xu_test_ca_available": "true",
}
for key, value in {**servers["vars"], **kit}.items():
    print(f"{key}={value}")
PY

# ansible-test runs only from a directory laid out as ansible_collections/<namespace>/<name>, resolved
# without symlinks (so not .collections/...), and lists the collection's files through git.
dest=$work/ansible_collections/xtractuniversal/tls
mkdir -p "$dest"
(cd "$repo" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$dest")
cd "$dest"
git init -q && git add -A

# --python: the venv's own Python as controller and target, no container, nothing downloaded.
# --allow-destructive: the lab host is sacrificial; the targets marked destructive restart its service.
# --continue-on-error: every target runs and reports; the run still fails when one did.
python_version=$("$bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
status=0
"$bin/ansible-test" windows-integration --inventory "$lab/inventory.winrm" --python "$python_version" --allow-destructive --continue-on-error \
  --color no "$@" || status=$?
echo "integration targets against the lab: rc $status in $((SECONDS - start)) s"
exit $status
