# Loan-approval model served with BentoML. `make` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

# Every variable below can be set on the command line (make serve PORT=3001); the
# manual's configuration page is generated from these lines and their comments.
# PYTHON: the Python 3.11 interpreter that creates .venv
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# HOST: the address `make serve` listens on (0.0.0.0 opens it to the network)
HOST ?= 127.0.0.1
# PORT: the port `make serve` listens on
PORT ?= 3000
# DATA: the training CSV of `make train` (and of the first model `make serve` trains)
DATA ?= data/loan_sample.csv
# LOG: exported decision files `make drift` and `make fairness` read (empty: the service's decision store)
LOG ?=
# SINCE: the start of the time range `make decisions-export` writes (ISO date, UTC; empty: unbounded)
SINCE ?=
# UNTIL: the end of that range (ISO date, UTC, exclusive; empty: unbounded)
UNTIL ?=
# EXPORT: the file `make decisions-export` writes (.jsonl; .parquet where pyarrow is installed)
EXPORT ?= decisions-export.jsonl
# TAG: the stored version `make promote` makes the served one (loan_approval:<version>)
TAG ?=
# BY: who promotes (recorded with the promotion; default: your login name)
BY ?= $(USER)
# REPORT: the report a promotion rests on (for example `make -s challenger-report JSON=1 > report.json`)
REPORT ?=
PG_BIN := /usr/lib/postgresql/15/bin
# CSV: the applications `make score` scores offline
CSV ?= ../shared/data/loan-prediction/test.csv
# OUT: where `make score` writes its decisions
OUT ?= decisions.csv
# INPUT: the applications (CSV or Parquet) `make spark-score` scores
INPUT ?= ../shared/data/loan-prediction/test.csv
# OUTPUT: the folder `make spark-score` writes scored/ and rejected/ into
OUTPUT ?= spark-output
# SPARK_MASTER: the Spark master of the Spark targets
SPARK_MASTER ?= local[*]
# BENTO: the Bento `make image` and `make image-archive` package
BENTO ?= loan_approval_service:latest
# IMAGE_NAME: the name of the image `make image` builds (tagged with the Bento's version)
IMAGE_NAME ?= loan-approval-service
# BEFORE: a commit `make bench` also measures, beside the current service (unset: none)
BEFORE ?=
# K8S_LOG: where `make k8s-validate` keeps the validation's whole output
K8S_LOG ?= dist/k8s-validate.log
# IMAGE_BUILD_LOG: where `make image` keeps BentoML's build output (its shell trace)
export IMAGE_BUILD_LOG ?= dist/image-build.log
# DOCS_PORT: the port `make docs-serve` serves the manual on
DOCS_PORT ?= 8000
# ARCHIVE_DIR: where `make image-archive` writes the OCI archive
ARCHIVE_DIR ?= dist
# checkov in a venv of its own: its dependencies clash with the test pins.
CHECKOV_VENV := .venv-checkov

# The model store lives in the project unless the caller says otherwise;
# BentoML's telemetry stays off wherever this project runs it.
# BENTOML_HOME: BentoML's model and Bento store (the project's .bentoml/ unless set)
export BENTOML_HOME ?= $(CURDIR)/.bentoml
export BENTOML_DO_NOT_TRACK := true
# Material for MkDocs prints a banner about its successor at every build.
export NO_MKDOCS_2_WARNING := 1

# Each requirements file is installed into .venv once (stamped .venv/.installed-NAME)
# and only for the targets that use it: `make serve` installs training and serving
# (train.txt), `make test` everything (dev.txt). Any change to a pin reinstalls.
REQUIREMENTS := $(wildcard requirements/*.txt)
# --no-compile: pip byte-compiles every module it installs, scipy's and pandas'
# tests included: for train.txt 190 MB and 25 of the 35.5 s of CPU its install
# took (measured on 2 cores). Python compiles what a run imports, when it does.
PIP_INSTALL = $(BIN)/pip install --quiet --progress-bar on --disable-pip-version-check --no-compile

# A missing interpreter stops make with one line (a recipe's `exit 1` would add
# make's own "Error 1" line); expanded only when a venv is to be made.
NO_PYTHON = $(error $(PYTHON) not found: install Python 3.11, or name one with PYTHON=/path/to/python3.11)
NEED_PYTHON = $(if $(shell command -v $(PYTHON) 2>/dev/null),,$(NO_PYTHON))

$(BIN)/python:
	$(NEED_PYTHON)
	@echo "make: creating $(VENV) with $(PYTHON)"
	@$(PYTHON) -m venv $(VENV)
	@$(PIP_INSTALL) --upgrade pip

$(BIN)/.installed-%: requirements/%.txt $(REQUIREMENTS) | $(BIN)/python
	@echo "make: installing requirements/$*.txt into $(VENV) (pinned; the first time takes a minute or two)"
	@$(PIP_INSTALL) -r requirements/$*.txt
	@touch $@

$(CHECKOV_VENV)/.installed: requirements/checkov.txt
	$(NEED_PYTHON)
	@echo "make: installing requirements/checkov.txt into $(CHECKOV_VENV) (the manifest scanner, in a venv of its own)"
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	@$(CHECKOV_VENV)/bin/pip install --quiet --progress-bar on --disable-pip-version-check --no-compile -r requirements/checkov.txt
	@touch $@

# What each kind of target needs.
SERVE_VENV := $(BIN)/.installed-train
BUILD_VENV := $(BIN)/.installed-build
SPARK_VENV := $(BIN)/.installed-train $(BIN)/.installed-spark
DOCS_VENV := $(BIN)/.installed-docs
FULL_VENV := $(BIN)/.installed-dev

## venv: create .venv with every pinned dependency (dev.txt) and .venv-checkov, the manifest scanner
venv: $(FULL_VENV) $(CHECKOV_VENV)/.installed

## train: train on DATA (the synthetic sample by default) and store a new model version
train: $(SERVE_VENV)
	$(BIN)/python train.py --data $(DATA)

# Train on DATA when the store has no model yet, so every target that needs one
# works from a fresh clone, and say so: the first run's minute goes there.
ENSURE_MODEL = @$(BIN)/python -m loan_preprocessing.operations.first_model --data $(DATA)

## serve: serve the latest model on HOST:PORT (127.0.0.1:3000), training one first if the store has none
serve: $(SERVE_VENV)
	$(ENSURE_MODEL)
	@$(BIN)/python -m loan_preprocessing.serving.launch --host $(HOST) --port $(PORT)

## test: lint, then the whole test suite (end-to-end tests start their own servers)
test: lint docs test-setup $(CHECKOV_VENV)/.installed
	$(BIN)/python -m pytest

## test-setup: Debian's chromium, poppler-utils (the notice's print test) and PostgreSQL 15 (the decision-record tests), installed when root; else those tests skip, saying why
test-setup:
	@{ command -v chromium >/dev/null && command -v pdftotext >/dev/null; } || { [ "$$(id -u)" = 0 ] && { apt-get install -y chromium poppler-utils || { apt-get update && apt-get install -y chromium poppler-utils; }; }; } || echo "chromium or pdftotext is missing (sudo apt-get install chromium poppler-utils): the notice's print test will skip" >&2
	@# The decision-record tests start a real PostgreSQL 15 (Debian's package).
	@test -x $(PG_BIN)/initdb || { [ "$$(id -u)" = 0 ] && { apt-get install -y -q postgresql-15 || { apt-get update && apt-get install -y -q postgresql-15; }; }; } || echo "PostgreSQL 15 is missing (sudo apt-get install postgresql-15): its tests will skip" >&2

## lint: ruff checks, ruff's formatting (checked, not changed) and mypy type checks
lint: $(FULL_VENV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

## format: ruff formatting
format: $(FULL_VENV)
	$(BIN)/ruff format .

## build: build a versioned Bento from bentofile.yaml (needs a trained model)
build: $(BUILD_VENV)
	$(ENSURE_MODEL)
	$(BIN)/bentoml build

## image: OCI image of BENTO (the latest Bento, built if none) as loan-approval-service:<its version>
image: $(BUILD_VENV)
	@$(BIN)/bentoml get $(BENTO) >/dev/null 2>&1 || $(MAKE) --no-print-directory build
	BENTOML=$(BIN)/bentoml deploy/image/build.sh $(BENTO) $(IMAGE_NAME)

## base-image: stand-in python:3.11-slim from Debian's packages, for hosts that cannot pull it
base-image:
	deploy/image/tools.sh buildah debootstrap
	deploy/image/base-image.sh

## image-archive: the image of BENTO as an OCI archive, ARCHIVE_DIR/loan-approval-service-<version>.oci.tar
image-archive: $(BUILD_VENV)
	@$(BIN)/bentoml get $(BENTO) >/dev/null 2>&1 || $(MAKE) --no-print-directory build
	BENTOML=$(BIN)/bentoml deploy/image/archive.sh $(BENTO) $(IMAGE_NAME) $(ARCHIVE_DIR)

## versions: list the stored model versions, newest first, with their metrics
versions: $(SERVE_VENV)
	$(BIN)/python -m loan_preprocessing.operations.versions list

## drift: PSI drift report of the recorded decisions (or exported files LOG) against their model's training data
drift: $(SERVE_VENV)
	$(BIN)/python -m loan_preprocessing.operations.drift $(addprefix --log ,$(LOG))

## fairness: approval rates by protected group in the recorded decisions (or exported files LOG) vs the model's training audit
fairness: $(SERVE_VENV)
	$(BIN)/python -m loan_preprocessing.operations.fairness $(addprefix --log ,$(LOG))

## outcomes-report: outcomes of the recorded decisions, per version and window (files instead: DECISIONS, OUTCOMES, OVERRIDES) [WINDOW=M, JSON=1]
outcomes-report: $(SERVE_VENV)
	$(BIN)/python -m loan_preprocessing.operations.model_risk outcomes $(if $(DECISIONS),--decisions $(DECISIONS)) $(if $(OUTCOMES),--outcomes $(OUTCOMES)) $(if $(OVERRIDES),--overrides $(OVERRIDES)) --window $(or $(WINDOW),M) $(if $(JSON),--json)

## overrides-report: override rates of the recorded decisions by direction, version, group (files instead: DECISIONS, OVERRIDES) [JSON=1]
overrides-report: $(SERVE_VENV)
	$(BIN)/python -m loan_preprocessing.operations.model_risk overrides $(if $(DECISIONS),--decisions $(DECISIONS)) $(if $(OVERRIDES),--overrides $(OVERRIDES)) $(if $(JSON),--json)

## challenger-report: the recorded decisions against the challenger's in shadow (files instead: DECISIONS, CHALLENGER, OUTCOMES, OVERRIDES) [JSON=1]
challenger-report: $(SERVE_VENV)
	$(BIN)/python -m loan_preprocessing.operations.model_risk challenger $(if $(DECISIONS),--decisions $(DECISIONS)) $(if $(CHALLENGER),--challenger $(CHALLENGER)) $(if $(OUTCOMES),--outcomes $(OUTCOMES)) $(if $(OVERRIDES),--overrides $(OVERRIDES)) $(if $(JSON),--json)

## promote: make TAG the served version (loan_approval:latest), recorded with BY and REPORT; then restart the service
promote: $(SERVE_VENV)
	$(BIN)/python -m loan_preprocessing.operations.promote $(if $(TAG),--tag $(TAG)) $(if $(BY),--by "$(BY)") $(if $(REPORT),--report $(REPORT))

## promotions: list the recorded promotions (who made which version the served one, when, on which report)
promotions: $(SERVE_VENV)
	$(BIN)/python -m loan_preprocessing.operations.promote --list

## score: score the CSV file CSV offline with the latest model into OUT
score: $(SERVE_VENV)
	$(ENSURE_MODEL)
	$(BIN)/python -m loan_preprocessing.batch.score_csv $(CSV) --output $(OUT)

## bench: serving speed, records on and off (SQLite, PostgreSQL), a challenger in shadow, vs the no-model ceiling, MLServer and KServe (wrk, ~10 min on 2 cores; BEFORE=REV adds that commit's service): tables + bench/results/latest.json
bench: $(FULL_VENV)
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && { apt-get install -y wrk || { apt-get update && apt-get install -y wrk; }; }; } || { echo "wrk is missing: sudo apt-get install wrk" >&2; exit 1; }
	$(BIN)/python -m bench.run $(if $(BEFORE),--before $(BEFORE))

## bench-v2-binary: V2 binary tensors vs V2 JSON, 1000-row requests: decoder and whole-request CPU time, then 3 wrk rounds (~3 min)
bench-v2-binary: $(FULL_VENV)
	@command -v wrk >/dev/null || { echo "wrk is missing: sudo apt-get install wrk" >&2; exit 1; }
	$(BIN)/python -m bench.v2_binary --http-rounds 3

## spark-score: score INPUT (CSV or Parquet) with Spark into OUTPUT/scored and OUTPUT/rejected
spark-score: $(SPARK_VENV)
	$(ENSURE_MODEL)
	$(BIN)/python -m loan_preprocessing.batch.spark_job --input $(INPUT) --output $(OUTPUT) --master '$(SPARK_MASTER)' --overwrite

## bench-spark: bulk scoring of 1M synthetic rows: offline CSV (one core), Spark (CSV, Parquet), row-by-row baseline -> bench/results/spark.json
bench-spark: $(SPARK_VENV)
	$(ENSURE_MODEL)
	$(BIN)/python bench/spark_throughput.py --master '$(SPARK_MASTER)'

## k8s-validate: validate deploy/kubernetes offline (API schemas, the service) and scan it with checkov
k8s-validate: $(FULL_VENV) $(CHECKOV_VENV)/.installed
	@echo "make: validating deploy/kubernetes (API schemas, the service's settings, checkov); details in $(K8S_LOG)"
	@mkdir -p $(dir $(K8S_LOG))
	@if $(BIN)/python -m pytest -q -rs --no-header -p no:warnings -p no:cacheprovider tests/test_kubernetes.py tests/test_checkov.py >$(K8S_LOG) 2>&1; \
		then echo "make: deploy/kubernetes is valid: $$(tail -n 1 $(K8S_LOG))"; \
		else tail -n 40 $(K8S_LOG); echo "make: deploy/kubernetes has problems (above; all of it in $(K8S_LOG))" >&2; exit 1; fi

## docs: build the manual into site/ with MkDocs (--strict: a broken link or reference fails)
docs: $(DOCS_VENV)
	@echo "make: building the manual into site/"
	@$(BIN)/mkdocs build --strict --quiet --site-dir site

## docs-serve: serve the manual on http://127.0.0.1:DOCS_PORT (8000), rebuilt as pages change
docs-serve: $(DOCS_VENV)
	$(BIN)/mkdocs serve --strict --dev-addr 127.0.0.1:$(DOCS_PORT)

## clean: remove caches (keeps .venv and the model store)
clean:
	rm -rf .pytest_cache .hypothesis .ruff_cache reports site
	find . -name __pycache__ -prune -not -path './.venv/*' -exec rm -rf {} +

## help: list the targets
help:
	@awk '/^## /{sub(/^## /,""); i=index($$0,": "); printf "  %-14s %s\n", substr($$0,1,i-1), substr($$0,i+2)}' $(MAKEFILE_LIST)

## decisions-migrate: bring the decision store (LOAN_DECISION_STORE_URL) to this version's schema
decisions-migrate: $(SERVE_VENV)
	$(BIN)/python -m loan_preprocessing.records migrate

## decisions-export: write the decisions recorded in [SINCE, UNTIL) to EXPORT (.jsonl; .parquet with pyarrow)
decisions-export: $(SERVE_VENV)
	$(BIN)/python -m loan_preprocessing.records export $(if $(SINCE),--since $(SINCE)) $(if $(UNTIL),--until $(UNTIL)) --out $(EXPORT)

## decisions-purge: delete decision records older than LOAN_RETENTION_MONTHS (25), saying how many
decisions-purge: $(SERVE_VENV)
	$(BIN)/python -m loan_preprocessing.records purge

.PHONY: venv train serve test test-setup lint docs docs-serve format build image base-image image-archive versions drift fairness score bench bench-v2-binary spark-score bench-spark k8s-validate clean help decisions-migrate decisions-export decisions-purge outcomes-report overrides-report challenger-report promote promotions
