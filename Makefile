# Two entry points on a fresh machine: `make demo` and `make test`.
# Each creates or updates the local virtualenv in .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Locked dependencies, every package pinned with its hashes (README, "Deploying"):
# requirements.lock is what production runs (the Docker image), requirements-dev.lock adds the
# dev tools. pip refuses any file whose hash differs and any dependency the lock lacks.
LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock

.PHONY: demo test test-fast lint coverage bench clean migration lock audit

$(STAMP): pyproject.toml $(DEV_LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(DEV_LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Re-resolve both locks from pyproject.toml (and its build-system requires, so the editable
# install needs nothing unpinned) for every platform and Python >= 3.11. Pins that still fit are
# kept; `make lock LOCK_FLAGS=--upgrade` moves everything to the newest allowed. The runtime
# lock is constrained by the dev lock, so both install the same versions.
LOCK_FLAGS ?=
BUILD_REQUIRES := $(BIN)/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")'
UV_COMPILE := $(BIN)/uv pip compile --quiet --universal --generate-hashes --python-version 3.11 --custom-compile-command "make lock" $(LOCK_FLAGS) pyproject.toml -
lock: $(STAMP)
	$(BUILD_REQUIRES) | $(UV_COMPILE) --extra dev -o $(DEV_LOCK)
	$(BUILD_REQUIRES) | $(UV_COMPILE) -c $(DEV_LOCK) -o $(LOCK)
	! grep -n '://' $(LOCK) $(DEV_LOCK)  # a lock names no registry host (tests/test_lock.py too)

# Known vulnerabilities in the locked packages. --strict: a package whose data cannot be fetched
# fails the run; without network pip-audit would print "No known vulnerabilities" and exit 0.
AUDIT_VENV := .venv-audit
audit:
	test -x $(AUDIT_VENV)/bin/pip-audit || { $(PYTHON) -m venv $(AUDIT_VENV) && $(AUDIT_VENV)/bin/python -m pip install --quiet pip-audit==2.10.1; }
	$(AUDIT_VENV)/bin/pip-audit --strict --require-hashes --disable-pip -r $(DEV_LOCK)

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
	rm -rf $(VENV) $(AUDIT_VENV) demo-work .pytest_cache

# Developers: write a new Alembic revision from the models, then read it before committing.
migration: $(STAMP)
	$(BIN)/python -m bot.db.revision $(MSG)
