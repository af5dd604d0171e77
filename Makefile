# The single entry point. Every target creates .venv and installs what it needs when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP_QUIET := --quiet --disable-pip-version-check

.PHONY: demo test lint bench install clean e2e unit matrix

# The compatibility matrix: the service library's tests (what `pip install safeship` ships)
# run again in two venvs, against the oldest supported versions (.ci/constraints-oldest.txt)
# and the newest. Each venv is rebuilt when what it is built from changes (the newest also
# once a day).
OLDEST := .venv-oldest
NEWEST := .venv-newest
UV := $(BIN)/python -m uv
# The service library's tests, and the README's FastAPI example served by uvicorn (ready,
# then one authenticated WebSocket round trip).
SERVICE_TESTS := tests/service tests/core tests/tokens tests/secrets tests/test_config.py \
  tests/test_readme.py::test_the_fastapi_example_runs
# Tests in those directories that need the CLI side (the gates) or an extra's test harness.
MATRIX_IGNORE := --ignore=tests/secrets/test_k8s.py
MATRIX_INPUTS := pyproject.toml .ci/matrix-tests.txt

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing safeship and its development dependencies into $(VENV) ..."
	@$(BIN)/python -m pip install $(PIP_QUIET) -e '.[dev]' 2>&1 | grep -v "^WARNING: Location" || true
	@$(BIN)/python -c "import safeship, fastapi, playwright" || (echo "install failed"; exit 1)
	@touch $(STAMP)

install: $(STAMP)

# The demo needs only the command line and the reference backend's packages, so a fresh clone
# reaches it without the test tool chain (browsers' driver, cloud clients, linters).
DEMO_STAMP := $(VENV)/.installed-demo
$(DEMO_STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing safeship's command line and the reference backend into $(VENV) ..."
	@$(BIN)/python -m pip install $(PIP_QUIET) -e '.[cli,example]' 2>&1 | grep -v "^WARNING: Location" || true
	@$(BIN)/python -c "import safeship.cli, fastapi, sqlalchemy" || (echo "install failed"; exit 1)
	@touch $(DEMO_STAMP)

$(OLDEST)/.installed: $(STAMP) $(MATRIX_INPUTS) .ci/constraints-oldest.txt
	@rm -rf $(OLDEST) && $(UV) venv --quiet --python $(BIN)/python $(OLDEST)
	@echo "installing the oldest supported versions into $(OLDEST) ..."
	@$(UV) pip install --quiet --python $(OLDEST)/bin/python -e . \
	  -r .ci/matrix-tests.txt -c .ci/constraints-oldest.txt
	@touch $@

$(NEWEST)/.installed: $(STAMP) $(MATRIX_INPUTS)
	@rm -rf $(NEWEST) && $(UV) venv --quiet --python $(BIN)/python $(NEWEST)
	@echo "installing the newest versions into $(NEWEST) ..."
	@$(UV) pip install --quiet --python $(NEWEST)/bin/python --upgrade -e . -r .ci/matrix-tests.txt
	@touch $@

matrix: $(STAMP)
	@# "Newest" goes stale: rebuild it when its stamp is more than a day old.
	@find $(NEWEST)/.installed -mtime +0 -delete 2>/dev/null || true
	@$(MAKE) --no-print-directory --silent $(OLDEST)/.installed $(NEWEST)/.installed
	@for venv in $(OLDEST) $(NEWEST); do \
	  echo "== service library tests in $$venv:" \
	    "$$($$venv/bin/python -c 'import fastapi, starlette, pydantic; print("fastapi", fastapi.__version__, "starlette", starlette.__version__, "pydantic", pydantic.VERSION)')"; \
	  $$venv/bin/python -m pytest -q $(SERVICE_TESTS) $(MATRIX_IGNORE) || exit 1; done

demo: $(DEMO_STAMP)
	@$(BIN)/safeship demo

test: $(STAMP)
	@$(BIN)/python -m pytest
	@$(MAKE) --no-print-directory matrix

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
	rm -rf $(VENV) $(OLDEST) $(NEWEST) .safeship build dist
