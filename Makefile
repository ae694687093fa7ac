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
export AWS_DEFAULT_REGION ?= us-east-1

# mk/sam.mk includes mk/uv.mk (uv_lock, for lock-dev)
include mk/sam.mk
include mk/layers.mk

.PHONY: help venv lock-dev lock-sidecar lint typecheck layers unit pytest test demo local invoke openapi docs podspec-schema bench clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

# podslots-dev.pth puts the layer's package (layers/podslots) and the repository root on the venv's
# sys.path: `.venv/bin/python -m bench.X` (or local.demo, tools.X, a REPL, the hooks pre-commit
# runs) works without make or PYTHONPATH.
# Every distribution comes from requirements-dev.txt, the lock (`make lock-dev`), and pip checks
# each file against its hashes (pip itself included). ./clients, the project's own code, is
# installed editable with no dependency (they are in the lock) and built with the locked setuptools.
$(STAMP): requirements-dev.txt layers/podslots/requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e ./clients
	printf '%s\n' "$(CURDIR)/layers/podslots" "$(CURDIR)" \
		> "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/podslots-dev.pth"
	touch $@

venv: $(STAMP) ## Create the venv with the pinned dependencies (hash-checked: requirements-dev.txt)

lock-dev: ## Re-lock requirements-dev.in into requirements-dev.txt, with hashes (uv from a throwaway venv)
	$(call uv_lock,requirements-dev.in,requirements-dev.txt,3.13,lock-dev)

lock-sidecar: ## Re-lock the sidecar image's requirements (clients/sidecar/*.in -> *.txt, with hashes)
	$(call uv_lock,clients/sidecar/requirements.in,clients/sidecar/requirements.txt,3.13,lock-sidecar)
	$(call uv_lock,clients/sidecar/build.in,clients/sidecar/build.txt,3.13,lock-sidecar)

lint: $(STAMP) ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) ## mypy
	$(BIN)/mypy

layers: $(STAMP) ## import-linter: the layering contracts of pyproject.toml ([tool.importlinter])
	$(BIN)/lint-imports

# Two workers (pytest-xdist), as many as this machine and CI have cores; worksteal hands the long
# tests out as workers free up. `make pytest PYTEST_ARGS=-n0` runs the suite in one process.
PYTEST_ARGS ?= -n 2 --dist worksteal

unit: $(STAMP) ## The fast tests: pytest without those marked slow (races, fuzz, demo, reconcile at scale)
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

pytest: $(STAMP) ## The whole pytest suite, on 2 workers (PYTEST_ARGS=-n0: in one process)
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck layers lint-template pytest ## Everything CI checks: ruff, mypy, import contracts, template lint, pytest

openapi: $(STAMP) ## Write the OpenAPI document the API handlers derive (openapi.json)
	$(BIN)/python -m tools.openapi > openapi.json
	@echo "wrote openapi.json"

podspec-schema: $(STAMP) ## Write the PodSpec schema pod_template.spec is checked against, from the pinned kubernetes client
	$(BIN)/python -m tools.podspec_schema --write

demo: $(STAMP) ## The whole life cycle on an embedded DynamoDB and cluster, on a virtual clock
	$(BIN)/python -m local.demo

local: $(STAMP) ## Serve the embedded stack on 127.0.0.1:3000 until stopped (ARGS="--speed 10 --kubeconfig PATH")
	$(BIN)/python -m local.serve $(ARGS)

invoke: $(STAMP) ## Run one function on one event file in the embedded stack, as `sam local invoke -e` (FUNCTION=AllocateFunction EVENT=events/allocate.json ARGS=--empty)
	@$(BIN)/python -m local.invoke "$(FUNCTION)" "$(EVENT)" $(ARGS)

docs: $(STAMP) ## Write docs/settings.md, the pool settings reference, from the settings model (a test fails when it is stale)
	$(BIN)/python -m tools.settings_reference

bench: $(STAMP) ## Benchmarks (quick by default; each has --help for bigger runs): requests, import times, reconcile, a scripted hour, allocation floor, cold start, steps at scale, the fan-out of 1,000 pools, a short day of four policies, what the simulation's shortcuts buy
	$(BIN)/python -m bench.requests_per_call
	$(BIN)/python -m bench.import_time
	$(BIN)/python -m bench.reconcile_scale
	$(BIN)/python -m bench.scripted_hour
	$(BIN)/python -m bench.allocation_floor
	$(BIN)/python -m bench.cold_start
	$(BIN)/python -m bench.steps_at_scale
	$(BIN)/python -m bench.fanout
	$(BIN)/python -m bench.day --hours 2 --start-hour 9 --drain-hours 1 --out /tmp/podslots-bench-day
	$(BIN)/python -m bench.sim_cost

clean: ## Remove the venvs and caches
	rm -rf $(VENV) .venv-sam .mypy_cache .pytest_cache .ruff_cache .import_linter_cache .aws-sam
