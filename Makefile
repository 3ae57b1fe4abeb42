# Loan-approval model served with BentoML. `make` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 3000
DATA ?= data/loan_sample.csv
# drift/fairness read the service's decision store unless LOG names exported files.
LOG ?=
# decisions-export: the time range (ISO dates, UTC; empty = unbounded) and the file.
SINCE ?=
UNTIL ?=
EXPORT ?= decisions-export.jsonl
PG_BIN := /usr/lib/postgresql/15/bin
CSV ?= ../shared/data/loan-prediction/test.csv
OUT ?= decisions.csv
INPUT ?= ../shared/data/loan-prediction/test.csv
OUTPUT ?= spark-output
SPARK_MASTER ?= local[*]
BENTO ?= loan_approval_service:latest
IMAGE_NAME ?= loan-approval-service
ARCHIVE_DIR ?= dist
# checkov in a venv of its own: its dependencies clash with the test pins.
CHECKOV_VENV := .venv-checkov

# The model store lives in the project unless the caller says otherwise;
# BentoML's telemetry stays off wherever this project runs it.
export BENTOML_HOME ?= $(CURDIR)/.bentoml
export BENTOML_DO_NOT_TRACK := true

$(BIN)/.installed: requirements/service.txt requirements/spark.txt requirements/dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements/dev.txt
	@# The decision-record tests start a real PostgreSQL 15 (Debian's package).
	@test -x $(PG_BIN)/initdb || { [ "$$(id -u)" = 0 ] && { apt-get install -y -q postgresql-15 || { apt-get update && apt-get install -y -q postgresql-15; }; }; } || echo "note: PostgreSQL 15 is missing (sudo apt-get install postgresql-15); its tests will be skipped" >&2
	touch $@

$(CHECKOV_VENV)/.installed: requirements/checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet -r requirements/checkov.txt
	touch $@

## venv: create .venv with the pinned dependencies (and .venv-checkov, the manifest scanner)
venv: $(BIN)/.installed $(CHECKOV_VENV)/.installed

## train: train on DATA (the synthetic sample by default) and store a new model version
train: venv
	$(BIN)/python train.py --data $(DATA)

# Train on DATA when the store has no model yet, so every target that needs one
# works from a fresh clone.
ENSURE_MODEL = @$(BIN)/bentoml models get loan_approval:latest >/dev/null 2>&1 || $(BIN)/python train.py --data $(DATA)

## serve: serve the latest model on HOST:PORT (127.0.0.1:3000), training one first if the store has none
serve: venv
	$(ENSURE_MODEL)
	$(BIN)/bentoml serve service:LoanApproval --host $(HOST) --port $(PORT)

## test: lint, then the whole test suite (end-to-end tests start their own servers)
test: lint
	$(BIN)/python -m pytest

## lint: ruff checks and mypy type checks
lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy .

## format: ruff formatting
format: venv
	$(BIN)/ruff format .

## build: build a versioned Bento from bentofile.yaml (needs a trained model)
build: venv
	$(ENSURE_MODEL)
	$(BIN)/bentoml build

## image: OCI image of BENTO (the latest Bento, built if none) as loan-approval-service:<its version>
image: venv
	@$(BIN)/bentoml get $(BENTO) >/dev/null 2>&1 || $(MAKE) --no-print-directory build
	BENTOML=$(BIN)/bentoml deploy/image/build.sh $(BENTO) $(IMAGE_NAME)

## base-image: stand-in python:3.11-slim from Debian's packages, for hosts that cannot pull it
base-image:
	deploy/image/tools.sh buildah debootstrap
	deploy/image/base-image.sh

## image-archive: the image of BENTO as an OCI archive, ARCHIVE_DIR/loan-approval-service-<version>.oci.tar
image-archive: venv
	@$(BIN)/bentoml get $(BENTO) >/dev/null 2>&1 || $(MAKE) --no-print-directory build
	BENTOML=$(BIN)/bentoml deploy/image/archive.sh $(BENTO) $(IMAGE_NAME) $(ARCHIVE_DIR)

## versions: list the stored model versions, newest first, with their metrics
versions: venv
	$(BIN)/python -m loan_preprocessing.operations.versions list

## drift: PSI drift report of the recorded decisions (or exported files LOG) against their model's training data
drift: venv
	$(BIN)/python -m loan_preprocessing.operations.drift $(addprefix --log ,$(LOG))

## fairness: approval rates by protected group in the recorded decisions (or exported files LOG) vs the model's training audit
fairness: venv
	$(BIN)/python -m loan_preprocessing.operations.fairness $(addprefix --log ,$(LOG))

## outcomes-report: outcomes (OUTCOMES, CSV) of the recorded decisions (or the export DECISIONS) [OVERRIDES=, WINDOW=M, JSON=1]
outcomes-report: venv
	$(BIN)/python -m loan_preprocessing.operations.model_risk outcomes $(if $(DECISIONS),--decisions $(DECISIONS)) --outcomes $(OUTCOMES) $(if $(OVERRIDES),--overrides $(OVERRIDES)) --window $(or $(WINDOW),M) $(if $(JSON),--json)

## overrides-report: override rates (OVERRIDES, CSV) of the recorded decisions (or DECISIONS) by direction, version, group [JSON=1]
overrides-report: venv
	$(BIN)/python -m loan_preprocessing.operations.model_risk overrides $(if $(DECISIONS),--decisions $(DECISIONS)) --overrides $(OVERRIDES) $(if $(JSON),--json)

## challenger-report: the recorded decisions against the challenger's in shadow (or DECISIONS, CHALLENGER files) [OUTCOMES=, OVERRIDES=, JSON=1]
challenger-report: venv
	$(BIN)/python -m loan_preprocessing.operations.model_risk challenger $(if $(DECISIONS),--decisions $(DECISIONS)) $(if $(CHALLENGER),--challenger $(CHALLENGER)) $(if $(OUTCOMES),--outcomes $(OUTCOMES)) $(if $(OVERRIDES),--overrides $(OVERRIDES)) $(if $(JSON),--json)

## score: score the CSV file CSV offline with the latest model into OUT
score: venv
	$(ENSURE_MODEL)
	$(BIN)/python -m loan_preprocessing.batch.score_csv $(CSV) --output $(OUT)

## bench: serving speed vs the no-model ceiling and MLServer (wrk, ~3 min; BEFORE=REV adds that commit's service): tables + bench/results/latest.json
bench: venv
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && { apt-get install -y wrk || { apt-get update && apt-get install -y wrk; }; }; } || { echo "wrk is missing: sudo apt-get install wrk" >&2; exit 1; }
	$(BIN)/python -m bench.run $(if $(BEFORE),--before $(BEFORE))

## spark-score: score INPUT (CSV or Parquet) with Spark into OUTPUT/scored and OUTPUT/rejected
spark-score: venv
	$(ENSURE_MODEL)
	$(BIN)/python -m loan_preprocessing.batch.spark_job --input $(INPUT) --output $(OUTPUT) --master '$(SPARK_MASTER)' --overwrite

## bench-spark: bulk scoring of 1M synthetic rows: offline CSV (one core), Spark (CSV, Parquet), row-by-row baseline -> bench/results/spark.json
bench-spark: venv
	$(ENSURE_MODEL)
	$(BIN)/python bench/spark_throughput.py --master '$(SPARK_MASTER)'

## k8s-validate: validate deploy/kubernetes offline (API schemas, the service) and scan it with checkov
k8s-validate: venv
	$(BIN)/python -m pytest -q tests/test_kubernetes.py tests/test_checkov.py

## clean: remove caches (keeps .venv and the model store)
clean:
	rm -rf .pytest_cache .hypothesis .ruff_cache reports
	find . -name __pycache__ -prune -not -path './.venv/*' -exec rm -rf {} +

## help: list the targets
help:
	@awk '/^## /{sub(/^## /,""); i=index($$0,": "); printf "  %-14s %s\n", substr($$0,1,i-1), substr($$0,i+2)}' $(MAKEFILE_LIST)

## decisions-migrate: bring the decision store (LOAN_DECISION_STORE_URL) to this version's schema
decisions-migrate: venv
	$(BIN)/python -m loan_preprocessing.records migrate

## decisions-export: write the decisions recorded in [SINCE, UNTIL) to EXPORT (.jsonl; .parquet with pyarrow)
decisions-export: venv
	$(BIN)/python -m loan_preprocessing.records export $(if $(SINCE),--since $(SINCE)) $(if $(UNTIL),--until $(UNTIL)) --out $(EXPORT)

## decisions-purge: delete decision records older than LOAN_RETENTION_MONTHS (25), saying how many
decisions-purge: venv
	$(BIN)/python -m loan_preprocessing.records purge

.PHONY: decisions-migrate decisions-export decisions-purge venv train serve test lint format build image base-image image-archive versions drift fairness outcomes-report overrides-report challenger-report score bench spark-score bench-spark k8s-validate clean help
