# Everything runs inside .venv, built from requirements.lock; a second call reuses it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test check demo bench bench-smoke emulator lock clean

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

demo: $(STAMP)
	$(BIN)/python -m pipelines.demo

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

emulator: $(STAMP)
	$(BIN)/sendgrid-destination emulator --port 3030

lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable > requirements.lock.new
	$(BIN)/python -m pip freeze --all | grep -i '^setuptools==' >> requirements.lock.new
	mv requirements.lock.new requirements.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
