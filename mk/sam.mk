# mk/sam.mk - AWS SAM tooling for podslots; `include mk/sam.mk` from the
# Makefile, or run alone: `make -f mk/sam.mk lint-template`.
#
#   lint-template  sam validate --lint, the SAM translator, and cfn-lint on
#                  template.yaml; offline (dummy credentials, fixed region).
#   sam-build      sam build (no Docker): arm64 wheels are fetched by pip for
#                  the Lambda platform; needs a python3.13 (the runtime).
#   sam-venv       just (re)create .venv-sam.
#   lock-sam       re-lock requirements-sam.in into requirements-sam.txt (hashes).
#   clean-sam      remove .venv-sam and .aws-sam.
#
# aws-sam-cli pins its own boto3/botocore (and cfn-lint range), so it lives in
# its own venv, .venv-sam, never in the project's venv. Its pins are
# requirements-sam.in; the venv installs the lock, requirements-sam.txt, with
# pip --require-hashes (every file checked against its sha256).

# Repository root = the parent of this file's folder, wherever make runs from.
SAM_ROOT     := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))..)
SAM_TEMPLATE ?= template.yaml
SAM_VENV     := $(SAM_ROOT)/.venv-sam
SAM          := $(SAM_VENV)/bin/sam
CFN_LINT     := $(SAM_VENV)/bin/cfn-lint
SAM_LOCK     := $(SAM_ROOT)/requirements-sam.txt
# Rebuilt whenever the lock changes.
SAM_STAMP    := $(SAM_VENV)/.installed

include $(SAM_ROOT)/mk/uv.mk

# Prints the path of the first `pythonX.Y` (X.Y from $(1)) that really runs:
# on PATH first, else pyenv's newest X.Y.z (a pyenv shim on PATH fails when
# that version is not selected, so it is resolved with `pyenv which`).
sam_find_python = for v in $(1); do \
	  p=$$(command -v python$$v 2>/dev/null) && "$$p" -c '' >/dev/null 2>&1 && { echo "$$p"; exit 0; }; \
	  if command -v pyenv >/dev/null 2>&1; then \
	    pv=$$(pyenv versions --bare 2>/dev/null | grep -E "^$$v\.[0-9]+$$" | sort -t. -k3,3n | tail -n 1); \
	    if [ -n "$$pv" ]; then \
	      p=$$(PYENV_VERSION=$$pv pyenv which python$$v 2>/dev/null) && [ -x "$$p" ] && { echo "$$p"; exit 0; }; \
	    fi; \
	  fi; \
	done; true

# Interpreter of .venv-sam: 3.13, else 3.12 or 3.11, else python3.
# Deferred (`?=`): looked up only when a recipe needs it.
PYTHON_SAM ?= $(shell $(call sam_find_python,3.13 3.12 3.11) ; command -v python3)
# `sam build` needs the runtime's own version on PATH: 3.13 and nothing else.
PYTHON_SAM_BUILD ?= $(shell $(call sam_find_python,3.13))

# No AWS account is needed or reached: dummy credentials, a fixed region, no
# telemetry, no instance-metadata probing.
SAM_OFFLINE_ENV := env -u AWS_PROFILE -u AWS_SESSION_TOKEN \
	AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 \
	AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
	AWS_EC2_METADATA_DISABLED=true SAM_CLI_TELEMETRY=0

.PHONY: sam-venv lint-template sam-build clean-sam lock-sam

sam-venv: $(SAM_STAMP) ## (Re)create .venv-sam with the locked aws-sam-cli and cfn-lint (hash-checked)

$(SAM_STAMP): $(SAM_LOCK)
	@py="$(firstword $(PYTHON_SAM))"; \
	if [ -z "$$py" ]; then echo "sam.mk: no python3.13/3.12/3.11/python3 found" >&2; exit 1; fi; \
	echo "sam.mk: creating $(SAM_VENV) with $$py ($$("$$py" -V 2>&1))"; \
	rm -rf "$(SAM_VENV)" && "$$py" -m venv "$(SAM_VENV)"
	@echo "sam.mk: installing $(notdir $(SAM_LOCK)) (aws-sam-cli, cfn-lint) with --require-hashes"
	@"$(SAM_VENV)/bin/python" -m pip install --disable-pip-version-check --quiet \
		--require-hashes -r "$(SAM_LOCK)" \
		> "$(SAM_VENV)/pip-install.log" 2>&1 \
		|| { tail -n 40 "$(SAM_VENV)/pip-install.log" >&2; exit 1; }
	@touch "$@"

lock-sam: ## Re-lock requirements-sam.in into requirements-sam.txt, with hashes (uv from a throwaway venv)
	$(call uv_lock,requirements-sam.in,requirements-sam.txt,3.11,lock-sam)

# 1. sam validate --lint: cfn-lint as SAM CLI runs it.
# 2. sam validate --language-extensions: the SAM translator itself (with the
#    parameter defaults), which catches SAM errors cfn-lint does not report.
#    `--config-env sam-mk-none` keeps samconfig's `lint = true` out of it.
# 3. cfn-lint on its own, with its own rule set and output.
lint-template: $(SAM_STAMP) ## sam validate --lint, SAM translator and cfn-lint on template.yaml (offline)
	cd "$(SAM_ROOT)" && $(SAM_OFFLINE_ENV) "$(SAM)" validate --lint --template "$(SAM_TEMPLATE)"
	@cd "$(SAM_ROOT)" && echo '$(SAM) validate --language-extensions --template $(SAM_TEMPLATE)' && \
	out=$$($(SAM_OFFLINE_ENV) "$(SAM)" validate --language-extensions \
		--config-env sam-mk-none --template "$(SAM_TEMPLATE)" 2>&1); rc=$$?; \
	printf '%s\n' "$$out" | grep -v "not available in Feature Toggle Config"; exit $$rc
	cd "$(SAM_ROOT)" && $(SAM_OFFLINE_ENV) "$(CFN_LINT)" "$(SAM_TEMPLATE)"

sam-build: $(SAM_STAMP) ## sam build for arm64 without Docker (needs python3.13)
	@py="$(PYTHON_SAM_BUILD)"; \
	if [ -z "$$py" ]; then echo "sam.mk: sam build needs python3.13 (the Lambda runtime); none found" >&2; exit 1; fi; \
	cd "$(SAM_ROOT)" && echo "sam.mk: sam build with $$py" && \
	PATH="$$(dirname "$$py"):$$PATH" $(SAM_OFFLINE_ENV) "$(SAM)" build --template "$(SAM_TEMPLATE)"

clean-sam: ## Remove .venv-sam and .aws-sam
	rm -rf "$(SAM_VENV)" "$(SAM_ROOT)/.aws-sam"
