# The single entry point. Every target creates .venv and installs what it needs when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP_QUIET := --quiet --disable-pip-version-check

.PHONY: demo test lint bench install clean e2e unit

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing safeship and its development dependencies into $(VENV) ..."
	@$(BIN)/python -m pip install $(PIP_QUIET) -e '.[dev]' 2>&1 | grep -v "^WARNING: Location" || true
	@$(BIN)/python -c "import safeship, fastapi, playwright" || (echo "install failed"; exit 1)
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	@$(BIN)/safeship demo

test: $(STAMP)
	@$(BIN)/python -m pytest

unit: $(STAMP)
	@$(BIN)/python -m pytest -m "not e2e"

e2e: $(STAMP)
	@$(BIN)/python -m pytest -m e2e

lint: $(STAMP)
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/mypy

bench: $(STAMP)
	@set -e; for b in benchmarks/*.py; do \
	  case $$b in */_*) continue;; esac; \
	  echo "== $$b"; $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) .safeship build dist
