# Two commands do everything on a fresh machine:
#   make run   - set up .venv, then run the whole lineage on the embedded default data (dvc repro)
#   make test  - set up .venv, then run the test suite
# `make setup` is idempotent: it reinstalls only when pyproject.toml or requirements-dvc.txt change.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DVC_ENV := $(VENV)/dvc-env
DVC_STAMP := $(DVC_ENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup run test smoke bench dagster mlflow clean-outputs

setup: $(STAMP) $(DVC_STAMP) $(BIN)/dvc

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# DVC gets its own environment: it pins ANTLR 4.9 (via hydra-core), Dagster needs ANTLR 4.13.
$(DVC_STAMP): requirements-dvc.txt
	test -x $(DVC_ENV)/bin/python || $(PYTHON) -m venv $(DVC_ENV)
	$(DVC_ENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dvc.txt
	touch $@

$(BIN)/dvc: scripts/dvc-wrapper.sh $(STAMP)
	install -m 0755 scripts/dvc-wrapper.sh $@

# One Dagster instance for both: `make run` reports what dvc repro did to it, `make dagster` shows it.
DAGSTER_HOME := $(CURDIR)/.dagster

run: setup
	$(BIN)/dvc repro
	mkdir -p .dagster && touch .dagster/dagster.yaml
	DAGSTER_HOME="$(DAGSTER_HOME)" $(BIN)/depth-distill dagster-report

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: setup
	$(BIN)/depth-distill bench all

# Run history persists in .dagster/ (DAGSTER_HOME); the code location comes from pyproject.toml.
# Ctrl-C or SIGTERM stops dagster dev with its webserver, daemon and code servers (no orphans).
dagster: setup
	mkdir -p .dagster && touch .dagster/dagster.yaml
	DAGSTER_HOME="$(DAGSTER_HOME)" PATH="$(CURDIR)/$(BIN):$$PATH" \
		exec scripts/run-process-group.sh $(BIN)/dagster dev -h 127.0.0.1 -p 3000

mlflow: setup
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000
