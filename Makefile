# The two commands: `make run` and `make test`. Both set up everything they need.
# `make demo` is `make run` plus a simulated city (`manage.py simulate`), so the dashboard's map moves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Tests use Redis database 15 unless told otherwise, so they never touch `make run`'s data.
TEST_REDIS_URL ?= $(or $(REDIS_URL),redis://127.0.0.1:6379/15)

.PHONY: run demo test lint install bench chaos screenshots clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "ridehail needs Python 3.11 or newer (PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@

install: $(VENV)/.installed

# `make run PORT=8123` serves on another port (so does PORT=8123 in the environment).
run: install
	$(PY) manage.py run_all $(if $(PORT),--port $(PORT))

# `make demo ARGS="--drivers 200 --riders 100"`; PORT picks the port (scripts/demo).
PORT ?= 8000
demo: install
	PORT=$(PORT) PY=$(PY) scripts/demo $(ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: install lint
	@scripts/ensure-chromium
	@scripts/ensure-promtool
	@scripts/ensure-nginx
	REDIS_URL=$(TEST_REDIS_URL) $(PY) manage.py check_services
	REDIS_URL=$(TEST_REDIS_URL) $(PY) -m pytest $(PYTEST_ARGS)

# Every benchmark in bench/, project vs raw anchor in the same run; writes BENCHMARKS.md.
# About 13 minutes by default from a fresh clone; `make bench ARGS=--full` for the long runs.
bench: install
	@scripts/ensure-wrk
	$(PY) -m bench $(ARGS)

# A simulated city under a seeded random schedule of faults, then the checks (tests/chaos.py).
# PostgreSQL required; CHAOS_SECONDS (default 300) and CHAOS_SEED (default random, printed) to repeat a run;
# CHAOS_CLUSTER=1 runs the city on a local Redis Cluster, with the failover fault.
CHAOS_DATABASE_URL ?= $(or $(DATABASE_URL),postgres://postgres@127.0.0.1:5432/ridehail)
chaos: install
	DATABASE_URL=$(CHAOS_DATABASE_URL) $(PY) -m tests.chaos $(ARGS)

# Refresh the README's screenshots (docs/*.png) from the browser tests.
screenshots: install
	RIDEHAIL_SCREENSHOTS=1 REDIS_URL=$(TEST_REDIS_URL) $(PY) -m pytest ridehail/dashboard/tests/test_browser.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache test-db.sqlite3
