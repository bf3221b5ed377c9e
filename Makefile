# Everything a developer or CI runs. `make demo` and `make test` are the two entry points.

SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR := lab-run/demo
# pytest workers: the machine has 2 cores, the lab tests mostly wait on the lab.
JOBS ?= 2

# ansible-core 2.21 needs Python 3.12+; pyenv installs are found even without a global version set.
PYTHON ?= $(shell for p in python3.12 python3.13 $$HOME/.pyenv/versions/3.12*/bin/python3.12 $$HOME/.pyenv/versions/3.13*/bin/python3.13; do \
	  "$$p" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1 && { echo "$$p"; break; }; done)

.PHONY: venv demo test lint unit integration targets sanity build matrix chaos changelog clean
.PHONY: acme-services demo-acme

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	@test -n "$(PYTHON)" || { echo "Python 3.12 or newer is required (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@# The lab package and the collection, importable from the checkout without installing.
	echo "$(CURDIR)/tests/lab" > "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/xulab-src.pth"
	mkdir -p .collections/ansible_collections/xtractuniversal
	ln -sfn ../../.. .collections/ansible_collections/xtractuniversal/tls
	touch $@

# The report, then a renewal of every due server with a new certificate per host (a PFX from the lab's CA, its
# password in a vars file, never on a command line), then the fleet summary.
DEMO_DUE := xu02 xu03 xu05
demo: venv
	@$(BIN)/python -m xulab down --dir $(DEMO_DIR) >/dev/null 2>&1 || true
	$(BIN)/python -m xulab up --dir $(DEMO_DIR) --hosts 5 --scenario mixed --restart-delay 0.5
	@status=0; $(BIN)/ansible-playbook -i $(DEMO_DIR)/inventory.yml playbooks/tls_report.yml || status=$$?; \
	  if [ $$status -eq 0 ]; then \
	    mkdir -p $(DEMO_DIR)/certs && (umask 077 && head -c 18 /dev/urandom | base64 > $(DEMO_DIR)/certs/password && \
	      printf 'xu_renew_pfx_password: "%s"\n' "$$(cat $(DEMO_DIR)/certs/password)" > $(DEMO_DIR)/certs/secrets.yml); \
	    for host in $(DEMO_DUE); do $(BIN)/python -m xulab issue --dir $(DEMO_DIR) --host $$host \
	      --out $(DEMO_DIR)/certs/$$host.pfx --password-file $(DEMO_DIR)/certs/password >/dev/null || status=1; done; \
	    $(BIN)/ansible-playbook -i $(DEMO_DIR)/inventory.yml playbooks/renew.yml -e xu_renew_mode=replace \
	      -e 'xu_renew_pfx_path=$(CURDIR)/$(DEMO_DIR)/certs/{{ inventory_hostname }}.pfx' -e @$(DEMO_DIR)/certs/secrets.yml \
	      || status=$$?; \
	  fi; \
	  $(BIN)/python -m xulab down --dir $(DEMO_DIR); exit $$status

test: venv lint unit integration targets sanity build matrix

lint: venv
	$(BIN)/ruff check .
	@# The collection is checked under its import name; the two conftest.py files need separate runs.
	$(BIN)/mypy .collections/ansible_collections/xtractuniversal/tls/plugins tests/lab/xulab tests/unit
	$(BIN)/mypy tests/integration
	$(BIN)/mypy tests/build tests/matrix tests/chaos
	$(BIN)/mypy tests/services tests/bench
	$(BIN)/ansible-lint --profile production --strict

unit: venv
	$(BIN)/pytest -q -n $(JOBS) tests/unit

integration: venv
	@# The report's HTML is opened in a real headless browser; Debian's chromium (installed as root, as in CI).
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
	@# Ansible's ssh connection runs the OpenSSH client; Debian's openssh-client (the lab's SSH endpoints test it).
	@command -v ssh >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq openssh-client >/dev/null; }
	$(BIN)/pytest -q -n $(JOBS) tests/integration

# The ansible-test integration targets (tests/integration/targets) against a one-host lab, the way they run on real servers.
targets: venv
	tests/targets/run.sh

sanity: venv
	@# ansible-test skips its shellcheck test without the program; Debian has it (installed as root, as in CI).
	@command -v shellcheck >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq shellcheck >/dev/null; } \
	  || echo "warning: shellcheck is missing, ansible-test will skip its shellcheck test"
	tests/sanity/run.sh

build: venv
	tests/build/run.sh

# A smoke set against the lab with every ansible-core in tests/matrix/versions.txt, each in its own venv under
# .venv-matrix/ (from pyenv's Pythons; kept until its requirements change). MATRIX_ONLY="2.16 2.21" picks some.
MATRIX_ONLY ?=
matrix: venv
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
ACME_DEMO_DIR := lab-run/demo-acme
demo-acme: venv acme-services
	@$(BIN)/python -m xulab down --dir $(ACME_DEMO_DIR)/lab >/dev/null 2>&1 || true
	@PYTHONPATH=tests/services $(BIN)/python -m acmelab down --dir $(ACME_DEMO_DIR)/acme >/dev/null 2>&1 || true
	$(BIN)/python -m xulab up --dir $(ACME_DEMO_DIR)/lab --hosts 5 --scenario healthy --expiring-in 5 --restart-delay 0.5
	@status=0; PYTHONPATH=tests/services $(BIN)/python -m acmelab up --dir $(ACME_DEMO_DIR)/acme --lab $(ACME_DEMO_DIR)/lab || status=$$?; \
	  if [ $$status -eq 0 ]; then \
	    ANSIBLE_ACTION_PLUGINS=tests/integration/acme/action_plugins $(BIN)/ansible-playbook -i $(ACME_DEMO_DIR)/lab/inventory.yml \
	      tests/integration/acme/fleet.yml -e @$(ACME_DEMO_DIR)/acme/acme-vars.yml -e @tests/integration/acme/replace-vars.yml || status=$$?; \
	  fi; \
	  PYTHONPATH=tests/services $(BIN)/python -m acmelab down --dir $(ACME_DEMO_DIR)/acme; \
	  $(BIN)/python -m xulab down --dir $(ACME_DEMO_DIR)/lab; exit $$status

# Two renew runs on one host, the second started 0 to 5 s after the first, for every mode and strategy, each pair on a
# fresh one-host lab; the host's event log and end state must show that neither run hurt the other (tests/chaos/run.py).
chaos: venv
	$(BIN)/python tests/chaos/run.py

# CHANGELOG.rst from changelogs/changelog.yaml and the fragments (antsibull-changelog; `release` adds a version).
changelog: venv
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/antsibull-changelog generate

clean:
	-$(BIN)/python -m xulab down --dir $(DEMO_DIR) 2>/dev/null
	-PYTHONPATH=tests/services $(BIN)/python -m acmelab down --dir $(ACME_DEMO_DIR)/acme 2>/dev/null
	rm -rf $(VENV) .venv-matrix .collections lab-run build tests/output .mypy_cache .pytest_cache .ruff_cache
