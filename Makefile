# podslots — one entry point for people and CI. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
.DEFAULT_GOAL := help

# The Lambda runtime is python3.13: build the venv with it where the machine has it (pyenv here),
# and fall back to the newest Python on PATH otherwise.
PYTHON ?= $(shell \
	(PYENV_VERSION=3.13.0 pyenv which python3.13 2>/dev/null) || command -v python3.13 || \
	command -v python3.12 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PYTHONPATH := $(CURDIR)/layers/podslots:$(CURDIR)
export AWS_DEFAULT_REGION ?= us-east-1

include mk/sam.mk
include mk/layers.mk

.PHONY: help venv lint typecheck unit test demo local openapi bench clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): requirements-dev.txt layers/podslots/requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(STAMP) ## Create the venv with the pinned dependencies

lint: $(STAMP) ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) ## mypy
	$(BIN)/mypy

unit: $(STAMP) ## pytest only
	$(BIN)/pytest

test: lint typecheck lint-template unit ## Everything CI checks: ruff, mypy, template lint, pytest

openapi: $(STAMP) ## Write the OpenAPI document the API handlers derive (openapi.json)
	$(BIN)/python -m tools.openapi > openapi.json
	@echo "wrote openapi.json"

demo: $(STAMP) ## The whole life cycle on an embedded DynamoDB and cluster, on a virtual clock
	$(BIN)/python -m local.demo

local: $(STAMP) ## Serve the embedded stack on 127.0.0.1:3000 until stopped (ARGS="--speed 10 --kubeconfig PATH")
	$(BIN)/python -m local.serve $(ARGS)

bench: $(STAMP) ## Benchmarks: requests per call, import times, reconcile at scale, a scripted hour of load, a short day of four policies
	$(BIN)/python -m bench.requests_per_call
	$(BIN)/python -m bench.import_time
	$(BIN)/python -m bench.reconcile_scale
	$(BIN)/python -m bench.scripted_hour
	$(BIN)/python -m bench.day --hours 2 --start-hour 9 --drain-hours 1 --out /tmp/podslots-bench-day

clean: ## Remove the venvs and caches
	rm -rf $(VENV) .venv-sam .mypy_cache .pytest_cache .ruff_cache .aws-sam
