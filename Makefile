# Two entry points on a fresh machine: `make demo` and `make test`.
# Each creates or updates the local virtualenv in .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint coverage bench clean migration

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tagbot demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	bash scripts/ensure-browser.sh  # Debian's chromium + a CJK font for the console's browser tests
	bash scripts/ensure-faketime.sh  # libfaketime for the clock-skew test (tests/test_one_clock.py)
	$(BIN)/python -m pytest

# Developers: everything but the long end-to-end runs (marked slow); `make test` runs them all.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Branch coverage of the whole suite, reported (not a gate): htmlcov/index.html and a summary.
coverage: $(STAMP)
	$(BIN)/coverage erase
	$(BIN)/coverage run -m pytest
	$(BIN)/coverage combine -q || true
	$(BIN)/coverage report --skip-covered --sort=cover
	$(BIN)/coverage html -q

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) demo-work .pytest_cache

# Developers: write a new Alembic revision from the models, then read it before committing.
migration: $(STAMP)
	$(BIN)/python -m bot.db.revision $(MSG)
