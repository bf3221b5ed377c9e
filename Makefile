# Everything a developer or CI runs. `make demo` and `make test` are the two entry points.

SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR := lab-run/demo
# pytest workers: the machine has 2 cores, the lab tests mostly wait on the lab.
JOBS ?= 2

# The Python of the venv: 3.12 when there is one (the pinned ansible-core of requirements-dev.txt and the test tools run
# on it), else the newest 3.13+, 3.11 or 3.10 found, on PATH or in pyenv (found even without a global version set).
PYTHON ?= $(shell for v in 3.12 3.13 3.14 3.11 3.10; do for p in python$$v $$HOME/.pyenv/versions/$$v.*/bin/python$$v; do \
	  "$$p" -c 'import sys; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1 && { echo "$$p"; exit; }; done; done)
PYTHON_VERSION = $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
# The newest ansible-core the Python runs (tests/matrix/versions.txt lists each release's controller Pythons). On the
# Python of the pinned release, the venv has every tool; on an older one (Debian 12's and Ubuntu 22.04's 3.11, 3.10)
# what the demo needs, with the newest release that runs there.
CORE = $(shell awk -v py="$(PYTHON_VERSION)" '!/^\#/ && NF >= 3 { split($$3, r, "-"); split(r[1], lo, "."); split(r[2], hi, "."); \
	split(py, v, "."); if (v[2] + 0 >= lo[2] + 0 && v[2] + 0 <= hi[2] + 0) core = $$1 } END { print core }' tests/matrix/versions.txt)
DEV_CORE := $(shell sed -n 's/^ansible-core==//p' requirements-dev.txt)
DEMO_PINS := $(shell grep -E '^(defusedxml|asyncssh)==' requirements-dev.txt)
# Exits 0 when the venv's Python finds community.crypto 3.5 or newer (what ACME issuance is tested with).
export ACME_COLLECTION_CHECK := import importlib.util, json, pathlib, sys; \
  find = importlib.util.find_spec; \
  spec = find("ansible_collections") and find("ansible_collections.community") and find("ansible_collections.community.crypto"); \
  version = json.loads((pathlib.Path(list(spec.submodule_search_locations)[0]) / "MANIFEST.json").read_text())["collection_info"]["version"] if spec else "0"; \
  sys.exit(tuple(int(part) for part in version.split(".")[:2]) < (3, 5))

.PHONY: venv devtools demo test lint unit integration targets sanity build matrix chaos changelog clean
.PHONY: acme-services demo-acme

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt tests/matrix/versions.txt
	@test -n "$(PYTHON)" || { echo "Python 3.10 or newer is required (set PYTHON=...)"; exit 1; }
	@test -n "$(CORE)" || { echo "no ansible-core of tests/matrix/versions.txt runs on Python $(PYTHON_VERSION) ($(PYTHON))"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	if [ "$(CORE)" = "$(DEV_CORE)" ]; then $(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt; \
	else echo "Python $(PYTHON_VERSION): ansible-core $(CORE) and what the demo needs (the test suite needs Python 3.12 or newer)"; \
	  $(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt "ansible-core==$(CORE)" $(DEMO_PINS); fi
	@# The lab package and the collection, importable from the checkout without installing.
	echo "$(CURDIR)/tests/lab" > "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/xulab-src.pth"
	mkdir -p .collections/ansible_collections/xtractuniversal
	ln -sfn ../../.. .collections/ansible_collections/xtractuniversal/tls
	touch $@

# The test suite's tools (ruff, mypy, ansible-lint, ansible-builder, pytest) need the pinned ansible-core's Python.
devtools: venv
	@test -x $(BIN)/pytest || { echo "make $@ and the tests need Python 3.12 or newer; this $(VENV) has Python $$($(BIN)/python -c \
	  'import sys; print("%d.%d" % sys.version_info[:2])') for the demo (make clean, then make test PYTHON=python3.12)"; exit 1; }

# The report (it fails the run, as a schedule would notify: the mixed lab has an expired certificate, one missing from
# the store, TLS off), then a renewal of every due server with a new certificate per host (a PFX from the lab's CA in
# a private temporary folder, its password in a vars file there, never on a command line; the folder is removed
# whatever happens), then the fleet summary; then the ACME renewal (demo-acme) where pebble and BIND 9 can run.
DEMO_DUE := xu02 xu03 xu05
demo: venv
	@$(BIN)/python -m xulab down --dir $(DEMO_DIR) >/dev/null 2>&1 || true
	$(BIN)/python -m xulab up --dir $(DEMO_DIR) --hosts 5 --scenario mixed --restart-delay 0.5
	@certs=$$(mktemp -d -t xu-demo-certs.XXXXXX) && trap 'rm -rf "$$certs"; $(BIN)/python -m xulab down --dir $(DEMO_DIR)' EXIT; \
	  $(BIN)/ansible-playbook -i $(DEMO_DIR)/inventory.yml playbooks/tls_report.yml \
	    || echo "The report failed the run, as it should on this fleet; the renewal follows."; \
	  status=0; (umask 077 && head -c 18 /dev/urandom | base64 > "$$certs/password" && \
	    printf 'xu_renew_pfx_password: "%s"\n' "$$(cat "$$certs/password")" > "$$certs/secrets.yml") || status=1; \
	  for host in $(DEMO_DUE); do $(BIN)/python -m xulab issue --dir $(DEMO_DIR) --host $$host \
	    --out "$$certs/$$host.pfx" --password-file "$$certs/password" >/dev/null || status=1; done; \
	  [ $$status -ne 0 ] || $(BIN)/ansible-playbook -i $(DEMO_DIR)/inventory.yml playbooks/renew.yml -e xu_renew_mode=replace \
	    -e "xu_renew_pfx_dir=$$certs" -e "@$$certs/secrets.yml" || status=$$?; \
	  exit $$status
	@# Then the same fleet's renewal from an ACME CA (pebble, with BIND for DNS-01), where they are installed or root installs them,
	@# and the venv has community.crypto 3.5+ (the ansible package of requirements-dev.txt; not in an older Python's demo venv).
	@if ! $(BIN)/python -c "$$ACME_COLLECTION_CHECK"; then \
	  echo "The ACME renewal (make demo-acme) needs community.crypto 3.5 or newer in $(VENV) (requirements-dev.txt, Python 3.12+)"; \
	elif { command -v pebble >/dev/null && { command -v named >/dev/null || test -x /usr/sbin/named; }; } || [ "$$(id -u)" = 0 ]; then \
	  $(MAKE) --no-print-directory demo-acme PYTHON=$(PYTHON) VENV=$(VENV); \
	else echo "The ACME renewal (make demo-acme) needs pebble and BIND 9: apt-get install pebble bind9 (as root)"; fi

test: devtools lint unit integration targets sanity build matrix

lint: devtools
	$(BIN)/ruff check .
	@# The collection is checked under its import name; the two conftest.py files need separate runs.
	$(BIN)/mypy .collections/ansible_collections/xtractuniversal/tls/plugins tests/lab/xulab tests/unit
	$(BIN)/mypy tests/integration
	$(BIN)/mypy tests/build tests/matrix tests/chaos
	$(BIN)/mypy tests/services tests/bench
	$(BIN)/ansible-lint --profile production --strict

unit: devtools
	$(BIN)/pytest -q -n $(JOBS) tests/unit

integration: devtools
	@# The report's HTML is opened in a real headless browser; Debian's chromium (installed as root, as in CI).
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
	@# Ansible's ssh connection runs the OpenSSH client; Debian's openssh-client (the lab's SSH endpoints test it).
	@command -v ssh >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq openssh-client >/dev/null; }
	@# The labs are each worker's (tests/integration/conftest.py); loadgroup keeps a file with a module-scoped fixture on one.
	$(BIN)/pytest -q -n $(JOBS) --dist loadgroup tests/integration

# The ansible-test integration targets (tests/integration/targets) against a one-host lab, the way they run on real servers.
targets: devtools
	tests/targets/run.sh

sanity: devtools
	@# ansible-test skips its shellcheck test without the program; Debian has it (installed as root, as in CI).
	@command -v shellcheck >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq shellcheck >/dev/null; } \
	  || echo "warning: shellcheck is missing, ansible-test will skip its shellcheck test"
	tests/sanity/run.sh

build: devtools
	tests/build/run.sh

# A smoke set against the lab with every ansible-core in tests/matrix/versions.txt, each in its own venv under
# .venv-matrix/ (from pyenv's Pythons; kept until its requirements change). MATRIX_ONLY="2.16 2.21" picks some.
MATRIX_ONLY ?=
matrix: devtools
	$(BIN)/python tests/matrix/run.py $(if $(MATRIX_ONLY),--only $(MATRIX_ONLY))

# Central ACME issuance is tested against real servers: Debian's pebble (Let's Encrypt's test CA) and BIND 9, started on
# loopback by the tests themselves (tests/services/acmelab.py); installed as root, as in CI.
ACME_PACKAGES := pebble bind9
acme-services:
	@command -v pebble >/dev/null && { command -v named >/dev/null || test -x /usr/sbin/named; } || \
	  { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(ACME_PACKAGES) >/dev/null; } || \
	  { echo "pebble and BIND 9 are missing: apt-get install $(ACME_PACKAGES) (as root)"; exit 1; }

integration: acme-services

# The ACME renewal of the lab fleet: pebble and BIND beside a 5-host lab whose certificates expire in 5 days, each host's
# certificate ordered on the controller (DNS-01 through BIND) and installed by the renew role, then everything stopped.
# The servers' folder (the account key, the TSIG secret) is a private temporary one, removed whatever happens.
ACME_DEMO_DIR := lab-run/demo-acme
demo-acme: venv acme-services
	@$(BIN)/python -m xulab down --dir $(ACME_DEMO_DIR)/lab >/dev/null 2>&1 || true
	$(BIN)/python -m xulab up --dir $(ACME_DEMO_DIR)/lab --hosts 5 --scenario healthy --expiring-in 5 --restart-delay 0.5
	@acme=$$(mktemp -d -t xu-demo-acme.XXXXXX) && trap 'PYTHONPATH=tests/services $(BIN)/python -m acmelab down --dir "$$acme" >/dev/null 2>&1; \
	    rm -rf "$$acme"; $(BIN)/python -m xulab down --dir $(ACME_DEMO_DIR)/lab' EXIT; \
	  PYTHONPATH=tests/services $(BIN)/python -m acmelab up --dir "$$acme/servers" --lab $(ACME_DEMO_DIR)/lab && \
	  $(BIN)/ansible-playbook -i $(ACME_DEMO_DIR)/lab/inventory.yml playbooks/renew.yml -e "@$$acme/servers/acme-vars.yml" \
	    -e xu_renew_mode=acme

# Overlapping renew runs, a fault at every primitive, a controller killed or stalled at every call of the act phase, and
# the runs that take its host over, for every mode and strategy; each scenario on a host of a shared lab, checked on its
# event log and end state (tests/chaos/run.py, docs/renew.md "The chaos suite").
chaos: devtools
	$(BIN)/python tests/chaos/run.py

# CHANGELOG.rst from changelogs/changelog.yaml and the fragments (antsibull-changelog; `release` adds a version).
changelog: devtools
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/antsibull-changelog generate

clean:
	-$(BIN)/python -m xulab down --dir $(DEMO_DIR) 2>/dev/null
	-PYTHONPATH=tests/services $(BIN)/python -m acmelab down --dir $(ACME_DEMO_DIR)/acme 2>/dev/null
	rm -rf $(VENV) .venv-matrix .collections lab-run build tests/output .mypy_cache .pytest_cache .ruff_cache
