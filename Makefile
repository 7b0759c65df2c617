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

.PHONY: venv test test-slow test-all test-lowest check demo warehouse bench emulator lock clean \
	venv-airflow venv-dagster test-airflow test-dagster test-orchestrators lock-airflow lock-dagster

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The everyday suite (under 3 minutes on 2 cores: two pytest-xdist workers, every test owning
# its ports, files and PostgreSQL schema); test-slow runs what it leaves out (crash trials, the
# soak, the wheel in a clean venv, the README's quick start, the benchmark harness), on two
# workers too: none asserts a time (the crash trials kill after a count of requests, the
# benchmark harness reports its timings and judges none), so sharing the cores costs nothing
# but its figures' precision (6 minutes on two workers, 10-17 one at a time). CI runs both.
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m "not slow and not orchestrator"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m "slow and not orchestrator"

test-all: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m "not orchestrator"

# The orchestrator examples, each in its own venv from its own pinned lock (the optional
# extras `airflow` and `dagster`; the core install stays small). CI runs both. A missing
# orchestrator fails these targets instead of skipping.
venv-airflow: .venv-airflow/.installed
venv-dagster: .venv-dagster/.installed

.venv-%/.installed: requirements-%.lock pyproject.toml
	test -x .venv-$*/bin/python || $(PYTHON) -m venv .venv-$*
	.venv-$*/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-$*.lock
	.venv-$*/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

test-airflow: venv-airflow
	SENDGRID_DESTINATION_REQUIRE_AIRFLOW=1 .venv-airflow/bin/python -m pytest -m orchestrator tests/orchestrators/test_airflow.py

test-dagster: venv-dagster
	SENDGRID_DESTINATION_REQUIRE_DAGSTER=1 .venv-dagster/bin/python -m pytest -m orchestrator tests/orchestrators/test_dagster.py

test-orchestrators: test-airflow test-dagster

# The suite on the lowest dependency versions pyproject.toml allows (requirements-lowest.txt),
# in .venv-lowest; needs the package index. CI runs it.
test-lowest:
	test -x .venv-lowest/bin/python || $(PYTHON) -m venv .venv-lowest
	.venv-lowest/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-lowest.txt
	.venv-lowest/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	.venv-lowest/bin/python -m pytest -n 2 -m "not slow" tests/unit tests/client tests/emulator tests/e2e

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

# An orchestrator's lock: everything of requirements.lock plus the extra, frozen from its venv
# (rebuild it from requirements.lock and the extra first: `rm -rf .venv-airflow && python3 -m
# venv .venv-airflow && .venv-airflow/bin/pip install -r requirements.lock "apache-airflow==3.3.*"`,
# likewise .venv-dagster with "dagster-dlt==0.29.*").
define freeze
	printf '%s\n' "# Pinned, tested set for the $(1) example and its tests: requirements.lock plus the" \
	  "# \`$(1)\` extra (pip freeze of .venv-$(1)). \`make test-$(1)\` installs exactly these." \
	  > requirements-$(1).lock.new
	.venv-$(1)/bin/python -m pip freeze --exclude-editable >> requirements-$(1).lock.new
	.venv-$(1)/bin/python -m pip freeze --all | grep -i '^setuptools==' >> requirements-$(1).lock.new
	mv requirements-$(1).lock.new requirements-$(1).lock
endef

lock-airflow:
	$(call freeze,airflow)

lock-dagster:
	$(call freeze,dagster)

clean:
	rm -rf $(VENV) .venv-lowest .venv-airflow .venv-dagster .mypy_cache .ruff_cache .pytest_cache
