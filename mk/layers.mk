# mk/layers.mk - the Lambda layers: their builds and the layer-size benchmark. Included by the
# Makefile, which defines BIN and STAMP (the project venv).
#
#   layer-size        bench/layer_size.py: PodSlotsLayer as sam build's python3.13 build made it
#                     against layers/podslots/Makefile (MiB, the allocate function's import ms);
#                     KubeLayer built for candidate `kubernetes` versions as `sam build` builds it;
#                     installed/stripped/zipped MiB, import and first-call times, and reconcile's
#                     total (podslots layer + KubeLayer + code) vs 250 MB.
#   build-kube-layer  the stripped KubeLayer in build/layers/kube/python: layers/kube/Makefile's
#                     build-KubeLayer (what `sam build` runs), with the venv's python3.13.
#   build-podslots-layer  PodSlotsLayer in build/layers/podslots/python: layers/podslots/Makefile's
#                     build-PodSlotsLayer (what `sam build` runs), with the venv's python3.13.
#   lock              layers/requirements.lock: both layers' requirements resolved together for the
#                     Lambda platform (manylinux2014_aarch64, cp313, wheels only), every distribution
#                     pinned with its hashes (uv pip compile). Both layer builds install from it with
#                     pip --require-hashes; run it after changing either requirements.txt.

KUBE_LAYER_OUT := $(CURDIR)/build/layers/kube
PODSLOTS_LAYER_OUT := $(CURDIR)/build/layers/podslots

LAYER_LOCK := layers/requirements.lock
LAYER_REQUIREMENTS := layers/podslots/requirements.txt layers/kube/requirements.txt

.PHONY: layer-size build-kube-layer build-podslots-layer lock

layer-size: $(STAMP) ## PodSlotsLayer before/after; KubeLayer per kubernetes version: MiB, import ms, total vs 250 MB
	$(BIN)/python -m bench.layer_size

build-kube-layer: $(STAMP) ## Build the stripped KubeLayer into build/layers/kube/python (as sam build does)
	$(MAKE) --no-print-directory -f layers/kube/Makefile build-KubeLayer \
		ARTIFACTS_DIR="$(KUBE_LAYER_OUT)" KUBE_LAYER_PYTHON="$(CURDIR)/$(BIN)/python"

build-podslots-layer: $(STAMP) ## Build PodSlotsLayer into build/layers/podslots/python (as sam build does)
	$(MAKE) --no-print-directory -f layers/podslots/Makefile build-PodSlotsLayer \
		ARTIFACTS_DIR="$(PODSLOTS_LAYER_OUT)" PODSLOTS_LAYER_PYTHON="$(CURDIR)/$(BIN)/python"

# requirements-dev.in includes layers/kube/requirements.txt (make lock-dev carries it into the lock,
# requirements-dev.txt; a unit test fails until it does): a new kubernetes pin must reinstall
# the venv too (the tests and mypy run against the pinned client).
ifdef STAMP
$(STAMP): layers/kube/requirements.txt
endif

lock: $(STAMP) ## Re-lock both layers' requirements, with hashes, for Lambda (layers/requirements.lock)
	$(BIN)/uv pip compile $(LAYER_REQUIREMENTS) --generate-hashes --quiet \
		--python-platform aarch64-manylinux2014 --python-version 3.13 --only-binary :all: \
		--custom-compile-command "make lock" --annotation-style line -o $(LAYER_LOCK)
