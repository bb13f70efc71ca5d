# Two commands on a fresh machine with Python 3.11+ and make: `make run`, `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PLUGINS := $(sort $(wildcard plugins/*/pyproject.toml))
# Two stamps: `make run` needs the runtime only; `make test` adds the test tools (SDKs,
# Playwright, ruff, hypothesis: most of the venv's size).
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
# `make run` serves ./lmrouter.toml (what `lmrouter init` writes) when there is one.
CONFIG ?= $(firstword $(wildcard lmrouter.toml) config/lmrouter.toml)
# The dashboard's browser tests drive Debian's Chromium (Playwright cannot download its own here).
CHROMIUM := /usr/bin/chromium
# The Redis and PostgreSQL plugins' tests start a real redis-server and a throwaway PostgreSQL
# cluster (Debian's server binaries in /usr/lib/postgresql/*/bin); installed like Chromium.
REDIS_SERVER := /usr/bin/redis-server
PG_INITDB := $(or $(firstword $(wildcard /usr/lib/postgresql/*/bin/initdb)),/usr/lib/postgresql/initdb)
# The real coding agents (Codex CLI, Claude Code) for tests/test_agents_e2e.py, from npm at the
# versions tests/agents/package-lock.json pins, into .cache/agents (about 40 s and 800 MB: Claude
# Code is a native binary). Without node and npm the step says so and those tests are skipped.
AGENTS_DIR := .cache/agents
AGENTS_STAMP := $(AGENTS_DIR)/.installed
# Every install obeys the lock; PIP_CONSTRAINT also reaches pip's isolated build environments.
PIP := PIP_CONSTRAINT=$(CURDIR)/constraints.txt PIP_DISABLE_PIP_VERSION_CHECK=1 $(BIN)/python -m pip

.PHONY: run test test-stress lint bench docs install lock clean dist agents

install: $(TEST_STAMP)

$(RUN_STAMP): pyproject.toml constraints.txt $(PLUGINS)
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "LMRouter needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e . $(foreach p,$(PLUGINS),-e $(dir $(p)))
	@touch $@

$(TEST_STAMP): $(RUN_STAMP) benchmarks/requirements.txt tests/requirements-nodeps.txt
	$(PIP) install --quiet -e '.[test]' $(foreach p,$(PLUGINS),-e $(dir $(p))) \
	  -r benchmarks/requirements.txt
	$(PIP) install --quiet --no-deps -r tests/requirements-nodeps.txt
	@touch $@

# Installed with apt when absent (CI runs as root); elsewhere, say what to run.
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Chromium for the browser tests (apt-get install chromium)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	else \
	  echo "error: the dashboard's browser tests need Chromium at $@;" \
	    "install it with: sudo apt-get install --no-install-recommends chromium" >&2; \
	  exit 1; \
	fi
	@test -x $@ || { echo "error: apt-get did not install $@" >&2; exit 1; }

$(REDIS_SERVER):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing redis-server for the Redis plugin's tests (apt-get install redis-server)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends redis-server >/dev/null; \
	else \
	  echo "error: the Redis plugin's tests need $@;" \
	    "install it with: sudo apt-get install --no-install-recommends redis-server" >&2; \
	  exit 1; \
	fi
	@test -x $@ || { echo "error: apt-get did not install $@" >&2; exit 1; }

$(PG_INITDB):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing PostgreSQL for the PostgreSQL store's tests (apt-get install postgresql)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends postgresql >/dev/null; \
	else \
	  echo "error: the PostgreSQL store's tests need PostgreSQL's server binaries;" \
	    "install them with: sudo apt-get install --no-install-recommends postgresql" >&2; \
	  exit 1; \
	fi
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null || { echo "error: apt-get did not install initdb" >&2; exit 1; }

agents: $(AGENTS_STAMP)

$(AGENTS_STAMP): tests/agents/package.json tests/agents/package-lock.json
	@if command -v node >/dev/null && command -v npm >/dev/null; then \
	  mkdir -p $(AGENTS_DIR) && cp tests/agents/package.json tests/agents/package-lock.json $(AGENTS_DIR)/ \
	  && npm ci --prefix $(AGENTS_DIR) --no-audit --no-fund --loglevel=error && touch $@; \
	else \
	  echo "node/npm not found: the real-agent tests (tests/test_agents_e2e.py) will be skipped"; \
	fi

run: $(RUN_STAMP)
	@echo "the lmrouter command: . $(VENV)/bin/activate (or $(BIN)/lmrouter)"
	$(BIN)/lmrouter serve --config $(CONFIG)

test: $(TEST_STAMP) $(CHROMIUM) $(REDIS_SERVER) $(PG_INITDB) $(AGENTS_STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

# Not part of `make test`: the suite RUNS times in random order with every core kept busy, and
# a report of each test that failed at least once (see README, Testing). RUNS=10 make test-stress
RUNS ?= 5
test-stress: $(TEST_STAMP) $(CHROMIUM) $(REDIS_SERVER) $(PG_INITDB) $(AGENTS_STAMP)
	$(BIN)/python tests/stress.py --runs $(RUNS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

# The plugin reference (docs/plugins.md) and the README's hook table, from the code's docstrings.
docs: $(TEST_STAMP)
	$(BIN)/python -m lmrouter.hookdocs

# The overhead run, then the memory soak (about 14 minutes more: see benchmarks/README.md).
bench: $(TEST_STAMP)
	$(BIN)/python -m benchmarks
	$(BIN)/python -m benchmarks.soak

# A wheel per distribution and dist/lmrouter.pyz: the core and every bundled plugin with their
# dependencies in one file (shiv), run with `python3 dist/lmrouter.pyz serve --config my.toml`.
# Its compiled dependencies are this machine's: same OS, CPU and Python minor version.
DIST ?= dist
dist: $(RUN_STAMP)
	rm -rf $(DIST) && mkdir -p $(DIST)
	$(PIP) install --quiet shiv
	$(PIP) wheel --quiet --no-deps -w $(DIST) . $(foreach p,$(PLUGINS),$(dir $(p)))
	PIP_CONSTRAINT=$(CURDIR)/constraints.txt PIP_DISABLE_PIP_VERSION_CHECK=1 $(BIN)/shiv --quiet \
	  -o $(DIST)/lmrouter.pyz -c lmrouter -p '/usr/bin/env python3' --reproducible --compressed \
	  $(DIST)/*.whl

# Re-pin after changing dependencies: resolves afresh in a scratch venv, writes constraints.txt.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/pip install --quiet -e '.[test]' $(foreach p,$(PLUGINS),-e $(dir $(p)))
	.lock-venv/bin/pip install --quiet --no-deps -r tests/requirements-nodeps.txt
	( echo "# Generated by 'make lock': the exact versions CI and 'make run' install."; \
	  .lock-venv/bin/pip freeze --exclude-editable | grep -v '^-e' ; \
	  .lock-venv/bin/pip show pip | sed -n 's/^Version: /pip==/p' ) > constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache dist
