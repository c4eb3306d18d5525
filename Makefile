# alert-router: the two set-up commands are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install system-deps demo-deps demo test test-fast check format bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

# Prometheus, Alertmanager and Redis from Debian's packages, for the tests that talk to them.
system-deps:
	scripts/install-system-deps

# The demo's real chain needs Prometheus and Alertmanager; without root (or apt) it says so,
# and the demo posts sample webhooks instead.
demo-deps:
	scripts/install-system-deps demo

demo: install demo-deps
	$(BIN)/alert-router demo

test: install system-deps
	$(BIN)/pytest

check: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/deptry .
	HADOLINT=$(BIN)/hadolint scripts/lint-dockerfile

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install system-deps
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) data .mypy_cache .ruff_cache .pytest_cache
