# Everything runs inside .venv, built from requirements.lock; a second call reuses it.
# Nothing here activates .venv: commands run as .venv/bin/<tool>, and so can yours.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Offline by default: dlt sends anonymous usage telemetry unless this is false. Every target
# (the demo, the tests, the benchmarks) inherits it; `RUNTIME__DLTHUB_TELEMETRY=true make ...`
# turns it back on.
export RUNTIME__DLTHUB_TELEMETRY ?= false

.PHONY: venv test test-slow test-all test-lowest check demo warehouse bench emulator lock clean

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The everyday suite (under 3 minutes on 2 cores); test-slow runs what it leaves out (crash
# trials, the wheel in a clean venv, the README's quick start, the benchmark harness). CI runs both.
test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

test-all: $(STAMP)
	$(BIN)/python -m pytest

# The suite on the lowest dependency versions pyproject.toml allows (requirements-lowest.txt),
# in .venv-lowest; needs the package index. Not part of CI: run it when changing a bound.
test-lowest:
	test -x .venv-lowest/bin/python || $(PYTHON) -m venv .venv-lowest
	.venv-lowest/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-lowest.txt
	.venv-lowest/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	.venv-lowest/bin/python -m pytest -m "not slow" tests/unit tests/client tests/emulator tests/e2e

check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

demo: $(STAMP)
	$(BIN)/python -m pipelines.demo

# The quick start's sample warehouse: 1,000 synthetic customers in warehouse.duckdb.
warehouse: $(STAMP)
	$(BIN)/python -m pipelines.sample_warehouse --output warehouse.duckdb

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

emulator: $(STAMP)
	$(BIN)/sendgrid-destination emulator --port 3030

# Pins every package of .venv (versions only, no index or host); rebuild .venv from the lock
# first (make clean venv) and add what you add with .venv/bin/pip, so nothing stale is kept.
lock: $(STAMP)
	printf '%s\n' "# Pinned, tested set of every runtime and development dependency (pip freeze of" \
	  "# a .venv built from this file). \`make\` installs exactly these; regenerate with \`make lock\`." \
	  > requirements.lock.new
	$(BIN)/python -m pip freeze --exclude-editable >> requirements.lock.new
	$(BIN)/python -m pip freeze --all | grep -i '^setuptools==' >> requirements.lock.new
	mv requirements.lock.new requirements.lock

clean:
	rm -rf $(VENV) .venv-lowest .mypy_cache .ruff_cache .pytest_cache
