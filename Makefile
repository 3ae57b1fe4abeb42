# Loan-approval model served with BentoML. `make` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 3000
DATA ?= data/loan_sample.csv

# The model store lives in the project unless the caller says otherwise;
# BentoML's telemetry stays off wherever this project runs it.
export BENTOML_HOME ?= $(CURDIR)/.bentoml
export BENTOML_DO_NOT_TRACK := true

$(BIN)/.installed: requirements/service.txt requirements/dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements/dev.txt
	touch $@

## venv: create .venv with the pinned dependencies
venv: $(BIN)/.installed

## train: train on DATA (the synthetic sample by default) and store a new model version
train: venv
	$(BIN)/python train.py --data $(DATA)

## serve: serve the latest model on HOST:PORT (127.0.0.1:3000), training one first if the store has none
serve: venv
	@$(BIN)/bentoml models get loan_approval:latest >/dev/null 2>&1 || $(BIN)/python train.py --data $(DATA)
	$(BIN)/bentoml serve service:LoanApproval --host $(HOST) --port $(PORT)

## test: run the whole test suite (end-to-end tests start their own servers)
test: venv
	$(BIN)/python -m pytest

## lint: ruff checks
lint: venv
	$(BIN)/ruff check .

## format: ruff formatting
format: venv
	$(BIN)/ruff format .

## build: build a versioned Bento from bentofile.yaml (needs a trained model)
build: venv
	@$(BIN)/bentoml models get loan_approval:latest >/dev/null 2>&1 || $(BIN)/python train.py --data $(DATA)
	$(BIN)/bentoml build

## clean: remove caches (keeps .venv and the model store)
clean:
	rm -rf .pytest_cache .hypothesis .ruff_cache reports
	find . -name __pycache__ -prune -not -path './.venv/*' -exec rm -rf {} +

## help: list the targets
help:
	@awk '/^## /{sub(/^## /,""); i=index($$0,": "); printf "  %-8s %s\n", substr($$0,1,i-1), substr($$0,i+2)}' $(MAKEFILE_LIST)

.PHONY: venv train serve test lint format build clean help
