# make setup | make test | make demo | make bench
# Each target installs what it needs first and can be run again safely.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEBIAN_PACKAGES := postgresql-15 postgresql-client-15 openssh-server openssh-client zstd shellcheck
PYTEST_ARGS ?=

.PHONY: setup system-packages test demo bench clean

setup: system-packages $(STAMP)

system-packages:
	@missing=""; \
	[ -x /usr/lib/postgresql/15/bin/initdb ] || missing="$$missing postgresql-15"; \
	command -v pg_restore >/dev/null || missing="$$missing postgresql-client-15"; \
	[ -x /usr/sbin/sshd ] || missing="$$missing openssh-server"; \
	command -v ssh >/dev/null || missing="$$missing openssh-client"; \
	command -v ssh-keygen >/dev/null || missing="$$missing openssh-client"; \
	command -v zstd >/dev/null || missing="$$missing zstd"; \
	command -v shellcheck >/dev/null || missing="$$missing shellcheck"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing Debian packages; as root run: apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

# Every version comes from constraints.txt; pyproject.toml declares what the
# extension itself needs (lower bounds), requirements.txt what CKAN needs.
$(STAMP): requirements.txt dev-requirements.txt constraints.txt pyproject.toml
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -r requirements.txt -r dev-requirements.txt
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -e .
	touch $(STAMP)

test: setup
	$(BIN)/python -m ckanext.datagovuk.localpg run -- \
	  $(BIN)/pytest --ckan-ini=test.ini ckanext/datagovuk/tests $(PYTEST_ARGS)

demo: setup
	$(BIN)/python -m ckanext.datagovuk.localpg run -- \
	  $(BIN)/python -m ckanext.datagovuk.demo

bench: setup
	$(BIN)/python -m ckanext.datagovuk.localpg run -- \
	  $(BIN)/python -m ckanext.datagovuk.bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
