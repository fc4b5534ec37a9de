# Two commands matter: `make serve` and `make test`. Both create .venv on first use:
# `make serve` installs the package with its `all` extra (server, PostgreSQL, MySQL, Redis),
# `make test` adds the dev tools. Bytecode is compiled at install, as pip does for a wheel, so a
# CLI call never compiles sources (PYTHONDONTWRITEBYTECODE=1 would make it do so on every run).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HASH := $(shell cat pyproject.toml | cksum | cut -d' ' -f1)
APP_STAMP := $(VENV)/.installed-all-$(HASH)
DEV_STAMP := $(VENV)/.installed-dev-$(HASH)
HOST ?= 127.0.0.1
PORT ?= 8080
PYTEST_ARGS ?=

.PHONY: serve test test-faults test-ops lint typecheck bench clean venv

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(APP_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install -q -e '.[all]'
	$(BIN)/python -m compileall -q src
	rm -f $(VENV)/.installed-all-*
	touch $(APP_STAMP)

$(DEV_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m compileall -q src
	rm -f $(VENV)/.installed-dev-* $(VENV)/.installed-all-*
	touch $(DEV_STAMP) $(APP_STAMP)

venv: $(DEV_STAMP)

serve: $(APP_STAMP)
	$(BIN)/llm-config init
	$(BIN)/llm-config serve --host $(HOST) --port $(PORT)

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest -m "not faults and not ops" -n 2 --dist loadgroup $(PYTEST_ARGS)

test-faults: $(DEV_STAMP)
	$(BIN)/python -m pytest -m faults $(PYTEST_ARGS)

# Deployment checks (tests/ops): hadolint, the image built with podman and run from its own
# filesystem, Kustomize overlays validated, the compose topology run as processes with a replica killed.
test-ops: $(DEV_STAMP)
	$(BIN)/python -m pytest -m ops -v $(PYTEST_ARGS)

bench: $(DEV_STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
