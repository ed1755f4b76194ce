# make setup | make test | make demo | make sandbox | make bench
# Each target installs what it needs first and can be run again safely.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEBIAN_PACKAGES := postgresql-15 postgresql-client-15 openssh-server openssh-client zstd shellcheck
PYTEST_ARGS ?=
# Solr for tests, the demo and the benchmark: its jars come from Maven
# Central through the pinned pom.xml, its launcher is compiled here.
SOLR_DIR := ckanext/datagovuk/testing/solr
SOLR_TARGET := $(SOLR_DIR)/target
SOLR_STAMP := $(SOLR_TARGET)/.built
# PostgreSQL and Solr, private to one command, removed after it.
LOCAL_SERVICES := $(BIN)/python -m ckanext.datagovuk.testing.localpg run -- \
  $(BIN)/python -m ckanext.datagovuk.testing.localsolr run --

.PHONY: setup system-packages solr test demo sandbox bench clean

setup: system-packages $(STAMP) $(SOLR_STAMP)

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

solr: $(SOLR_STAMP)

# Maven prints only on failure; stale jars of an older pin are removed
# first, since the launcher's class path takes every jar in the folder.
$(SOLR_STAMP): $(SOLR_DIR)/pom.xml $(SOLR_DIR)/LocalSolr.java
	@echo "fetching Solr's jars (Maven) and building its launcher"
	@rm -rf $(SOLR_TARGET) && mkdir -p $(SOLR_TARGET)/classes
	@mvn -q -B -ntp -f $(SOLR_DIR)/pom.xml dependency:copy-dependencies \
	  >$(SOLR_TARGET)/maven.log 2>&1 || { cat $(SOLR_TARGET)/maven.log; exit 1; }
	@javac -nowarn -d $(SOLR_TARGET)/classes \
	  -cp '$(SOLR_TARGET)/dependency/*' $(SOLR_DIR)/LocalSolr.java
	@jar --create --file $(SOLR_TARGET)/localsolr.jar -C $(SOLR_TARGET)/classes .
	@touch $@

test: setup
	$(LOCAL_SERVICES) \
	  $(BIN)/pytest --ckan-ini=test.ini ckanext/datagovuk/tests $(PYTEST_ARGS)

demo: setup
	@$(LOCAL_SERVICES) \
	  $(BIN)/python -m ckanext.datagovuk.testing.demo

# A shell beside an old site and a new config; leaving it removes them.
sandbox: setup
	$(LOCAL_SERVICES) \
	  $(BIN)/python -m ckanext.datagovuk.testing.sandbox $(SANDBOX_ARGS)

bench: setup
	$(LOCAL_SERVICES) \
	  $(BIN)/python -m ckanext.datagovuk.testing.bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache $(SOLR_TARGET)
